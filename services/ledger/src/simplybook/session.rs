//! Signing in for one tenant: the company's API domain (`getServiceUrl`, cached, asked again when
//! the company moved), the tenant's credentials for each API, and tokens (cached, renewed once
//! when refused). Every call to SimplyBook's APIs goes through [`Session::rpc`].

use billing_domain::simplybook;
use serde_json::value::RawValue;

use super::client::{Api, Session};
use super::error::{CallError, FetchError};

/// The tenant's credentials for one API.
enum Credentials<'a> {
    User { api_key: &'a str },
    Admin { login: &'a str, password: &'a str },
}

impl Session<'_> {
    /// The company's API base URL (asked of `getServiceUrl` when not known).
    pub async fn api_url(&self) -> Result<String, FetchError> {
        self.base(false).await
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

    pub(super) fn company(&self) -> Result<&str, FetchError> {
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
    pub(super) async fn rpc(
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
}
