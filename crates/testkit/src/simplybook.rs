//! A fake SimplyBook.me JSON-RPC API on loopback: `getToken` and `getUserToken` on `/login`,
//! `getBookingDetails` on `/` and the Company Administration API's `getBookings` on `/admin/`,
//! with the real checks (company and API key or admin user, token headers, the md5 sign over
//! id + hash + secret key). Tests put bookings in it, expire its tokens and take it down to see
//! the ledger's client cope.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::NaiveDate;
use serde_json::{Value, json};

#[derive(Default)]
struct Inner {
    company: String,
    api_key: String,
    secret_key: String,
    /// The admin user (login, password) `getUserToken` accepts; none until set.
    admin_user: Option<(String, String)>,
    /// Tokens from `getToken`, accepted on `/`.
    tokens: HashSet<String>,
    /// Tokens from `getUserToken`, accepted on `/admin/`.
    user_tokens: HashSet<String>,
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
            .route("/admin/", post(admin))
            .route("/admin", post(admin))
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

    /// Deletes a booking, as if it had never been made.
    pub fn remove_booking(&self, id: &str) {
        self.shared.lock().bookings.remove(id);
    }

    /// The company's admin user, whose login and password `getUserToken` accepts.
    pub fn set_admin_user(&self, login: &str, password: &str) {
        self.shared.lock().admin_user = Some((login.to_string(), password.to_string()));
    }

    /// While unavailable, every request gets 503.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.shared.lock().unavailable = unavailable;
    }

    /// Invalidates every token issued so far (API and user tokens), as SimplyBook does when they
    /// expire.
    pub fn expire_tokens(&self) {
        let mut inner = self.shared.lock();
        inner.tokens.clear();
        inner.user_tokens.clear();
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
    match method.as_str() {
        "getToken" => {
            if params.len() != 2 || params[0] != inner.company || params[1] != inner.api_key {
                return rpc_error(-32600, "Company login or API key is wrong");
            }
            inner.issued += 1;
            let token = format!("fake-token-{}", inner.issued);
            inner.tokens.insert(token.clone());
            rpc_result(json!(token))
        }
        "getUserToken" => {
            let accepted = match (&inner.admin_user, params.as_slice()) {
                (Some((login, password)), [company, l, p]) => {
                    *company == inner.company && l == login && p == password
                }
                _ => false,
            };
            if !accepted {
                return rpc_error(-32600, "Company login, user login or password is wrong");
            }
            inner.issued += 1;
            let token = format!("fake-user-token-{}", inner.issued);
            inner.user_tokens.insert(token.clone());
            rpc_result(json!(token))
        }
        _ => rpc_error(-32601, "Method not found"),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
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
    if header(&headers, "X-Company-Login") != inner.company
        || !inner.tokens.contains(header(&headers, "X-Token"))
    {
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

/// The Company Administration API: `getBookings(filter)` lists the bookings whose start date
/// (the company's local date) lies in `[date_from, date_to]`. Only `booking_type: "all"` is
/// served, so a client asking for less is noticed.
async fn admin(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut inner = shared.lock();
    let (method, _) = request(&mut inner, &body);
    if inner.unavailable {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if header(&headers, "X-Company-Login") != inner.company
        || !inner.user_tokens.contains(header(&headers, "X-User-Token"))
    {
        return rpc_error(-32600, "Access denied");
    }
    if method != "getBookings" {
        return rpc_error(-32601, "Method not found");
    }
    let filter = &body["params"][0];
    let date = |field: &str| {
        filter[field]
            .as_str()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    };
    let (Some(from), Some(to), Some("all")) = (
        date("date_from"),
        date("date_to"),
        filter["booking_type"].as_str(),
    ) else {
        return rpc_error(-32602, "Invalid params");
    };
    let mut listed: Vec<(String, Value)> = inner
        .bookings
        .values()
        .filter_map(|(hash, details)| {
            let start = details["start_date_time"].as_str()?;
            let day = NaiveDate::parse_from_str(start.get(..10)?, "%Y-%m-%d").ok()?;
            (from <= day && day <= to).then(|| {
                let booking = json!({
                    "id": details["id"],
                    "hash": hash,
                    "start_date": start,
                    "end_date": details["end_date_time"],
                    "is_confirm": details["is_confirmed"],
                    "event": details["event_name"],
                    "client": details["client_name"],
                });
                (start.to_string(), booking)
            })
        })
        .collect();
    listed.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| a.1["id"].to_string().cmp(&b.1["id"].to_string()))
    });
    rpc_result(Value::Array(listed.into_iter().map(|(_, b)| b).collect()))
}
