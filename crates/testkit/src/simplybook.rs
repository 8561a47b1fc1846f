//! A fake SimplyBook.me JSON-RPC API on loopback that answers in the shapes SimplyBook's
//! documentation and its own clients show: every answer is built from a contract fixture in
//! `tests/fixtures/simplybook/` (see its README for the source of each shape), never from a
//! shape of our own.
//!
//! - `/login`: `getToken`, `getUserToken`, `getServiceUrl` (a bare host, as SimplyBook's iOS app
//!   reads it);
//! - `/` (public API, `X-Company-Login` + `X-Token`): `getBookingDetails(id, sign)` with the md5
//!   sign checked, `getEventList`;
//! - `/admin` (Company Administration API, `X-Company-Login` + `X-User-Token`):
//!   `getBookings(filter)` (dates, `order`, `limit`), `getBookingDetails(id)`, `getEventList`,
//!   `getCompanyInfo`.
//!
//! Errors are the fixtures under `errors/` (string codes where SimplyBook's wiki shows them).
//! Tests build bookings with [`Details`], which starts from a details fixture and may only
//! change members the fixture has, so a test cannot invent a member either.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::NaiveDate;
use serde_json::{Value, json};

/// Where the contract fixtures are (`tests/fixtures/simplybook/` of this repository).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/simplybook")
}

/// A fixture by its path under `tests/fixtures/simplybook/`, without `.json`
/// (e.g. `details/confirmed_plain`). Panics if it is missing or not JSON: a test's mistake.
pub fn fixture(name: &str) -> Value {
    let path = fixtures_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// `getBookingDetails`' answer for one booking, from a details fixture.
#[derive(Debug, Clone)]
pub struct Details(Value);

impl Details {
    /// The fixture `details/{name}` as it is.
    pub fn fixture(name: &str) -> Details {
        Details(fixture(&format!("details/{name}")))
    }

    /// Sets a member the fixture has, by a dotted path (`start_date_time`, `price.amount`).
    /// Panics if the fixture has no such member or the new value is of another JSON kind
    /// (a string stays a string): fixtures, not tests, decide shapes.
    pub fn with(mut self, path: &str, value: impl Into<Value>) -> Details {
        let value = value.into();
        let mut target = &mut self.0;
        for key in path.split('.') {
            target = target
                .get_mut(key)
                .unwrap_or_else(|| panic!("the details fixture has no member {path:?}"));
        }
        let kind = |v: &Value| std::mem::discriminant(v);
        assert!(
            target.is_null() || value.is_null() || kind(target) == kind(&value),
            "{path}: fixture has {target}, test sets {value}"
        );
        *target = value;
        self
    }

    /// Takes the member `key` from another details fixture, as it is there (e.g. the payments
    /// feature's `price` object from `confirmed_paid_price_object` onto a Status-feature
    /// booking): combining features, still only in shapes a fixture shows.
    pub fn member_from(mut self, key: &str, fixture_name: &str) -> Details {
        let other = Details::fixture(fixture_name);
        let value = other
            .0
            .get(key)
            .unwrap_or_else(|| panic!("details/{fixture_name} has no member {key:?}"))
            .clone();
        assert!(
            self.0.get(key).is_some(),
            "the details fixture has no member {key:?}"
        );
        self.0[key] = value;
        self
    }

    /// A booking starting at `start` (the company's local `YYYY-MM-DD HH:MM:SS`) priced `price`
    /// through the payments feature, in a state: `confirmed`, `canceled` (is_confirmed 0),
    /// `pending` (awaiting approval), or the Status feature's `completed` / `no_show` labels
    /// ("Completed", "No show").
    pub fn booking(start: &str, state: &str, price: &str) -> Details {
        let base = match state {
            "confirmed" | "canceled" => "confirmed_paid_price_object",
            "pending" => "approval_pending",
            "completed" => "status_label_completed",
            "no_show" => "status_label_no_show",
            other => panic!("no fixture for state {other:?}"),
        };
        let details = Details::fixture(base)
            .member_from("price", "confirmed_paid_price_object")
            .with("start_date_time", start)
            .with("end_date_time", start)
            .with("price.amount", price);
        if state == "canceled" {
            details.with("is_confirmed", "0")
        } else {
            details
        }
    }

    /// The JSON as `getBookingDetails` returns it.
    pub fn json(&self) -> &Value {
        &self.0
    }
}

#[derive(Default)]
struct Inner {
    /// This server's own host, `127.0.0.1:port`, what `getServiceUrl` answers for its company.
    host: String,
    company: String,
    api_key: String,
    secret_key: String,
    /// The admin user (login, password) `getUserToken` accepts; none until set.
    admin_user: Option<(String, String)>,
    /// `getUserToken` refuses every login as for a company with the HIPAA feature.
    hipaa: bool,
    /// The company has moved to another API domain: this one no longer knows it.
    moved: bool,
    /// Other companies `getServiceUrl` knows, and the host each lives on.
    directory: HashMap<String, String>,
    tokens: HashSet<String>,
    user_tokens: HashSet<String>,
    issued: u64,
    /// booking id → (booking hash, details)
    bookings: BTreeMap<String, (String, Value)>,
    events: Value,
    company_info: Value,
    /// `bookings/list_array`'s first row: the keys a `getBookings` row has.
    row_template: Value,
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
    /// Serves one company with these credentials, its services from `events/event_list` and
    /// its company info from `company/company_info`.
    pub async fn start(company: &str, api_key: &str, secret_key: &str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Self::serve(listener, company, api_key, secret_key).await
    }

    /// As [`FakeSimplyBook::start`], on a listener the caller bound.
    pub async fn serve(
        listener: tokio::net::TcpListener,
        company: &str,
        api_key: &str,
        secret_key: &str,
    ) -> anyhow::Result<Self> {
        let addr = listener.local_addr()?;
        let shared = Shared::default();
        {
            let mut inner = shared.lock();
            inner.host = addr.to_string();
            inner.company = company.to_string();
            inner.api_key = api_key.to_string();
            inner.secret_key = secret_key.to_string();
            inner.events = fixture("events/event_list");
            inner.company_info = fixture("company/company_info");
            inner.company_info["login"] = json!(company);
            inner.row_template = fixture("bookings/list_array")[0].clone();
        }
        let app = Router::new()
            .route("/login", post(login))
            .route("/login/", post(login))
            .route("/", post(api))
            .route("/admin/", post(admin))
            .route("/admin", post(admin))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeSimplyBook { addr, shared, task })
    }

    /// The login API's base URL (what `LEDGER_SIMPLYBOOK_URL` points at).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bare host `getServiceUrl` answers for this server's company.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Creates or replaces a booking; its `id` is set to `id`.
    pub fn put_booking(&self, id: &str, hash: &str, details: Details) {
        let details = details.with("id", id).0;
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

    /// Refuses every admin login as SimplyBook does for a company with its HIPAA feature.
    pub fn set_hipaa(&self, on: bool) {
        self.shared.lock().hipaa = on;
    }

    /// The company has moved to another domain: logins and calls here are answered "Company
    /// does not exist" (`errors/company_not_found`, `errors/company_not_found_api_32600`), and
    /// `getServiceUrl` here answers whatever [`FakeSimplyBook::add_company_host`] says.
    pub fn set_moved(&self, moved: bool) {
        self.shared.lock().moved = moved;
    }

    /// `getServiceUrl(company)` answers `host` (another server's [`FakeSimplyBook::host`]).
    pub fn add_company_host(&self, company: &str, host: &str) {
        self.shared
            .lock()
            .directory
            .insert(company.to_string(), host.to_string());
    }

    /// Changes a service's price in `getEventList` (a string, as SimplyBook sends it).
    pub fn set_event_price(&self, event_id: &str, price: &str) {
        let mut inner = self.shared.lock();
        assert!(
            inner.events[event_id]["price"].is_string(),
            "event {event_id} is not in events/event_list"
        );
        inner.events[event_id]["price"] = json!(price);
    }

    /// The company's time zone as `getCompanyInfo` reports it.
    pub fn set_time_zone(&self, zone: &str) {
        self.shared.lock().company_info["timezone"] = json!(zone);
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

    /// Every call so far, all methods.
    pub fn total_calls(&self) -> u64 {
        self.shared.lock().calls.values().sum()
    }
}

impl Drop for FakeSimplyBook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An error from `errors/{name}`, in the JSON-RPC envelope with the request's id.
fn rpc_error(id: &Value, name: &str) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": id, "error": fixture(&format!("errors/{name}"))}))
        .into_response()
}

fn rpc_result(id: &Value, result: Value) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

/// The method, string parameters and id of a JSON-RPC request, counted.
fn request(inner: &mut Inner, body: &Value) -> (String, Vec<String>, Value) {
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
    (method, params, body["id"].clone())
}

async fn login(State(shared): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut inner = shared.lock();
    let (method, params, id) = request(&mut inner, &body);
    if inner.unavailable {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    match method.as_str() {
        "getServiceUrl" => match params.as_slice() {
            [company] if *company == inner.company && !inner.moved => {
                rpc_result(&id, json!(inner.host))
            }
            [company] => match inner.directory.get(company) {
                Some(host) => rpc_result(&id, json!(host)),
                None => rpc_error(&id, "company_not_found"),
            },
            _ => rpc_error(&id, "invalid_params_string_code"),
        },
        "getToken" | "getUserToken" if inner.moved => rpc_error(&id, "company_not_found"),
        "getToken" => {
            if params.len() != 2 || params[0] != inner.company || params[1] != inner.api_key {
                return rpc_error(&id, "login_wrong_credentials");
            }
            inner.issued += 1;
            let token = format!("fake-token-{}", inner.issued);
            inner.tokens.insert(token.clone());
            rpc_result(&id, json!(token))
        }
        "getUserToken" => {
            if inner.hipaa {
                return rpc_error(&id, "hipaa_admin_login_refused");
            }
            let accepted = match (&inner.admin_user, params.as_slice()) {
                (Some((login, password)), [company, l, p]) => {
                    *company == inner.company && l == login && p == password
                }
                _ => false,
            };
            if !accepted {
                return rpc_error(&id, "login_wrong_credentials");
            }
            inner.issued += 1;
            let token = format!("fake-user-token-{}", inner.issued);
            inner.user_tokens.insert(token.clone());
            rpc_result(&id, json!(token))
        }
        _ => rpc_error(&id, "method_not_found_numeric_code"),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Who a request is from: `None` when it may proceed, else the refusal SimplyBook gives.
fn refused(inner: &Inner, headers: &HeaderMap, token_header: &str, id: &Value) -> Option<Response> {
    let tokens = if token_header == "X-Token" {
        &inner.tokens
    } else {
        &inner.user_tokens
    };
    if header(headers, "X-Company-Login") != inner.company || inner.moved {
        return Some(rpc_error(id, "company_not_found_api_32600"));
    }
    if !tokens.contains(header(headers, token_header)) {
        return Some(rpc_error(id, "token_expired_or_invalid"));
    }
    None
}

async fn api(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut inner = shared.lock();
    let (method, params, id) = request(&mut inner, &body);
    if inner.unavailable {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if let Some(refusal) = refused(&inner, &headers, "X-Token", &id) {
        return refusal;
    }
    match method.as_str() {
        "getEventList" => rpc_result(&id, inner.events.clone()),
        "getBookingDetails" => {
            let [booking, sign] = params.as_slice() else {
                return rpc_error(&id, "invalid_params_string_code");
            };
            let Some((hash, details)) = inner.bookings.get(booking) else {
                return rpc_error(&id, "not_found_numeric_code");
            };
            let expected =
                billing_domain::simplybook::booking_sign(booking, hash, &inner.secret_key);
            if *sign != expected {
                return rpc_error(&id, "signature_error_string_code");
            }
            rpc_result(&id, details.clone())
        }
        _ => rpc_error(&id, "method_not_found_numeric_code"),
    }
}

async fn admin(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut inner = shared.lock();
    let (method, params, id) = request(&mut inner, &body);
    if inner.unavailable {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if let Some(refusal) = refused(&inner, &headers, "X-User-Token", &id) {
        return refusal;
    }
    match method.as_str() {
        "getEventList" => rpc_result(&id, inner.events.clone()),
        "getCompanyInfo" => rpc_result(&id, inner.company_info.clone()),
        "getStatuses" => rpc_result(&id, fixture("statuses/status_list")),
        "getBookingDetails" => match params.as_slice() {
            [booking] => match inner.bookings.get(booking) {
                Some((_, details)) => rpc_result(&id, details.clone()),
                None => rpc_error(&id, "not_found_numeric_code"),
            },
            _ => rpc_error(&id, "invalid_params_string_code"),
        },
        "getBookings" => bookings(&inner, &body["params"][0], &id),
        _ => rpc_error(&id, "method_not_found_numeric_code"),
    }
}

/// `getBookings(filter)`: the bookings whose start date (the company's local date) lies in
/// `[date_from, date_to]`, at most `limit`, ordered by `order`: `date_start_asc` (the wiki's
/// spelling) or `start_date_asc` (SimplyBook's app's) ascending by start; `record_date` by when
/// they were made, newest first; anything else by start, newest first. The wiki names
/// `date_start` the default and `date_start_asc` the ascending one, which suggests the default
/// descends; no source says so outright, and a client that needs an order must ask for it.
/// Rows have the keys of `bookings/list_array` that the booking's features give.
fn bookings(inner: &Inner, filter: &Value, id: &Value) -> Response {
    let date = |field: &str| {
        filter[field]
            .as_str()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    };
    let (Some(from), Some(to)) = (date("date_from"), date("date_to")) else {
        return rpc_error(id, "invalid_params_string_code");
    };
    if filter["booking_type"].as_str().is_some_and(|t| t != "all") {
        return rpc_error(id, "invalid_params_string_code");
    }
    let mut rows: Vec<Value> = inner
        .bookings
        .values()
        .filter(|(_, d)| {
            d["start_date_time"]
                .as_str()
                .and_then(|s| NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok())
                .is_some_and(|day| from <= day && day <= to)
        })
        .map(|(_, d)| list_row(&inner.row_template, d))
        .collect();
    let order = filter["order"].as_str().unwrap_or("date_start");
    let field = if order == "record_date" {
        "record_date"
    } else {
        "start_date"
    };
    rows.sort_by_key(|r| {
        (
            r[field].as_str().unwrap_or("").to_string(),
            r["id"].to_string(),
        )
    });
    if !matches!(order, "date_start_asc" | "start_date_asc") {
        rows.reverse();
    }
    if let Some(limit) = filter["limit"]
        .as_u64()
        .or_else(|| filter["limit"].as_str()?.parse().ok())
    {
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    rpc_result(id, Value::Array(rows))
}

/// A `getBookings` row for a booking: `bookings/list_array`'s first row's keys, filled from the
/// details (plugin members only when the booking's details have the plugin's object).
fn list_row(template: &Value, d: &Value) -> Value {
    let mut row = template.clone();
    let from = [
        ("id", "id"),
        ("record_date", "record_date"),
        ("start_date", "start_date_time"),
        ("end_date", "end_date_time"),
        ("event_id", "event_id"),
        ("event", "event_name"),
        ("unit_id", "unit_id"),
        ("unit", "unit_name"),
        ("client_id", "client_id"),
        ("client", "client_name"),
        ("client_email", "client_email"),
        ("client_phone", "client_phone"),
        ("is_confirm", "is_confirmed"),
    ];
    for (key, source) in from {
        row[key] = d[source].clone();
    }
    let obj = row.as_object_mut().expect("row template is an object");
    match d["status"].get("id") {
        Some(status) => {
            obj.insert("status".into(), status.clone());
        }
        None => {
            obj.remove("status");
        }
    }
    match (
        d["price"].get("status"),
        d["price"].get("payment_processor"),
    ) {
        (Some(status), Some(system)) => {
            obj.insert("payment_status".into(), status.clone());
            obj.insert("payment_system".into(), system.clone());
        }
        _ => {
            obj.remove("payment_status");
            obj.remove("payment_system");
        }
    }
    match d.get("approve_status") {
        Some(approve) => {
            obj.insert("approve_status".into(), approve.clone());
        }
        None => {
            obj.remove("approve_status");
        }
    }
    row
}
