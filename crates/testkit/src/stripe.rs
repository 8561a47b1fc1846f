//! A fake Stripe API on loopback for the calls invoicing makes: customers, invoices and invoice
//! items (create and list), retrieve, finalize, send, void and delete. It behaves like Stripe
//! where a client can go wrong, and records every request:
//!
//! - **API key**: `Authorization: Bearer <key>` must be the fake's key; a missing, wrong or
//!   expired key gets `401` with Stripe's error object, the key masked as Stripe masks it
//!   (`sk_test_****…abcd`).
//! - **Idempotency** (POST only; keys on GET and DELETE have no effect): the first response to
//!   a key is saved once the endpoint runs (a request refused by parameter validation is not
//!   saved) and replayed to a repeat with the same method, path and parameters; the same key
//!   with anything else gets `400 idempotency_error`. [`FakeStripe::expire_idempotency_keys`]
//!   forgets them, as Stripe does once they are 24 hours old.
//! - **Limits**: `POST /v1/invoices` refuses a `number` over 26 characters and a `due_date`
//!   that is not in the future (`400 invalid_request_error` naming the parameter).
//! - **Bad days**: an outage (`503`), latency, and a lost answer: the request runs (and its
//!   response is saved under its key) but the connection drops before the answer, a `500`
//!   comes back instead of it, or it comes too late for the client.
//!
//! Where each shape comes from (docs/contracts/stripe.md has the detail):
//! - error object `{"error":{"type","code","message","param"}}`, `type` one of `api_error`,
//!   `card_error`, `idempotency_error`, `invalid_request_error`: stripe/openapi `spec3.json`,
//!   `components.schemas.error` and `api_errors`;
//! - `number` `maxLength` 26, `due_date` a unix time, `days_until_due`: stripe/openapi
//!   `PostInvoices`; the past `due_date` message and param: Stripe's answer quoted in
//!   stripe/stripe-python#925;
//! - idempotency (saved status and body, replay, 24 h, parameters compared, validation failures
//!   not saved, no effect on GET/DELETE): docs.stripe.com/api/idempotent_requests; its `400`:
//!   stripe/stripe-ruby `lib/stripe/api_requestor.rb` maps `idempotency_error` from 400/404; the
//!   message as Stripe words it in production (fjordllc/bootcamp#3928);
//! - `401` for a bad key: docs.stripe.com/error-low-level; its messages as Stripe sends them
//!   (stripe/stripe-node#361, abengoa/clj-stripe#11, gadelkareem/skeleton#20); `api_key_expired`
//!   is a code in the spec's `api_errors.code` enum;
//! - lists `{"object":"list","data","has_more","url"}`, newest first, `limit` (1-100, default
//!   10) and `starting_after`, filtered by `customer`, `email` or `invoice`: stripe/openapi
//!   `GetInvoices`, `GetInvoiceitems`, `GetCustomers` and their list schemas;
//! - objects carry the fields async-stripe requires, with the spec's names. Items are served as
//!   `invoiceitem` objects; an invoice's `lines` stays an empty list (Stripe would show the items
//!   there as line items, another shape).
//!
//! Modelled, not confirmed: the wording of the `number` length error, and that idempotency is
//! checked before parameter validation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::Value;

mod api;

use api::{Refusal, error, route};

/// The API key [`FakeStripe::start`] accepts (obviously fake).
pub const API_KEY: &str = "sk_test_fake_not_a_real_key";

/// Longest invoice `number` Stripe accepts (`PostInvoices`, `number.maxLength`).
const MAX_NUMBER_LEN: usize = 26;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct StripeCall {
    pub method: String,
    pub path: String,
    pub idempotency_key: Option<String>,
    /// Form fields as sent, e.g. `metadata[invoice_id]`.
    pub form: HashMap<String, String>,
    /// Query parameters (lists).
    pub query: HashMap<String, String>,
    /// Whether the call did something (false: refused, or replayed from its idempotency key).
    pub executed: bool,
    /// The status the fake meant to answer (a lost answer is counted too).
    pub status: u16,
}

/// How an answer is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// The connection drops after the status line, before the body.
    Dropped,
    /// A `500` in place of the answer (a proxy's, say); the saved response stays the real one.
    ServerError,
    /// The answer comes this much later: after the client's timeout, it has lost it.
    Late(Duration),
}

#[derive(Debug)]
struct LossRule {
    method: Method,
    path: String,
    remaining: usize,
    how: Loss,
}

#[derive(Debug, Clone)]
struct Saved {
    method: Method,
    path: String,
    params: BTreeMap<String, String>,
    status: u16,
    body: Value,
}

struct Inner {
    api_key: String,
    api_key_expired: bool,
    // Ids embed a zero-padded counter, so each map iterates in creation order.
    customers: BTreeMap<String, Value>,
    invoices: BTreeMap<String, Value>,
    items: BTreeMap<String, Value>,
    sent: HashSet<String>,
    idempotent: HashMap<String, Saved>,
    calls: Vec<StripeCall>,
    unavailable: bool,
    /// Requests still answered before an outage begins.
    answered_before_outage: Option<usize>,
    losses: Vec<LossRule>,
    latency: Duration,
    next_id: u64,
}

impl Inner {
    fn new(api_key: &str) -> Self {
        Inner {
            api_key: api_key.to_string(),
            api_key_expired: false,
            customers: BTreeMap::new(),
            invoices: BTreeMap::new(),
            items: BTreeMap::new(),
            sent: HashSet::new(),
            idempotent: HashMap::new(),
            calls: Vec::new(),
            unavailable: false,
            answered_before_outage: None,
            losses: Vec::new(),
            latency: Duration::ZERO,
            next_id: 0,
        }
    }
}

impl Default for Inner {
    fn default() -> Self {
        Inner::new(API_KEY)
    }
}

type Shared = crate::shared::Shared<Inner>;

pub struct FakeStripe {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl FakeStripe {
    /// A fake Stripe that accepts [`API_KEY`].
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with_key(API_KEY).await
    }

    pub async fn start_with_key(api_key: &str) -> anyhow::Result<Self> {
        let shared = Shared::default();
        shared.lock().api_key = api_key.to_string();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeStripe { addr, shared, task })
    }

    /// The API base URL (what `INVOICING_STRIPE_API_BASE` points at).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on only `api_key` is accepted (a rolled key: the old one is refused).
    pub fn set_api_key(&self, api_key: &str) {
        let mut inner = self.shared.lock();
        inner.api_key = api_key.to_string();
        inner.api_key_expired = false;
    }

    /// The accepted key expires: requests with it get `401 api_key_expired`.
    pub fn expire_api_key(&self) {
        self.shared.lock().api_key_expired = true;
    }

    /// Forgets every saved idempotency key, as Stripe does once they are 24 hours old: a
    /// repeated key then runs the request again.
    pub fn expire_idempotency_keys(&self) {
        self.shared.lock().idempotent.clear();
    }

    /// Every answer waits `latency` after the request has run (a client that gives up first has
    /// lost the answer to a request that did run).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// The next `n` requests with `method` to `path` run, but their answer is lost `how`.
    pub fn lose_answers(&self, method: &str, path: &str, n: usize, how: Loss) {
        let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::POST);
        self.shared.lock().losses.push(LossRule {
            method,
            path: path.to_string(),
            remaining: n,
            how,
        });
    }

    /// While unavailable every request gets a 503, as during a Stripe incident.
    pub fn set_unavailable(&self, unavailable: bool) {
        let mut inner = self.shared.lock();
        inner.unavailable = unavailable;
        inner.answered_before_outage = None;
    }

    /// Answers `requests` more requests, then becomes unavailable (an outage mid-way through a
    /// sequence of calls).
    pub fn set_unavailable_after(&self, requests: usize) {
        self.shared.lock().answered_before_outage = Some(requests);
    }

    pub fn calls(&self) -> Vec<StripeCall> {
        self.shared.lock().calls.clone()
    }

    /// The invoices Stripe holds (not deleted), oldest first.
    pub fn invoices(&self) -> Vec<Value> {
        self.shared.lock().invoices.values().cloned().collect()
    }

    /// The invoice items Stripe holds, oldest first.
    pub fn items(&self) -> Vec<Value> {
        self.shared.lock().items.values().cloned().collect()
    }

    pub fn customers(&self) -> Vec<Value> {
        self.shared.lock().customers.values().cloned().collect()
    }

    /// Whether the invoice was sent (`POST /v1/invoices/{id}/send`).
    pub fn sent(&self, invoice_id: &str) -> bool {
        self.shared.lock().sent.contains(invoice_id)
    }
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request as the fake sees it.
struct Request {
    method: Method,
    path: String,
    query: HashMap<String, String>,
    form: BTreeMap<String, String>,
    key: Option<String>,
    authorization: Option<String>,
}

/// What the fake does with a request.
#[derive(Debug)]
enum Answer {
    Reply(StatusCode, Value),
    /// The request ran; this would have been the answer.
    Lost(Loss, StatusCode, Value),
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let request = Request {
        method,
        path: uri.path().to_string(),
        query: uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default(),
        form: form_urlencoded::parse(&body).into_owned().collect(),
        key: header("idempotency-key"),
        authorization: header("authorization"),
    };
    let (answer, latency) = {
        let mut inner = shared.lock();
        let answer = serve(&mut inner, &request, Utc::now());
        (answer, inner.latency)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match answer {
        Answer::Reply(status, body) => (status, axum::Json(body)).into_response(),
        Answer::Lost(Loss::Late(delay), status, body) => {
            tokio::time::sleep(delay).await;
            (status, axum::Json(body)).into_response()
        }
        Answer::Lost(Loss::ServerError, ..) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(error("api_error", None, None, "An unknown error occurred")),
        )
            .into_response(),
        Answer::Lost(Loss::Dropped, ..) => {
            // The status line goes out, then the connection breaks inside the body.
            let broken = futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("connection lost (fake)"))
            });
            (StatusCode::OK, Body::from_stream(broken)).into_response()
        }
    }
}

/// Records the request and decides the answer: outage, API key, idempotency, then the endpoint.
fn serve(inner: &mut Inner, req: &Request, now: DateTime<Utc>) -> Answer {
    let mut call = StripeCall {
        method: req.method.to_string(),
        path: req.path.clone(),
        idempotency_key: req.key.clone(),
        form: req.form.clone().into_iter().collect(),
        query: req.query.clone(),
        executed: false,
        status: 0,
    };
    let (status, body) = decide(inner, req, now, &mut call);
    call.status = status.as_u16();
    inner.calls.push(call);
    let lost = inner
        .losses
        .iter_mut()
        .find(|l| l.remaining > 0 && l.method == req.method && l.path == req.path);
    match lost {
        Some(rule) if status.is_success() => {
            rule.remaining -= 1;
            Answer::Lost(rule.how, status, body)
        }
        _ => Answer::Reply(status, body),
    }
}

fn decide(
    inner: &mut Inner,
    req: &Request,
    now: DateTime<Utc>,
    call: &mut StripeCall,
) -> (StatusCode, Value) {
    match inner.answered_before_outage {
        Some(0) => inner.unavailable = true,
        Some(n) => inner.answered_before_outage = Some(n - 1),
        None => {}
    }
    if inner.unavailable {
        let body = error(
            "api_error",
            None,
            None,
            "Stripe is unavailable (fake outage)",
        );
        return (StatusCode::SERVICE_UNAVAILABLE, body);
    }
    if let Err(refused) = authenticate(inner, req.authorization.as_deref()) {
        return refused;
    }
    // Keys on GET and DELETE have no effect.
    let key = req.key.as_ref().filter(|_| req.method == Method::POST);
    if let Some(key) = key
        && let Some(saved) = inner.idempotent.get(key)
    {
        if saved.method == req.method && saved.path == req.path && saved.params == req.form {
            return (status_code(saved.status), saved.body.clone());
        }
        let message = format!(
            "Keys for idempotent requests can only be used with the same parameters they were \
             first used with. Try using a key other than '{key}' if you meant to execute a \
             different request."
        );
        return (
            StatusCode::BAD_REQUEST,
            error("idempotency_error", None, None, &message),
        );
    }
    let outcome = route(inner, req, now);
    let (status, body, began) = match outcome {
        Ok(body) => (StatusCode::OK, body, true),
        Err(Refusal {
            status,
            body,
            began,
        }) => (status, body, began),
    };
    if began && req.method != Method::GET {
        call.executed = true;
    }
    if let Some(key) = key
        && began
    {
        inner.idempotent.insert(
            key.clone(),
            Saved {
                method: req.method.clone(),
                path: req.path.clone(),
                params: req.form.clone(),
                status: status.as_u16(),
                body: body.clone(),
            },
        );
    }
    (status, body)
}

fn authenticate(inner: &Inner, authorization: Option<&str>) -> Result<(), (StatusCode, Value)> {
    // Bearer, as async-stripe sends it (Stripe also takes Basic; this fake does not).
    let presented = authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(|k| k.trim().to_string());
    let refuse = |code: Option<&str>, message: String| {
        Err((
            StatusCode::UNAUTHORIZED,
            error("invalid_request_error", code, None, &message),
        ))
    };
    match presented {
        None => refuse(
            None,
            "You did not provide an API key. You need to provide your API key in the \
             Authorization header, using Bearer auth (e.g. 'Authorization: Bearer \
             YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or \
             we can help at https://support.stripe.com/."
                .into(),
        ),
        Some(key) if key != inner.api_key => {
            refuse(None, format!("Invalid API Key provided: {}", mask(&key)))
        }
        Some(key) if inner.api_key_expired => refuse(
            Some("api_key_expired"),
            format!("Expired API Key provided: {}", mask(&key)),
        ),
        Some(_) => Ok(()),
    }
}

/// A key as Stripe quotes it: the `sk_test_` prefix and last four characters, starred between.
fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let prefix = key
        .match_indices('_')
        .nth(1)
        .map(|(i, _)| key[..=i].chars().count())
        .unwrap_or(0);
    if chars.len() <= prefix + 4 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..prefix].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - prefix - 4))
}

fn status_code(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

#[cfg(test)]
mod tests;
