//! A fake SimplyBook.me JSON-RPC API on loopback: `getToken` on `/login` and
//! `getBookingDetails` on `/`, with the real checks (company and API key, token headers, the md5
//! sign over id + hash + secret key). Tests put bookings in it, expire its tokens and take it
//! down to see the ledger's client cope.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Default)]
struct Inner {
    company: String,
    api_key: String,
    secret_key: String,
    tokens: HashSet<String>,
    issued: u64,
    /// booking id → (booking hash, details as `getBookingDetails` returns them)
    bookings: HashMap<String, (String, Value)>,
    unavailable: bool,
    calls: HashMap<String, u64>,
}

type Shared = crate::shared::Shared<Inner>;

pub struct FakeSimplyBook {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl FakeSimplyBook {
    /// Serves one company with these credentials.
    pub async fn start(company: &str, api_key: &str, secret_key: &str) -> anyhow::Result<Self> {
        let shared = Shared::default();
        {
            let mut inner = shared.lock();
            inner.company = company.to_string();
            inner.api_key = api_key.to_string();
            inner.secret_key = secret_key.to_string();
        }
        let app = Router::new()
            .route("/login", post(login))
            .route("/", post(api))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeSimplyBook { addr, shared, task })
    }

    /// The API's base URL (what `LEDGER_SIMPLYBOOK_URL` points at).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates or replaces a booking. `details` is what `getBookingDetails` returns; its `id`
    /// is set to `id`.
    pub fn put_booking(&self, id: &str, hash: &str, mut details: Value) {
        details["id"] = json!(id);
        self.shared
            .lock()
            .bookings
            .insert(id.to_string(), (hash.to_string(), details));
    }

    /// While unavailable, every request gets 503.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.shared.lock().unavailable = unavailable;
    }

    /// Invalidates every token issued so far, as SimplyBook does when they expire.
    pub fn expire_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// How often `method` was called (answered or not).
    pub fn calls(&self, method: &str) -> u64 {
        self.shared.lock().calls.get(method).copied().unwrap_or(0)
    }
}

impl Drop for FakeSimplyBook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn rpc_error(code: i64, message: &str) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": message}}))
        .into_response()
}

fn rpc_result(result: Value) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": 1, "result": result})).into_response()
}

/// The method and string parameters of a JSON-RPC request, counted.
fn request(inner: &mut Inner, body: &Value) -> (String, Vec<String>) {
    let method = body["method"].as_str().unwrap_or_default().to_string();
    *inner.calls.entry(method.clone()).or_default() += 1;
    let params = body["params"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    (method, params)
}

async fn login(State(shared): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut inner = shared.lock();
    let (method, params) = request(&mut inner, &body);
    if inner.unavailable {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if method != "getToken" {
        return rpc_error(-32601, "Method not found");
    }
    if params.len() != 2 || params[0] != inner.company || params[1] != inner.api_key {
        return rpc_error(-32600, "Company login or API key is wrong");
    }
    inner.issued += 1;
    let token = format!("fake-token-{}", inner.issued);
    inner.tokens.insert(token.clone());
    rpc_result(json!(token))
}

async fn api(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut inner = shared.lock();
    let (method, params) = request(&mut inner, &body);
    if inner.unavailable {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if header("X-Company-Login") != inner.company || !inner.tokens.contains(header("X-Token")) {
        return rpc_error(-32600, "Access denied");
    }
    if method != "getBookingDetails" {
        return rpc_error(-32601, "Method not found");
    }
    let [id, sign] = params.as_slice() else {
        return rpc_error(-32602, "Invalid params");
    };
    let Some((hash, details)) = inner.bookings.get(id) else {
        return rpc_error(-32080, "Appointment not found");
    };
    let expected = billing_domain::simplybook::booking_sign(id, hash, &inner.secret_key);
    if *sign != expected {
        return rpc_error(-32085, "Signature error");
    }
    rpc_result(details.clone())
}
