//! The fake's rules, driven through `serve` without a socket.

use serde_json::json;

use super::*;

fn request(method: Method, path: &str, form: &[(&str, &str)], key: Option<&str>) -> Request {
    Request {
        method,
        path: path.to_string(),
        query: HashMap::new(),
        form: form
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        key: key.map(str::to_string),
        authorization: Some(format!("Bearer {API_KEY}")),
    }
}

fn reply(answer: Answer) -> (u16, Value) {
    match answer {
        Answer::Reply(status, body) => (status.as_u16(), body),
        Answer::Lost(how, ..) => panic!("answer lost: {how:?}"),
    }
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default()
}

/// A Stripe with one customer, `cus_fake000001`.
fn stripe() -> Inner {
    let mut inner = Inner::default();
    let customer = request(
        Method::POST,
        "/v1/customers",
        &[("email", "a@x.test")],
        None,
    );
    reply(serve(&mut inner, &customer, now()));
    inner
}

fn invoice_form(number: &str, due: i64) -> Vec<(String, String)> {
    vec![
        ("customer".into(), "cus_fake000001".into()),
        ("collection_method".into(), "send_invoice".into()),
        ("number".into(), number.into()),
        ("due_date".into(), due.to_string()),
    ]
}

fn create(inner: &mut Inner, form: &[(String, String)], key: &str) -> (u16, Value) {
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    reply(serve(
        inner,
        &request(Method::POST, "/v1/invoices", &form, Some(key)),
        now(),
    ))
}

#[test]
fn the_api_key_is_checked_and_never_quoted_whole() {
    let mut inner = Inner::default();
    let mut get = request(Method::GET, "/v1/invoices", &[], None);
    get.authorization = None;
    let (status, body) = reply(serve(&mut inner, &get, now()));
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    get.authorization = Some("Bearer sk_test_someone_elses_key_1234".into());
    let (status, body) = reply(serve(&mut inner, &get, now()));
    assert_eq!(status, 401);
    assert_eq!(
        body["error"]["message"],
        "Invalid API Key provided: sk_test_******************1234"
    );
    get.authorization = Some(format!("Bearer {API_KEY}"));
    assert_eq!(reply(serve(&mut inner, &get, now())).0, 200);
    inner.api_key_expired = true;
    let (status, body) = reply(serve(&mut inner, &get, now()));
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("api_key_expired"))
    );
}

#[test]
fn a_repeated_key_replays_the_first_answer_and_refuses_other_parameters() {
    let mut inner = stripe();
    let due = now().timestamp() + 86_400;
    let form = invoice_form("CLAIRE-2026-0001", due);
    let (status, first) = create(&mut inner, &form, "k1");
    assert_eq!(status, 200);
    let (_, again) = create(&mut inner, &form, "k1");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(inner.invoices.len(), 1);
    assert!(!inner.calls.last().is_some_and(|c| c.executed));
    // The same key with another due date, or on another endpoint.
    let (status, body) = create(&mut inner, &invoice_form("CLAIRE-2026-0001", due + 1), "k1");
    assert_eq!(
        (status, &body["error"]["type"]),
        (400, &json!("idempotency_error"))
    );
    let item = request(
        Method::POST,
        "/v1/invoiceitems",
        &[("amount", "1")],
        Some("k1"),
    );
    let (status, body) = reply(serve(&mut inner, &item, now()));
    assert_eq!(
        (status, &body["error"]["type"]),
        (400, &json!("idempotency_error"))
    );
    // Once Stripe has forgotten the key, the request runs again: a second invoice.
    inner.idempotent.clear();
    let (_, second) = create(&mut inner, &form, "k1");
    assert_ne!(second["id"], first["id"]);
    assert_eq!(inner.invoices.len(), 2);
}

#[test]
fn invoices_stripe_would_refuse_are_refused_with_the_parameter_named() {
    let mut inner = stripe();
    let future = now().timestamp() + 60;
    let (status, body) = create(
        &mut inner,
        &invoice_form("ABCDEFGHIJKLMNOPQRS-2026-0001", future),
        "k",
    );
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "number");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    for past in [now().timestamp(), now().timestamp() - 1] {
        let (status, body) = create(&mut inner, &invoice_form("A-2026-0001", past), "k");
        assert_eq!((status, &body["error"]["param"]), (400, &json!("due_date")));
    }
    // Refused by validation, so not saved: the key then works with good parameters.
    let (status, _) = create(
        &mut inner,
        &invoice_form("ABCDEFGHIJKL-2026-0001", future),
        "k",
    );
    assert_eq!(status, 200);
}

#[test]
fn a_lost_answer_ran_and_its_key_replays_it() {
    let mut inner = stripe();
    inner.losses.push(LossRule {
        method: Method::POST,
        path: "/v1/invoices".into(),
        remaining: 1,
        how: Loss::Dropped,
    });
    let form = invoice_form("A-2026-0001", now().timestamp() + 3600);
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let req = request(Method::POST, "/v1/invoices", &pairs, Some("k"));
    assert!(matches!(
        serve(&mut inner, &req, now()),
        Answer::Lost(Loss::Dropped, ..)
    ));
    assert_eq!(inner.invoices.len(), 1, "it ran");
    let (status, body) = reply(serve(&mut inner, &req, now()));
    assert_eq!(status, 200);
    assert_eq!(
        inner.invoices.keys().next().map(String::as_str),
        body["id"].as_str()
    );
}

#[test]
fn lists_are_newest_first_in_pages() {
    let mut inner = stripe();
    for n in 1..=3 {
        let form = invoice_form(&format!("A-2026-000{n}"), now().timestamp() + 3600);
        create(&mut inner, &form, &format!("k{n}"));
    }
    let mut get = request(Method::GET, "/v1/invoices", &[], None);
    get.query = HashMap::from([
        ("customer".to_string(), "cus_fake000001".to_string()),
        ("limit".to_string(), "2".to_string()),
    ]);
    let (_, page) = reply(serve(&mut inner, &get, now()));
    let numbers = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .map(|d| {
                d.iter()
                    .filter_map(|i| i["number"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(numbers(&page), ["A-2026-0003", "A-2026-0002"]);
    assert_eq!(
        (page["object"].clone(), page["has_more"].clone()),
        (json!("list"), json!(true))
    );
    let last = page["data"][1]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    get.query.insert("starting_after".into(), last);
    let (_, rest) = reply(serve(&mut inner, &get, now()));
    assert_eq!(numbers(&rest), ["A-2026-0001"]);
    assert_eq!(rest["has_more"], false);
}

#[test]
fn keys_are_masked_as_stripe_quotes_them() {
    assert_eq!(mask("sk_test_abcdefgh1234"), "sk_test_********1234");
    assert_eq!(mask("sk_test_1234"), "************");
    // Without a recognisable prefix Stripe keeps only the last four ("*****ined" for
    // "undefined", withspectrum/spectrum#2716).
    assert_eq!(mask("undefined"), "*****ined");
}
