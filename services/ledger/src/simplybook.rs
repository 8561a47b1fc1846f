//! A JSON-RPC client for SimplyBook.me's APIs, built on SimplyBook's documented contract and its
//! own clients (`docs/contracts/simplybook.md` names the source of each fact):
//!
//! - **Domains.** Companies live on different API hosts. `getServiceUrl(company)` on the login
//!   API (`LEDGER_SIMPLYBOOK_URL`, `https://user-api.simplybook.me` by default) names the
//!   company's host (a bare host such as `user-api.simplybook.asia`); everything else goes to
//!   that host. The answer is cached per company and asked again when SimplyBook says the
//!   company does not exist there. A tenant's `simplybook_api_url` overrides it. Since the
//!   tenant's keys and passwords are sent to that host, it must be one of
//!   `LEDGER_SIMPLYBOOK_API_HOSTS`.
//! - **Tokens.** `getToken(company, api_key)` (public API, header `X-Token`) and
//!   `getUserToken(company, login, password)` (Company Administration API, `X-User-Token`), on
//!   `{host}/login`; cached, and renewed once when a call is refused (an expired token is refused
//!   as "Access denied", with no code of its own).
//! - **Errors.** `{"code", "message"}` with the code a string or a number; SimplyBook's code and
//!   message travel in every error this client returns (never a credential).
//! - **Calls.** Every HTTP request made for one piece of work is counted in a [`Session`], so a
//!   reconciliation can report what it cost.
//!
//! Network failures, timeouts and 5xx are retried with backoff; if SimplyBook stays unavailable
//! the caller tries again later, so nothing is lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use billing_domain::TenantConfig;
use billing_domain::booking::PayloadError;
use billing_domain::callback::Callback;
use billing_domain::simplybook::codes;
use billing_domain::simplybook::{
    self, BookingDetails, DetailsError, EventInfo, ListedBooking, Resolved, RpcError,
};
use billing_runtime::limiter::RateLimiter;
use chrono::NaiveDate;
use serde_json::value::RawValue;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// SimplyBook could not be asked (network, timeout, 5xx): try again later.
    #[error("simplybook unavailable: {0}")]
    Unavailable(String),
    /// SimplyBook answered no (wrong hash, unknown booking, refused credentials), or the tenant
    /// lacks the credentials for the call: the booking is not confirmed.
    #[error("{0}")]
    Refused(String),
    /// SimplyBook has no such booking ("Appointment couldn't be found").
    #[error("{0}")]
    NotFound(String),
    /// The company does not use the feature asked about ("Plugin is not activated").
    #[error("{0}")]
    FeatureOff(String),
    /// SimplyBook refuses the admin login this needs, whatever the credentials (its HIPAA
    /// feature): the work is not possible for this company.
    #[error("{0}")]
    NotPossible(String),
    /// SimplyBook's answer is not a booking we can record (malformed, or unknown value).
    #[error(transparent)]
    Details(#[from] DetailsError),
}

enum CallError {
    Transport(String),
    Rpc { method: String, error: RpcError },
    Unreadable(String),
}

impl CallError {
    fn into_fetch(self) -> FetchError {
        match self {
            CallError::Transport(m) => FetchError::Unavailable(m),
            CallError::Rpc { method, error } if error.is_internal() => {
                FetchError::Unavailable(format!("{method}: {error}"))
            }
            CallError::Rpc { method, error } if error.is_admin_login_refused() => {
                FetchError::NotPossible(format!(
                    "SimplyBook refuses the admin login for this company ({method}: {error})"
                ))
            }
            CallError::Rpc { method, error } => {
                let message = format!("{method}: {error}");
                match error.code {
                    Some(codes::BOOKING_NOT_FOUND) => FetchError::NotFound(message),
                    Some(codes::PLUGIN_NOT_ACTIVATED) => FetchError::FeatureOff(message),
                    _ => FetchError::Refused(message),
                }
            }
            CallError::Unreadable(m) => FetchError::Refused(m),
        }
    }
}

#[derive(serde::Deserialize)]
struct RpcResponse {
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<Box<RawValue>>,
}

/// Settings of the client.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The login API, where `getServiceUrl` is asked (e.g. `https://user-api.simplybook.me`).
    pub login_url: String,
    /// Hosts a company's API may be on: a host matches a name or any subdomain of it.
    pub api_hosts: Vec<String>,
    pub timeout: Duration,
    /// Each request is tried this often, waiting `backoff`, then twice that, and so on.
    pub attempts: u32,
    pub backoff: Duration,
    /// Rows asked of `getBookings` at once.
    pub page_size: u32,
    /// SimplyBook lookups a tenant's callbacks may cause per second, sustained (0: no limit),
    /// and at once.
    pub lookups_per_sec: u32,
    pub lookup_burst: u32,
}

pub struct SimplyBook {
    http: reqwest::Client,
    settings: Settings,
    /// The scheme for a bare host from `getServiceUrl`: the login API's.
    scheme: &'static str,
    state: Mutex<Cache>,
    lookups: RateLimiter,
}

#[derive(Default)]
struct Cache {
    /// company → API base URL
    domains: HashMap<String, String>,
    /// API tokens by company; user tokens by company and user login.
    api_tokens: HashMap<String, String>,
    user_tokens: HashMap<(String, String), String>,
    /// company → its services from `getEventList`, and when they were asked for
    events: HashMap<String, (Instant, Arc<BTreeMap<String, EventInfo>>)>,
}

/// How long a company's service list is used before it is asked for again: prices change.
const EVENTS_FRESH: Duration = Duration::from_secs(300);
/// A service missing from a list at least this old asks for the list again (a new service);
/// younger, it is missing (so a stream of bookings for an unlisted service does not ask for
/// the list once each).
const EVENTS_MISS_REFRESH: Duration = Duration::from_secs(60);

/// Which of SimplyBook's APIs a call goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// The public API, with an API key's token.
    User,
    /// The Company Administration API, with an admin user's token.
    Admin,
}

impl Api {
    fn path(self) -> &'static str {
        match self {
            Api::User => "/",
            Api::Admin => "/admin",
        }
    }

    fn token_header(self) -> &'static str {
        match self {
            Api::User => "X-Token",
            Api::Admin => "X-User-Token",
        }
    }
}

impl SimplyBook {
    pub fn new(settings: Settings) -> Result<Self, reqwest::Error> {
        let scheme = if settings.login_url.starts_with("http://") {
            "http"
        } else {
            "https"
        };
        Ok(SimplyBook {
            http: reqwest::Client::builder()
                .timeout(settings.timeout)
                .connect_timeout(settings.timeout)
                .build()?,
            settings: Settings {
                login_url: settings.login_url.trim_end_matches('/').to_string(),
                attempts: settings.attempts.max(1),
                page_size: settings.page_size.max(1),
                ..settings
            },
            scheme,
            state: Mutex::new(Cache::default()),
            lookups: RateLimiter::new(settings.lookups_per_sec, settings.lookup_burst),
        })
    }

    /// Whether one more SimplyBook lookup for `tenant`'s callbacks may go out now: a flood of
    /// genuine-looking callbacks (a leaked callback URL) must not make the ledger hammer
    /// SimplyBook. A refusal is `Unavailable`, so the event is delivered again later, not lost.
    pub fn admit_lookup(&self, tenant: &TenantConfig) -> Result<(), FetchError> {
        if self.lookups.allow(tenant.id.as_str()) {
            return Ok(());
        }
        metrics::counter!("ledger_simplybook_lookups_throttled_total", "tenant" => tenant.id.to_string())
            .increment(1);
        Err(FetchError::Unavailable(format!(
            "tenant {}'s SimplyBook lookups are over LEDGER_SIMPLYBOOK_LOOKUPS_PER_SEC",
            tenant.id
        )))
    }

    /// Work for one tenant, its SimplyBook calls counted.
    pub fn session<'a>(&'a self, tenant: &'a TenantConfig) -> Session<'a> {
        Session {
            client: self,
            tenant,
            calls: AtomicU32::new(0),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn host_allowed(&self, url: &str) -> bool {
        let host = simplybook::host_of(url).to_ascii_lowercase();
        self.settings.api_hosts.iter().any(|allowed| {
            let allowed = allowed.trim().to_ascii_lowercase();
            !allowed.is_empty() && (host == allowed || host.ends_with(&format!(".{allowed}")))
        })
    }
}

/// One tenant's calls to SimplyBook, counted.
pub struct Session<'a> {
    client: &'a SimplyBook,
    tenant: &'a TenantConfig,
    calls: AtomicU32,
}

/// The tenant's credentials for one API.
enum Credentials<'a> {
    User { api_key: &'a str },
    Admin { login: &'a str, password: &'a str },
}

impl Session<'_> {
    /// HTTP requests made to SimplyBook so far.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The booking a callback names, as SimplyBook has it now, confirmed by the callback's hash
    /// (`getBookingDetails(id, sign)` on the public API).
    pub async fn confirm(&self, callback: &Callback) -> Result<Resolved, FetchError> {
        let Some(secret_key) = self.tenant.simplybook_secret_key.as_ref() else {
            return Err(FetchError::Refused(format!(
                "tenant {} has no SimplyBook API credentials",
                self.tenant.id
            )));
        };
        let sign = simplybook::booking_sign(
            &callback.booking_id,
            &callback.booking_hash,
            secret_key.expose(),
        );
        let raw = self
            .rpc(
                Api::User,
                "getBookingDetails",
                &serde_json::json!([callback.booking_id, sign]),
            )
            .await?;
        self.resolve(Api::User, &raw, Some(&callback.booking_hash))
            .await
    }

    /// A booking as SimplyBook has it now, through the Company Administration API
    /// (`getBookingDetails(id)`, which needs no hash): what reconciliation repairs with.
    pub async fn admin_details(&self, booking_id: &str) -> Result<Resolved, FetchError> {
        let raw = self
            .rpc(
                Api::Admin,
                "getBookingDetails",
                &serde_json::json!([booking_id]),
            )
            .await?;
        self.resolve(Api::Admin, &raw, None).await
    }

    async fn resolve(
        &self,
        api: Api,
        raw: &RawValue,
        hash: Option<&str>,
    ) -> Result<Resolved, FetchError> {
        let details = BookingDetails::parse(raw).map_err(DetailsError::from)?;
        // The service's price is needed only when the details carry none.
        let event = match (&details.price, &details.event_id) {
            (None, Some(id)) => self.event(api, id).await?,
            _ => None,
        };
        Ok(simplybook::resolve(
            &details,
            hash,
            event.as_ref(),
            &self.tenant.simplybook_status_labels,
        )?)
    }

    /// The company's service `event_id`, from the cached `getEventList`, asked again when the
    /// service is not in it (a service added since).
    pub async fn event(&self, api: Api, event_id: &str) -> Result<Option<EventInfo>, FetchError> {
        let company = self.company()?;
        let cached = self.client.cache().events.get(company).cloned();
        if let Some((at, events)) = cached {
            let age = at.elapsed();
            match events.get(event_id) {
                Some(found) if age < EVENTS_FRESH => return Ok(Some(found.clone())),
                None if age < EVENTS_MISS_REFRESH => return Ok(None),
                _ => {}
            }
        }
        let events = self.events(api).await?;
        Ok(events.get(event_id).cloned())
    }

    /// The company's services, asked of SimplyBook now (and cached).
    pub async fn events(&self, api: Api) -> Result<Arc<BTreeMap<String, EventInfo>>, FetchError> {
        let raw = self
            .rpc(api, "getEventList", &serde_json::json!([]))
            .await?;
        let events = Arc::new(
            simplybook::parse_event_list(&raw)
                .map_err(|e| FetchError::Details(DetailsError::Payload(e)))?,
        );
        self.client.cache().events.insert(
            self.company()?.to_string(),
            (Instant::now(), events.clone()),
        );
        Ok(events)
    }

    /// The company's bookings that start from `from` to `to` (inclusive, the company's local
    /// dates), whatever their state, as the Company Administration API lists them now.
    ///
    /// `getBookings` has no page cursor, only `limit`, so the month is paged by date: rows are
    /// asked for in ascending start order (`order: date_start_asc`, as documented); a full page
    /// means there may be more, and the next request starts on the last day the page reached
    /// (that day's rows are asked again and merged by id). A full page that is not in
    /// ascending order, or a single day with a full page of bookings, cannot be paged safely
    /// and is refused with a message saying so, rather than reporting a partial month.
    pub async fn list_bookings(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<ListedBooking>, FetchError> {
        let page = self.client.settings.page_size;
        let mut listed: BTreeMap<String, ListedBooking> = BTreeMap::new();
        let mut day = from;
        loop {
            let filter = serde_json::json!({
                "date_from": day.format("%Y-%m-%d").to_string(),
                "date_to": to.format("%Y-%m-%d").to_string(),
                "booking_type": "all",
                "order": "date_start_asc",
                "limit": page,
            });
            let raw = self
                .rpc(Api::Admin, "getBookings", &serde_json::json!([filter]))
                .await?;
            let rows = simplybook::parse_booking_list(&raw)?;
            let full = rows.len() >= page as usize;
            if full && !rows.windows(2).all(|w| w[0].start <= w[1].start) {
                return Err(FetchError::Refused(format!(
                    "getBookings returned a full page of {page} not in ascending start order, \
                     so the rest of the month cannot be asked for safely"
                )));
            }
            let last_day = rows
                .iter()
                .filter_map(|r| NaiveDate::parse_from_str(r.start.get(..10)?, "%Y-%m-%d").ok())
                .max();
            let before = listed.len();
            for row in rows {
                listed.insert(row.id.clone(), row);
            }
            // Done when a page brings nothing new. A short page is not taken as the end: the
            // API documents no `limit`, so a smaller cap of SimplyBook's own would look the same;
            // asking again from the last day reached costs one call and proves it.
            let Some(last_day) = last_day else { break };
            if listed.len() == before {
                break;
            }
            if last_day <= day && full {
                return Err(FetchError::Refused(format!(
                    "more than {page} bookings start on {day}: raise \
                     LEDGER_SIMPLYBOOK_PAGE_SIZE to list them"
                )));
            }
            day = last_day.max(day);
        }
        Ok(listed.into_values().collect())
    }

    /// The company's Status-feature labels by id (admin `getStatuses`); none when the company
    /// does not use the feature (SimplyBook answers "Plugin is not activated").
    pub async fn statuses(&self) -> Result<BTreeMap<String, simplybook::StatusLabel>, FetchError> {
        match self
            .rpc(Api::Admin, "getStatuses", &serde_json::json!([]))
            .await
        {
            Ok(raw) => Ok(simplybook::parse_statuses(&raw)?),
            Err(FetchError::FeatureOff(_)) => Ok(BTreeMap::new()),
            Err(e) => Err(e),
        }
    }

    /// The company's time zone as SimplyBook reports it (`getCompanyInfo().timezone`).
    pub async fn company_time_zone(&self) -> Result<Option<String>, FetchError> {
        let raw = self
            .rpc(Api::Admin, "getCompanyInfo", &serde_json::json!([]))
            .await?;
        simplybook::company_time_zone(&raw)
            .map_err(|e| FetchError::Details(DetailsError::Payload(e)))
    }

    /// `method` with raw answers, for the go-live check: the `result`, or SimplyBook's `error`
    /// object as text.
    pub async fn raw(
        &self,
        api: Api,
        method: &str,
        params: &serde_json::Value,
    ) -> Result<Box<RawValue>, FetchError> {
        self.rpc(api, method, params).await
    }

    /// The company's API base URL (asked of `getServiceUrl` when not known).
    pub async fn api_url(&self) -> Result<String, FetchError> {
        self.base(false).await
    }

    fn company(&self) -> Result<&str, FetchError> {
        self.tenant.simplybook_company.as_deref().ok_or_else(|| {
            FetchError::Refused(format!(
                "tenant {} has no SimplyBook company login",
                self.tenant.id
            ))
        })
    }

    fn credentials(&self, api: Api) -> Result<Credentials<'_>, FetchError> {
        match api {
            Api::User => self
                .tenant
                .simplybook_api_key
                .as_ref()
                .map(|k| Credentials::User {
                    api_key: k.expose(),
                })
                .ok_or_else(|| {
                    FetchError::Refused(format!(
                        "tenant {} has no SimplyBook API credentials",
                        self.tenant.id
                    ))
                }),
            Api::Admin => match (
                self.tenant.simplybook_user_login.as_deref(),
                self.tenant.simplybook_user_password.as_ref(),
            ) {
                (Some(login), Some(password)) => Ok(Credentials::Admin {
                    login,
                    password: password.expose(),
                }),
                _ => Err(FetchError::Refused(format!(
                    "tenant {} has no SimplyBook admin credentials \
                     (simplybook_user_login, simplybook_user_password)",
                    self.tenant.id
                ))),
            },
        }
    }

    /// The company's API base URL: the tenant's override, the cached answer, or
    /// `getServiceUrl` asked now (`fresh` forgets the cached one).
    async fn base(&self, fresh: bool) -> Result<String, FetchError> {
        if let Some(url) = &self.tenant.simplybook_api_url {
            let url = url.trim_end_matches('/').to_string();
            if !self.client.host_allowed(&url) {
                return Err(FetchError::Refused(format!(
                    "the tenant's simplybook_api_url {url} is not among \
                     LEDGER_SIMPLYBOOK_API_HOSTS; add its domain there"
                )));
            }
            return Ok(url);
        }
        let company = self.company()?;
        if !fresh && let Some(url) = self.client.cache().domains.get(company) {
            return Ok(url.clone());
        }
        let login = format!("{}/login", self.client.settings.login_url);
        let raw = self
            .call_with_retries(&login, &[], "getServiceUrl", &serde_json::json!([company]))
            .await
            .map_err(CallError::into_fetch)?;
        let answer: String = serde_json::from_str(raw.get()).map_err(|_| {
            FetchError::Refused(format!(
                "getServiceUrl answered {} (not a string)",
                raw.get()
            ))
        })?;
        let url = simplybook::service_url(&answer, self.client.scheme)
            .map_err(|e| FetchError::Refused(format!("getServiceUrl: {e}")))?;
        if !self.client.host_allowed(&url) {
            return Err(FetchError::Refused(format!(
                "SimplyBook placed company {company} on {url}, which is not among \
                 LEDGER_SIMPLYBOOK_API_HOSTS; add its domain there or set the tenant's \
                 simplybook_api_url"
            )));
        }
        let mut cache = self.client.cache();
        if cache
            .domains
            .insert(company.to_string(), url.clone())
            .as_ref()
            != Some(&url)
        {
            tracing::info!(tenant = %self.tenant.id, api = %url, "simplybook api domain resolved");
        }
        Ok(url)
    }

    /// `method` on `api` with a cached or new token. A refusal with a cached token (which may
    /// only have expired) is tried once more with a new one; "company does not exist" asks
    /// `getServiceUrl` again, once.
    async fn rpc(
        &self,
        api: Api,
        method: &str,
        params: &serde_json::Value,
    ) -> Result<Box<RawValue>, FetchError> {
        let company = self.company()?.to_string();
        // Nothing is asked of SimplyBook for a tenant that could not log in anyway.
        self.credentials(api)?;
        let mut renewed = false;
        let mut relocated = false;
        let mut ask_domain = false;
        loop {
            let base = self.base(std::mem::take(&mut ask_domain)).await?;
            let (token, fresh) = match self.token(api, &base).await {
                Ok(token) => token,
                Err(CallError::Rpc { error, .. }) if error.is_unknown_company() && !relocated => {
                    (relocated, ask_domain) = (true, true);
                    continue;
                }
                Err(err) => return Err(err.into_fetch()),
            };
            renewed |= fresh;
            let url = format!("{base}{}", api.path());
            let headers = [
                ("X-Company-Login", company.as_str()),
                (api.token_header(), &token),
            ];
            match self.call_with_retries(&url, &headers, method, params).await {
                Ok(result) => return Ok(result),
                Err(CallError::Rpc { error, .. }) if error.is_unknown_company() && !relocated => {
                    (relocated, ask_domain) = (true, true);
                    self.forget_token(api);
                }
                Err(CallError::Rpc { error, .. }) if error.is_access_denied() && !renewed => {
                    renewed = true;
                    self.forget_token(api);
                }
                Err(err) => return Err(err.into_fetch()),
            }
        }
    }

    /// The cached token for `api`, or a new one (`true` when new).
    async fn token(&self, api: Api, base: &str) -> Result<(String, bool), CallError> {
        let company = self
            .company()
            .map_err(|e| CallError::Unreadable(e.to_string()))?;
        let credentials = self
            .credentials(api)
            .map_err(|e| CallError::Unreadable(e.to_string()))?;
        if let Some(token) = self.cached(api) {
            return Ok((token, false));
        }
        let (method, params) = match credentials {
            Credentials::User { api_key } => ("getToken", serde_json::json!([company, api_key])),
            Credentials::Admin { login, password } => (
                "getUserToken",
                serde_json::json!([company, login, password]),
            ),
        };
        let login = format!("{base}/login");
        let result = self.call_with_retries(&login, &[], method, &params).await?;
        let token: String = serde_json::from_str(result.get())
            .ok()
            .filter(|t: &String| !t.is_empty())
            .ok_or_else(|| CallError::Unreadable(format!("{method} returned no token")))?;
        let mut cache = self.client.cache();
        match api {
            Api::User => {
                cache.api_tokens.insert(company.to_string(), token.clone());
            }
            Api::Admin => {
                let login = self
                    .tenant
                    .simplybook_user_login
                    .clone()
                    .unwrap_or_default();
                cache
                    .user_tokens
                    .insert((company.to_string(), login), token.clone());
            }
        }
        Ok((token, true))
    }

    fn cached(&self, api: Api) -> Option<String> {
        let company = self.tenant.simplybook_company.clone()?;
        let cache = self.client.cache();
        match api {
            Api::User => cache.api_tokens.get(&company).cloned(),
            Api::Admin => {
                let login = self.tenant.simplybook_user_login.clone()?;
                cache.user_tokens.get(&(company, login)).cloned()
            }
        }
    }

    fn forget_token(&self, api: Api) {
        let Some(company) = self.tenant.simplybook_company.clone() else {
            return;
        };
        let mut cache = self.client.cache();
        match api {
            Api::User => {
                cache.api_tokens.remove(&company);
            }
            Api::Admin => {
                let login = self
                    .tenant
                    .simplybook_user_login
                    .clone()
                    .unwrap_or_default();
                cache.user_tokens.remove(&(company, login));
            }
        }
    }

    /// One JSON-RPC call, retried with backoff while SimplyBook cannot be reached.
    async fn call_with_retries(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        method: &str,
        params: &serde_json::Value,
    ) -> Result<Box<RawValue>, CallError> {
        let settings = &self.client.settings;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.call(url, headers, method, params).await {
                Err(CallError::Transport(message)) if attempt < settings.attempts => {
                    metrics::counter!("ledger_simplybook_retries_total").increment(1);
                    tracing::warn!(method, attempt, error = %message, "simplybook call failed, retrying");
                    tokio::time::sleep(settings.backoff * 2u32.saturating_pow(attempt - 1)).await;
                }
                other => return other,
            }
        }
    }

    /// One JSON-RPC 2.0 call.
    async fn call(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        method: &str,
        params: &serde_json::Value,
    ) -> Result<Box<RawValue>, CallError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("ledger_simplybook_calls_total", "method" => simplybook_method(method))
            .increment(1);
        let body =
            serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
        let mut request = self
            .client
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        // reqwest's errors name the URL, never the body or headers that hold credentials.
        let response = request
            .send()
            .await
            .map_err(|e| CallError::Transport(format!("{method}: {e}")))?;
        let status = response.status();
        if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
        {
            return Err(CallError::Transport(format!("{method}: HTTP {status}")));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CallError::Transport(format!("{method}: {e}")))?;
        if !status.is_success() {
            return Err(CallError::Unreadable(format!("{method}: HTTP {status}")));
        }
        let parsed: RpcResponse = serde_json::from_slice(&bytes).map_err(|e| {
            CallError::Unreadable(format!("{method}: not a JSON-RPC response: {e}"))
        })?;
        match (parsed.result, parsed.error) {
            (_, Some(error)) if error.get().trim() != "null" => Err(CallError::Rpc {
                method: method.to_string(),
                error: RpcError::parse(&error),
            }),
            (Some(result), _) => Ok(result),
            (None, _) => Err(CallError::Unreadable(format!("{method}: empty response"))),
        }
    }
}

/// The method as a metric label: only SimplyBook methods this client calls.
fn simplybook_method(method: &str) -> &'static str {
    const KNOWN: [&str; 8] = [
        "getServiceUrl",
        "getToken",
        "getUserToken",
        "getBookingDetails",
        "getEventList",
        "getBookings",
        "getCompanyInfo",
        "getStatuses",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("other")
}

impl From<PayloadError> for FetchError {
    fn from(e: PayloadError) -> Self {
        FetchError::Details(DetailsError::Payload(e))
    }
}

#[cfg(test)]
mod tests {
    use billing_domain::Tenants;
    use billing_testkit::{Details, FakeSimplyBook};
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

    /// Settings for a client of the fake at `login_url`, without a lookup limit.
    fn settings(login_url: String, attempts: u32, page_size: u32) -> Settings {
        Settings {
            login_url,
            api_hosts: vec!["127.0.0.1".into()],
            timeout: Duration::from_secs(5),
            attempts,
            backoff: Duration::from_millis(1),
            page_size,
            lookups_per_sec: 0,
            lookup_burst: 1,
        }
    }

    fn client(fake: &FakeSimplyBook, attempts: u32, page_size: u32) -> SimplyBook {
        SimplyBook::new(settings(fake.url(), attempts, page_size)).expect("client")
    }

    /// Tenant `claire` with every credential, then `extra` on top.
    fn tenant(extra: serde_json::Value) -> TenantConfig {
        let mut config = json!({"id": "claire", "name": "Claire",
            "billing_email": "c@example.test", "currency": "AUD", "simplybook_company": COMPANY,
            "simplybook_api_key": API_KEY, "simplybook_secret_key": SECRET_KEY,
            "simplybook_user_login": LOGIN, "simplybook_user_password": PASSWORD});
        for (key, value) in extra.as_object().expect("object") {
            config[key] = value.clone();
        }
        let tenants =
            Tenants::from_json(&json!({"tenants": [config]}).to_string()).expect("tenants");
        tenants.get("claire").expect("claire").clone()
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn callback(id: &str, hash: &str) -> Callback {
        Callback::parse(
            json!({"booking_id": id, "booking_hash": hash, "company": COMPANY,
                "notification_type": "create"})
            .to_string()
            .as_bytes(),
        )
        .expect("callback")
    }

    #[tokio::test]
    async fn a_month_is_paged_by_day_until_a_page_brings_nothing_new() {
        let fake = fake().await;
        for (n, start) in [
            "2026-10-01 09:00:00",
            "2026-10-01 10:00:00",
            "2026-10-02 09:00:00",
            "2026-10-03 09:00:00",
            "2026-10-31 23:59:59",
            "2026-11-01 00:00:00",
        ]
        .iter()
        .enumerate()
        {
            let details = Details::fixture("confirmed_plain").with("start_date_time", *start);
            fake.put_booking(&format!("{}", 100 + n), "h", details);
        }
        let simplybook = client(&fake, 3, 3);
        let tenant = tenant(json!({}));
        let session = simplybook.session(&tenant);
        let listed = session
            .list_bookings(day("2026-10-01"), day("2026-10-31"))
            .await
            .expect("list");
        let ids: Vec<&str> = listed.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["100", "101", "102", "103", "104"]);
        // Pages of three: from 10-01 (100, 101, 102), from 10-02 (102, 103, 104), from 10-31
        // (104 again: nothing new, so the month is complete).
        assert_eq!(fake.calls("getBookings"), 3);
        assert_eq!(fake.calls("getServiceUrl"), 1, "the domain is asked once");

        // A day with more bookings than a page cannot be listed, and says so.
        let err = client(&fake, 3, 1)
            .session(&tenant)
            .list_bookings(day("2026-10-01"), day("2026-10-31"))
            .await
            .expect_err("two bookings on 10-01, pages of one");
        assert!(
            err.to_string()
                .contains("more than 1 bookings start on 2026-10-01"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_expired_token_is_renewed_once_but_other_refusals_keep_it() {
        let fake = fake().await;
        fake.put_booking("101", "h101", Details::fixture("confirmed_plain"));
        let simplybook = client(&fake, 3, 500);
        let tenant = tenant(json!({}));
        let session = simplybook.session(&tenant);
        session
            .confirm(&callback("101", "h101"))
            .await
            .expect("details");
        assert_eq!(fake.calls("getToken"), 1);

        // A wrong hash is SimplyBook's "Signature error", not an expired token: no new login.
        let err = session
            .confirm(&callback("101", "forged"))
            .await
            .expect_err("forged");
        assert!(
            err.to_string().contains("error -32085: Signature error"),
            "{err}"
        );
        assert_eq!(fake.calls("getToken"), 1, "no login for a refused booking");

        // "Access denied" is how an expired token is refused: one new login, then the answer.
        fake.expire_tokens();
        session
            .confirm(&callback("101", "h101"))
            .await
            .expect("after expiry");
        assert_eq!(fake.calls("getToken"), 2);
        assert_eq!(
            fake.calls("getUserToken"),
            0,
            "the admin token is a separate one"
        );
    }

    #[tokio::test]
    async fn a_company_that_moved_is_found_again_through_get_service_url() {
        let login = fake().await;
        let elsewhere = FakeSimplyBook::start(COMPANY, API_KEY, SECRET_KEY)
            .await
            .expect("second domain");
        elsewhere.put_booking("101", "h101", Details::fixture("confirmed_plain"));
        login.put_booking("101", "h101", Details::fixture("confirmed_plain"));
        let simplybook = client(&login, 3, 500);
        let tenant = tenant(json!({}));
        let session = simplybook.session(&tenant);
        session
            .confirm(&callback("101", "h101"))
            .await
            .expect("first domain");
        assert_eq!(login.calls("getBookingDetails"), 1);

        // SimplyBook moves the company: the old domain no longer knows it.
        login.set_moved(true);
        login.add_company_host(COMPANY, &elsewhere.host());
        let resolved = session
            .confirm(&callback("101", "h101"))
            .await
            .expect("moved");
        assert_eq!(resolved.payload.booking_id, "101");
        assert_eq!(login.calls("getServiceUrl"), 2, "asked again once");
        assert_eq!(elsewhere.calls("getBookingDetails"), 1);
    }

    #[test]
    fn a_tenants_lookups_are_limited_and_the_refusal_is_a_retry() {
        let simplybook = SimplyBook::new(Settings {
            lookups_per_sec: 1,
            lookup_burst: 3,
            ..settings("http://127.0.0.1:9".into(), 1, 500)
        })
        .expect("client");
        let claire = tenant(json!({}));
        for _ in 0..3 {
            simplybook.admit_lookup(&claire).expect("within the burst");
        }
        let err = simplybook
            .admit_lookup(&claire)
            .expect_err("over the limit");
        assert!(matches!(err, FetchError::Unavailable(_)), "{err}");
    }

    #[tokio::test]
    async fn credentials_and_hosts_are_checked_before_anything_is_sent() {
        let fake = fake().await;
        let simplybook = client(&fake, 3, 500);
        let no_admin = tenant(json!({"simplybook_user_login": null,
            "simplybook_user_password": null}));
        let err = simplybook
            .session(&no_admin)
            .list_bookings(day("2026-10-01"), day("2026-10-31"))
            .await
            .expect_err("no admin user");
        assert!(
            err.to_string()
                .contains("has no SimplyBook admin credentials"),
            "{err}"
        );
        assert_eq!(
            fake.total_calls(),
            0,
            "nothing asked for a tenant that cannot log in"
        );

        // A domain not among the allowed hosts never receives the tenant's keys.
        let elsewhere = tenant(json!({"simplybook_api_url": "https://user-api.example.test"}));
        let err = simplybook
            .session(&elsewhere)
            .confirm(&callback("1", "h1"))
            .await
            .expect_err("host not allowed");
        assert!(
            err.to_string().contains("LEDGER_SIMPLYBOOK_API_HOSTS"),
            "{err}"
        );
        assert_eq!(fake.total_calls(), 0);
    }

    #[tokio::test]
    async fn refusals_are_not_retried_and_outages_are_retried_then_unavailable() {
        let fake = fake().await;
        let wrong = tenant(json!({"simplybook_user_password": "wrong-password"}));
        let simplybook = client(&fake, 3, 500);
        let err = simplybook
            .session(&wrong)
            .list_bookings(day("2026-10-01"), day("2026-10-31"))
            .await
            .expect_err("wrong password");
        assert!(matches!(err, FetchError::Refused(_)), "{err}");
        assert!(err.to_string().contains("-33003"), "{err}");
        assert_eq!(fake.calls("getUserToken"), 1);

        fake.set_hipaa(true);
        let err = client(&fake, 3, 500)
            .session(&tenant(json!({})))
            .list_bookings(day("2026-10-01"), day("2026-10-31"))
            .await
            .expect_err("hipaa");
        assert!(matches!(err, FetchError::NotPossible(_)), "{err}");

        fake.set_hipaa(false);
        fake.set_unavailable(true);
        let before = fake.calls("getServiceUrl");
        let err = client(&fake, 3, 500)
            .session(&tenant(json!({})))
            .list_bookings(day("2026-10-01"), day("2026-10-31"))
            .await
            .expect_err("unavailable");
        assert!(matches!(err, FetchError::Unavailable(_)), "{err}");
        assert_eq!(
            fake.calls("getServiceUrl") - before,
            3,
            "tried the configured times"
        );
    }
}
