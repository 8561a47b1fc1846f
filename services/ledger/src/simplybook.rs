//! A JSON-RPC client for SimplyBook.me's APIs.
//!
//! To confirm callbacks, the user API: `getToken(company, api_key)` on `{base}/login`, then
//! `getBookingDetails(id, sign)` on `{base}/` with the `X-Company-Login` and `X-Token` headers.
//!
//! To list a company's bookings for month-end reconciliation, the Company Administration API
//! (as we understand it; check it against a live account): `getUserToken(company, user_login,
//! user_password)` on `{base}/login`, then `getBookings(filter)` on `{base}/admin/` with the
//! `X-Company-Login` and `X-User-Token` headers, where `filter` is `{"date_from": "YYYY-MM-DD",
//! "date_to": "YYYY-MM-DD", "booking_type": "all"}` (dates inclusive, the company's local time).
//! The result's fields are mapped in `billing_domain::simplybook`.
//!
//! Tokens are cached per company (user tokens per company and admin user, apart from API tokens)
//! and renewed once when a call is refused (expired token). Network failures, timeouts and 5xx
//! are retried with backoff; if SimplyBook stays unavailable the caller tries again later, so
//! nothing is lost.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use billing_domain::booking::BookingPayload;
use billing_domain::callback::Callback;
use billing_domain::simplybook::ListedBooking;
use billing_domain::{TenantConfig, simplybook};
use chrono::NaiveDate;
use serde_json::value::RawValue;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// SimplyBook could not be asked (network, timeout, 5xx): try the event again later.
    #[error("simplybook unavailable: {0}")]
    Unavailable(String),
    /// SimplyBook answered and does not confirm the booking (wrong hash, unknown id, details
    /// that are not a booking): the callback must not become a booking. Also: the tenant has no
    /// credentials for the call, SimplyBook refused them, or its answer is unusable.
    #[error("{0}")]
    Refused(String),
}

enum CallError {
    Transport(String),
    Rpc(String),
}

#[derive(serde::Deserialize)]
struct RpcError {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(serde::Deserialize)]
struct RpcResponse {
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<RpcError>,
}

pub struct SimplyBook {
    http: reqwest::Client,
    base_url: String,
    attempts: u32,
    backoff: Duration,
    tokens: Mutex<Tokens>,
}

/// Cached tokens: API tokens by company, user tokens by company and user login.
#[derive(Default)]
struct Tokens {
    api: HashMap<String, String>,
    user: HashMap<(String, String), String>,
}

/// Which of SimplyBook's APIs a call goes to, with the credentials its token is issued for.
enum Api<'a> {
    /// The user API, with an API key's token.
    User { company: &'a str, api_key: &'a str },
    /// The Company Administration API, with an admin user's token.
    Admin {
        company: &'a str,
        login: &'a str,
        password: &'a str,
    },
}

impl Api<'_> {
    fn company(&self) -> &str {
        match self {
            Api::User { company, .. } | Api::Admin { company, .. } => company,
        }
    }

    fn path(&self) -> &'static str {
        match self {
            Api::User { .. } => "/",
            Api::Admin { .. } => "/admin/",
        }
    }

    fn token_header(&self) -> &'static str {
        match self {
            Api::User { .. } => "X-Token",
            Api::Admin { .. } => "X-User-Token",
        }
    }

    /// The `/login` method and parameters that issue this API's token.
    fn login(&self) -> (&'static str, serde_json::Value) {
        match self {
            Api::User { company, api_key } => ("getToken", serde_json::json!([company, api_key])),
            Api::Admin {
                company,
                login,
                password,
            } => (
                "getUserToken",
                serde_json::json!([company, login, password]),
            ),
        }
    }
}

impl SimplyBook {
    /// `base_url` is e.g. `https://user-api.simplybook.me`; each request gives up after `timeout`
    /// and is tried `attempts` times, waiting `backoff`, then twice that, and so on.
    pub fn new(
        base_url: &str,
        timeout: Duration,
        attempts: u32,
        backoff: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(SimplyBook {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()?,
            base_url: base_url.trim_end_matches('/').to_string(),
            attempts: attempts.max(1),
            backoff,
            tokens: Mutex::new(Tokens::default()),
        })
    }

    /// The booking a callback names, as SimplyBook has it now.
    pub async fn booking_details(
        &self,
        tenant: &TenantConfig,
        callback: &Callback,
    ) -> Result<BookingPayload, FetchError> {
        let (Some(company), Some(api_key), Some(secret_key)) = (
            tenant.simplybook_company.as_deref(),
            tenant.simplybook_api_key.as_ref(),
            tenant.simplybook_secret_key.as_ref(),
        ) else {
            return Err(FetchError::Refused(format!(
                "tenant {} has no SimplyBook API credentials",
                tenant.id
            )));
        };
        let sign = simplybook::booking_sign(
            &callback.booking_id,
            &callback.booking_hash,
            secret_key.expose(),
        );
        let details = self
            .rpc(
                &Api::User {
                    company,
                    api_key: api_key.expose(),
                },
                "getBookingDetails",
                &serde_json::json!([callback.booking_id, sign]),
            )
            .await?;
        simplybook::details_to_payload(&details, &callback.booking_hash)
            .map_err(|e| FetchError::Refused(format!("booking details: {e}")))
    }

    /// The company's bookings that start from `from` to `to` (inclusive, dates in the company's
    /// local time), whatever their state, as SimplyBook lists them now. An empty range lists
    /// nothing and asks nothing.
    pub async fn list_bookings(
        &self,
        tenant: &TenantConfig,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<ListedBooking>, FetchError> {
        let (Some(company), Some(login), Some(password)) = (
            tenant.simplybook_company.as_deref(),
            tenant.simplybook_user_login.as_deref(),
            tenant.simplybook_user_password.as_ref(),
        ) else {
            return Err(FetchError::Refused(format!(
                "tenant {} has no SimplyBook admin credentials \
                 (simplybook_user_login, simplybook_user_password)",
                tenant.id
            )));
        };
        if from > to {
            return Ok(Vec::new());
        }
        let filter = serde_json::json!({
            "date_from": from.format("%Y-%m-%d").to_string(),
            "date_to": to.format("%Y-%m-%d").to_string(),
            "booking_type": "all",
        });
        let list = self
            .rpc(
                &Api::Admin {
                    company,
                    login,
                    password: password.expose(),
                },
                "getBookings",
                &serde_json::json!([filter]),
            )
            .await?;
        simplybook::parse_booking_list(&list)
            .map_err(|e| FetchError::Refused(format!("booking list: {e}")))
    }

    /// `method` on `api` with a cached or new token: failures to reach SimplyBook are retried
    /// with backoff up to `attempts` times, and a refusal with a cached token (which may only
    /// have expired) is tried once more with a new one.
    async fn rpc(
        &self,
        api: &Api<'_>,
        method: &str,
        params: &serde_json::Value,
    ) -> Result<Box<RawValue>, FetchError> {
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            attempt += 1;
            let result = match self.token(api).await {
                Ok((token, fresh)) => {
                    renewed |= fresh;
                    self.call(
                        api.path(),
                        &[
                            ("X-Company-Login", api.company()),
                            (api.token_header(), &token),
                        ],
                        method,
                        params,
                    )
                    .await
                }
                // Refused credentials, not an expired token: a new one would be refused too.
                Err(CallError::Rpc(message)) => return Err(FetchError::Refused(message)),
                Err(err) => Err(err),
            };
            match result {
                Ok(result) => return Ok(result),
                // A refusal with a cached token may only mean the token expired: renew once.
                Err(CallError::Rpc(_)) if !renewed => {
                    self.forget_token(api);
                }
                Err(CallError::Rpc(message)) => return Err(FetchError::Refused(message)),
                Err(CallError::Transport(message)) if attempt >= self.attempts => {
                    return Err(FetchError::Unavailable(message));
                }
                Err(CallError::Transport(message)) => {
                    metrics::counter!("ledger_simplybook_retries_total").increment(1);
                    tracing::warn!(
                        method,
                        attempt,
                        error = %message,
                        "simplybook call failed, retrying"
                    );
                    tokio::time::sleep(self.backoff * 2u32.saturating_pow(attempt - 1)).await;
                }
            }
        }
    }

    /// The cached token for `api`'s credentials, or a new one (`true` when new).
    async fn token(&self, api: &Api<'_>) -> Result<(String, bool), CallError> {
        if let Some(token) = self.cached(api) {
            return Ok((token, false));
        }
        let (method, params) = api.login();
        let result = self.call("/login", &[], method, &params).await?;
        let token: String = serde_json::from_str(result.get())
            .map_err(|e| CallError::Rpc(format!("{method} returned no token: {e}")))?;
        let mut tokens = self.lock_tokens();
        match api {
            Api::User { company, .. } => {
                tokens.api.insert(company.to_string(), token.clone());
            }
            Api::Admin { company, login, .. } => {
                tokens
                    .user
                    .insert((company.to_string(), login.to_string()), token.clone());
            }
        }
        Ok((token, true))
    }

    fn cached(&self, api: &Api<'_>) -> Option<String> {
        let tokens = self.lock_tokens();
        match api {
            Api::User { company, .. } => tokens.api.get(*company).cloned(),
            Api::Admin { company, login, .. } => tokens
                .user
                .get(&(company.to_string(), login.to_string()))
                .cloned(),
        }
    }

    fn forget_token(&self, api: &Api<'_>) {
        let mut tokens = self.lock_tokens();
        match api {
            Api::User { company, .. } => {
                tokens.api.remove(*company);
            }
            Api::Admin { company, login, .. } => {
                tokens
                    .user
                    .remove(&(company.to_string(), login.to_string()));
            }
        }
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, Tokens> {
        match self.tokens.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// One JSON-RPC 2.0 call.
    async fn call(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        method: &str,
        params: &serde_json::Value,
    ) -> Result<Box<RawValue>, CallError> {
        let body =
            serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
        let mut request = self
            .http
            .post(format!("{}{path}", self.base_url))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| CallError::Transport(format!("{method}: {e}")))?;
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(CallError::Transport(format!("{method}: HTTP {status}")));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CallError::Transport(format!("{method}: {e}")))?;
        if !status.is_success() {
            return Err(CallError::Rpc(format!("{method}: HTTP {status}")));
        }
        let parsed: RpcResponse = serde_json::from_slice(&bytes)
            .map_err(|e| CallError::Rpc(format!("{method}: not a JSON-RPC response: {e}")))?;
        match (parsed.result, parsed.error) {
            (_, Some(error)) => Err(CallError::Rpc(format!(
                "{method}: error {}: {}",
                error.code, error.message
            ))),
            (Some(result), None) => Ok(result),
            (None, None) => Err(CallError::Rpc(format!("{method}: empty response"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use billing_domain::Tenants;
    use billing_testkit::FakeSimplyBook;
    use serde_json::json;

    use super::*;

    const COMPANY: &str = "claire";
    const API_KEY: &str = "fake-api-key";
    const SECRET_KEY: &str = "fake-secret-key";
    const LOGIN: &str = "admin";
    const PASSWORD: &str = "fake-password";

    async fn fake() -> FakeSimplyBook {
        let fake = FakeSimplyBook::start(COMPANY, API_KEY, SECRET_KEY)
            .await
            .expect("fake simplybook");
        fake.set_admin_user(LOGIN, PASSWORD);
        fake
    }

    fn client(fake: &FakeSimplyBook, attempts: u32) -> SimplyBook {
        SimplyBook::new(
            &fake.url(),
            Duration::from_secs(5),
            attempts,
            Duration::from_millis(1),
        )
        .expect("client")
    }

    /// Tenant `claire` with the given extra settings.
    fn tenant(extra: serde_json::Value) -> TenantConfig {
        let mut config = json!({"id": "claire", "name": "Claire",
            "billing_email": "c@example.test", "currency": "AUD", "simplybook_company": COMPANY});
        for (key, value) in extra.as_object().expect("object") {
            config[key] = value.clone();
        }
        let tenants =
            Tenants::from_json(&json!({"tenants": [config]}).to_string()).expect("tenants");
        tenants.get("claire").expect("claire").clone()
    }

    fn admin_tenant(password: &str) -> TenantConfig {
        tenant(json!({"simplybook_user_login": LOGIN, "simplybook_user_password": password}))
    }

    fn details(start: &str) -> serde_json::Value {
        json!({"start_date_time": start, "end_date_time": start, "is_confirmed": "1",
            "event_name": "Massage 60", "client_name": "Test Client", "price": "10.01"})
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[tokio::test]
    async fn lists_only_the_bookings_that_start_in_the_date_range() {
        let fake = fake().await;
        fake.put_booking("100", "h100", details("2026-09-30 23:30:00"));
        fake.put_booking("101", "h101", details("2026-10-01 00:00:00"));
        fake.put_booking("102", "h102", details("2026-10-31 23:59:59"));
        fake.put_booking("103", "h103", details("2026-11-01 00:00:00"));
        fake.put_booking("104", "h104", details("2026-10-15 10:00:00"));
        fake.remove_booking("104");
        let listed = client(&fake, 3)
            .list_bookings(
                &admin_tenant(PASSWORD),
                day("2026-10-01"),
                day("2026-10-31"),
            )
            .await
            .expect("list");
        assert_eq!(
            listed,
            vec![
                ListedBooking {
                    id: "101".into(),
                    hash: "h101".into(),
                    start: "2026-10-01 00:00:00".into(),
                },
                ListedBooking {
                    id: "102".into(),
                    hash: "h102".into(),
                    start: "2026-10-31 23:59:59".into(),
                },
            ]
        );
        assert_eq!(fake.calls("getUserToken"), 1);
        assert_eq!(fake.calls("getToken"), 0);
    }

    #[tokio::test]
    async fn an_expired_user_token_is_renewed_once_and_kept_apart_from_the_api_token() {
        let fake = fake().await;
        fake.put_booking("101", "h101", details("2026-10-01 10:00:00"));
        let simplybook = client(&fake, 3);
        let tenant = tenant(json!({"simplybook_api_key": API_KEY,
            "simplybook_secret_key": SECRET_KEY, "simplybook_user_login": LOGIN,
            "simplybook_user_password": PASSWORD}));
        let (from, to) = (day("2026-10-01"), day("2026-10-31"));
        simplybook
            .list_bookings(&tenant, from, to)
            .await
            .expect("list");
        let callback = Callback::parse(
            br#"{"booking_id":"101","booking_hash":"h101","company":"claire",
                "notification_type":"create"}"#,
        )
        .expect("callback");
        simplybook
            .booking_details(&tenant, &callback)
            .await
            .expect("details");
        assert_eq!((fake.calls("getUserToken"), fake.calls("getToken")), (1, 1));

        fake.expire_tokens();
        let listed = simplybook
            .list_bookings(&tenant, from, to)
            .await
            .expect("list after expiry");
        assert_eq!(listed.len(), 1);
        assert_eq!(fake.calls("getUserToken"), 2);
        assert_eq!(fake.calls("getBookings"), 3, "refused once, then retried");
        assert_eq!(fake.calls("getToken"), 1, "the API token is not renewed");
    }

    #[tokio::test]
    async fn a_tenant_without_admin_credentials_is_refused_without_asking() {
        let fake = fake().await;
        let simplybook = client(&fake, 3);
        let tenant = tenant(json!({"simplybook_api_key": API_KEY,
            "simplybook_secret_key": SECRET_KEY}));
        let err = simplybook
            .list_bookings(&tenant, day("2026-10-01"), day("2026-10-31"))
            .await
            .expect_err("no admin user");
        assert!(
            matches!(&err, FetchError::Refused(m) if m == "tenant claire has no SimplyBook admin \
                credentials (simplybook_user_login, simplybook_user_password)"),
            "{err}"
        );
        assert_eq!(fake.calls("getUserToken"), 0);
    }

    #[tokio::test]
    async fn an_unavailable_simplybook_is_unavailable_after_the_configured_attempts() {
        let fake = fake().await;
        fake.set_unavailable(true);
        let err = client(&fake, 3)
            .list_bookings(
                &admin_tenant(PASSWORD),
                day("2026-10-01"),
                day("2026-10-31"),
            )
            .await
            .expect_err("unavailable");
        assert!(matches!(err, FetchError::Unavailable(_)), "{err}");
        assert_eq!(fake.calls("getUserToken"), 3);
    }

    #[tokio::test]
    async fn refused_credentials_are_refused_at_once_not_retried() {
        let fake = fake().await;
        let simplybook = client(&fake, 3);
        let wrong_password = admin_tenant("wrong-password");
        let listing =
            simplybook.list_bookings(&wrong_password, day("2026-10-01"), day("2026-10-31"));
        let err = tokio::time::timeout(Duration::from_secs(10), listing)
            .await
            .expect("no endless retry")
            .expect_err("wrong password");
        assert!(matches!(err, FetchError::Refused(_)), "{err}");
        assert_eq!(fake.calls("getUserToken"), 1);

        let tenant = tenant(json!({"simplybook_api_key": "wrong-key",
            "simplybook_secret_key": SECRET_KEY}));
        let callback = Callback::parse(
            br#"{"booking_id":"1","booking_hash":"h1","company":"claire",
                "notification_type":"create"}"#,
        )
        .expect("callback");
        let fetch = simplybook.booking_details(&tenant, &callback);
        let err = tokio::time::timeout(Duration::from_secs(10), fetch)
            .await
            .expect("no endless retry")
            .expect_err("wrong api key");
        assert!(matches!(err, FetchError::Refused(_)), "{err}");
        assert_eq!(fake.calls("getToken"), 1);
    }
}
