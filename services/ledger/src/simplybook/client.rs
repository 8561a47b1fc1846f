//! The client: settings, the caches shared by every tenant's work (API domains, tokens, service
//! lists), the per-tenant lookup limit, and [`Session`], one tenant's counted calls.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use billing_domain::TenantConfig;
use billing_domain::simplybook::{self, EventInfo};
use billing_runtime::limiter::RateLimiter;

use super::error::FetchError;

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
    pub(super) http: reqwest::Client,
    pub(super) settings: Settings,
    /// The scheme for a bare host from `getServiceUrl`: the login API's.
    pub(super) scheme: &'static str,
    state: Mutex<Cache>,
    lookups: RateLimiter,
}

#[derive(Default)]
pub(super) struct Cache {
    /// company → API base URL
    pub(super) domains: HashMap<String, String>,
    /// API tokens by company; user tokens by company and user login.
    pub(super) api_tokens: HashMap<String, String>,
    pub(super) user_tokens: HashMap<(String, String), String>,
    /// company → its services from `getEventList`, and when they were asked for
    pub(super) events: HashMap<String, (Instant, Arc<BTreeMap<String, EventInfo>>)>,
}

/// How long a company's service list is used before it is asked for again: prices change.
/// How long a company's service list is used before it is asked for again: prices change.
pub(super) const EVENTS_FRESH: Duration = Duration::from_secs(300);
/// A service missing from a list at least this old asks for the list again (a new service);
/// younger, it is missing (so a stream of bookings for an unlisted service does not ask for
/// the list once each).
pub(super) const EVENTS_MISS_REFRESH: Duration = Duration::from_secs(60);

/// Which of SimplyBook's APIs a call goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// The public API, with an API key's token.
    User,
    /// The Company Administration API, with an admin user's token.
    Admin,
}

impl Api {
    pub(super) fn path(self) -> &'static str {
        match self {
            Api::User => "/",
            Api::Admin => "/admin",
        }
    }

    pub(super) fn token_header(self) -> &'static str {
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

    pub(super) fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub(super) fn host_allowed(&self, url: &str) -> bool {
        let host = simplybook::host_of(url).to_ascii_lowercase();
        self.settings.api_hosts.iter().any(|allowed| {
            let allowed = allowed.trim().to_ascii_lowercase();
            !allowed.is_empty() && (host == allowed || host.ends_with(&format!(".{allowed}")))
        })
    }
}

/// One tenant's calls to SimplyBook, counted.
pub struct Session<'a> {
    pub(super) client: &'a SimplyBook,
    pub(super) tenant: &'a TenantConfig,
    pub(super) calls: AtomicU32,
}

impl Session<'_> {
    /// HTTP requests made to SimplyBook so far.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }
}
