//! A fake Stripe API on loopback for the calls invoicing makes: customers, invoices, invoice
//! items, finalize, send, void, delete and retrieve. It honours `Idempotency-Key` the way Stripe
//! does (a repeated key replays the first response), records every request, and can be taken
//! down to simulate an outage. Objects carry the fields async-stripe requires.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct StripeCall {
    pub method: String,
    pub path: String,
    pub idempotency_key: Option<String>,
    /// Form fields as sent, e.g. `metadata[invoice_id]`.
    pub form: HashMap<String, String>,
    /// Whether the call did something (false: refused during an outage, or replayed).
    pub executed: bool,
}

#[derive(Default)]
struct Inner {
    customers: HashMap<String, Value>,
    invoices: HashMap<String, Value>,
    /// (method + path + key) → the first response's status and body.
    idempotent: HashMap<String, (u16, Value)>,
    calls: Vec<StripeCall>,
    unavailable: bool,
    /// Requests still answered before an outage begins.
    answered_before_outage: Option<usize>,
    next_id: u64,
}

type Shared = crate::shared::Shared<Inner>;

pub struct FakeStripe {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl FakeStripe {
    pub async fn start() -> anyhow::Result<Self> {
        let shared = Shared::default();
        let app = Router::new()
            .route("/v1/customers", post(handle_root))
            .route("/v1/invoices", post(handle_root))
            .route("/v1/invoiceitems", post(handle_root))
            .route("/v1/invoices/{id}", get(handle_id).delete(handle_id))
            .route("/v1/invoices/{id}/{action}", post(handle_action))
            .with_state(shared.clone());
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

    /// The invoices Stripe holds (not deleted).
    pub fn invoices(&self) -> Vec<Value> {
        let mut all: Vec<Value> = self.shared.lock().invoices.values().cloned().collect();
        all.sort_by_key(|i| i["id"].as_str().map(str::to_string));
        all
    }

    pub fn customers(&self) -> Vec<Value> {
        self.shared.lock().customers.values().cloned().collect()
    }
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle_root(
    State(shared): State<Shared>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(
        &shared,
        method,
        uri.path(),
        &headers,
        &body,
        |inner, form| match uri.path() {
            "/v1/customers" => create_customer(inner, form),
            "/v1/invoices" => create_invoice(inner, form),
            _ => create_item(inner, form),
        },
    )
}

async fn handle_id(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let delete = method == Method::DELETE;
    serve(&shared, method, uri.path(), &headers, &[], |inner, _| {
        if delete {
            match inner.invoices.get(&id) {
                Some(inv) if inv["status"] == "draft" => {
                    inner.invoices.remove(&id);
                    Ok(json!({"id": id, "object": "invoice", "deleted": true}))
                }
                Some(_) => Err(bad_request("only draft invoices can be deleted")),
                None => Err(not_found(&id)),
            }
        } else {
            inner
                .invoices
                .get(&id)
                .cloned()
                .ok_or_else(|| not_found(&id))
        }
    })
}

async fn handle_action(
    State(shared): State<Shared>,
    Path((id, action)): Path<(String, String)>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&shared, method, uri.path(), &headers, &body, |inner, _| {
        let invoice = inner.invoices.get_mut(&id).ok_or_else(|| not_found(&id))?;
        let status = invoice["status"].as_str().unwrap_or_default().to_string();
        match (action.as_str(), status.as_str()) {
            ("finalize", "draft") => {
                let total: i64 = invoice["items"]
                    .as_array()
                    .map(|items| items.iter().filter_map(|i| i["amount"].as_i64()).sum())
                    .unwrap_or(0);
                invoice["status"] = json!("open");
                invoice["total"] = json!(total);
                invoice["subtotal"] = json!(total);
                invoice["amount_due"] = json!(total);
                invoice["amount_remaining"] = json!(total);
                invoice["hosted_invoice_url"] = json!(format!("https://invoice.stripe.test/{id}"));
                if invoice["number"].is_null() {
                    invoice["number"] = json!(format!("STRIPE-{id}"));
                }
            }
            ("finalize", _) => return Err(bad_request("This invoice is already finalized")),
            ("send", "open") => invoice["sent"] = json!(true),
            ("void", "open") => invoice["status"] = json!("void"),
            _ => return Err(bad_request(&format!("cannot {action} a {status} invoice"))),
        }
        Ok(invoice.clone())
    })
}

type Outcome = Result<Value, (StatusCode, Value)>;

/// Records the call, answers 503 during an outage, replays a repeated idempotency key, and
/// otherwise runs `act`.
fn serve(
    shared: &Shared,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    act: impl FnOnce(&mut Inner, &HashMap<String, String>) -> Outcome,
) -> Response {
    let form: HashMap<String, String> = serde_urlencoded_pairs(body);
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut inner = shared.lock();
    let mut call = StripeCall {
        method: method.to_string(),
        path: path.to_string(),
        idempotency_key: key.clone(),
        form: form.clone(),
        executed: false,
    };
    match inner.answered_before_outage {
        Some(0) => inner.unavailable = true,
        Some(n) => inner.answered_before_outage = Some(n - 1),
        None => {}
    }
    if inner.unavailable {
        inner.calls.push(call);
        let error = json!({"error": {"type": "api_error", "message": "Stripe is unavailable (fake outage)"}});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(error)).into_response();
    }
    let replay_key = key.map(|k| format!("{method} {path} {k}"));
    if let Some((status, body)) = replay_key.as_ref().and_then(|k| inner.idempotent.get(k)) {
        let response = (status_code(*status), axum::Json(body.clone())).into_response();
        inner.calls.push(call);
        return response;
    }
    call.executed = true;
    let (status, body) = match act(&mut inner, &form) {
        Ok(body) => (StatusCode::OK, body),
        Err((status, body)) => (status, body),
    };
    if let Some(k) = replay_key {
        inner.idempotent.insert(k, (status.as_u16(), body.clone()));
    }
    inner.calls.push(call);
    (status, axum::Json(body)).into_response()
}

fn status_code(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn serde_urlencoded_pairs(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn next_id(inner: &mut Inner, prefix: &str) -> String {
    inner.next_id += 1;
    format!("{prefix}_fake{:06}", inner.next_id)
}

fn metadata(form: &HashMap<String, String>) -> Value {
    let entries: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_string(), json!(v)))
        })
        .collect();
    Value::Object(entries)
}

fn create_customer(inner: &mut Inner, form: &HashMap<String, String>) -> Outcome {
    let id = next_id(inner, "cus");
    let customer = json!({
        "id": id, "object": "customer", "created": 1_767_225_600, "livemode": false,
        "email": form.get("email"), "name": form.get("name"), "metadata": metadata(form),
    });
    inner.customers.insert(id, customer.clone());
    Ok(customer)
}

fn create_invoice(inner: &mut Inner, form: &HashMap<String, String>) -> Outcome {
    let customer = form.get("customer").cloned().unwrap_or_default();
    if !inner.customers.contains_key(&customer) {
        return Err(bad_request(&format!("No such customer: '{customer}'")));
    }
    let id = next_id(inner, "in");
    let invoice = json!({
        "id": id, "object": "invoice", "customer": customer, "status": "draft",
        "number": form.get("number"), "description": form.get("description"),
        "currency": form.get("currency").cloned().unwrap_or_else(|| "aud".into()),
        "collection_method": form.get("collection_method").cloned().unwrap_or_default(),
        "days_until_due": form.get("days_until_due").and_then(|d| d.parse::<i64>().ok()),
        "metadata": metadata(form),
        "amount_due": 0, "amount_overpaid": 0, "amount_paid": 0, "amount_remaining": 0,
        "amount_shipping": 0, "attempt_count": 0, "attempted": false,
        "automatic_tax": {"enabled": false}, "created": 1_767_225_600,
        "default_tax_rates": [], "discounts": [], "issuer": {"type": "self"},
        "lines": {"object": "list", "data": [], "has_more": false, "url": format!("/v1/invoices/{id}/lines")},
        "livemode": false, "payment_settings": {}, "period_end": 1_767_225_600,
        "period_start": 1_767_225_600, "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0, "starting_balance": 0, "status_transitions": {},
        "subtotal": 0, "total": 0,
    });
    inner.invoices.insert(id, invoice.clone());
    Ok(invoice)
}

fn create_item(inner: &mut Inner, form: &HashMap<String, String>) -> Outcome {
    let invoice_id = form.get("invoice").cloned().unwrap_or_default();
    let amount: i64 = form
        .get("amount")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| bad_request("amount is required"))?;
    let id = next_id(inner, "ii");
    let invoice = inner
        .invoices
        .get_mut(&invoice_id)
        .ok_or_else(|| not_found(&invoice_id))?;
    if invoice["status"] != "draft" {
        return Err(bad_request("items can only be added to draft invoices"));
    }
    let item = json!({
        "id": id, "object": "invoiceitem", "amount": amount,
        "currency": form.get("currency").cloned().unwrap_or_else(|| "aud".into()),
        "customer": form.get("customer"), "date": 1_767_225_600,
        "description": form.get("description"), "discountable": true, "invoice": invoice_id,
        "livemode": false, "period": {"start": 1_767_225_600, "end": 1_767_225_600},
        "proration": false, "quantity": 1, "quantity_decimal": "1",
    });
    // Kept beside the invoice (Stripe would show them as its line items, which have another
    // shape); `lines` stays an empty list.
    match invoice["items"].as_array_mut() {
        Some(items) => items.push(item.clone()),
        None => invoice["items"] = json!([item.clone()]),
    }
    Ok(item)
}

fn bad_request(message: &str) -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({"error": {"type": "invalid_request_error", "message": message}}),
    )
}

fn not_found(id: &str) -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"error": {"type": "invalid_request_error", "message": format!("No such invoice: '{id}'")}}),
    )
}
