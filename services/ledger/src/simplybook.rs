//! A JSON-RPC client for SimplyBook.me's API, used to confirm callbacks: `getToken(company,
//! api_key)` on `{base}/login`, then `getBookingDetails(id, sign)` on `{base}/` with the
//! `X-Company-Login` and `X-Token` headers. Tokens are cached per company and renewed when a call
//! is refused (expired token). Network failures, timeouts and 5xx are retried with backoff; if
//! SimplyBook stays unavailable the caller retries the event later, so nothing is lost.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use billing_domain::booking::BookingPayload;
use billing_domain::callback::Callback;
use billing_domain::{TenantConfig, simplybook};
use serde_json::value::RawValue;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// SimplyBook could not be asked (network, timeout, 5xx): try the event again later.
    #[error("simplybook unavailable: {0}")]
    Unavailable(String),
    /// SimplyBook answered and does not confirm the booking (wrong hash, unknown id, details
    /// that are not a booking): the callback must not become a booking.
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
    tokens: Mutex<HashMap<String, String>>,
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
            tokens: Mutex::new(HashMap::new()),
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
        let params = serde_json::json!([callback.booking_id, sign]);
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            attempt += 1;
            let result = match self.token(company, api_key.expose()).await {
                Ok((token, fresh)) => {
                    renewed |= fresh;
                    self.call(
                        "/",
                        &[("X-Company-Login", company), ("X-Token", &token)],
                        "getBookingDetails",
                        &params,
                    )
                    .await
                }
                Err(err) => Err(err),
            };
            match result {
                Ok(details) => {
                    return simplybook::details_to_payload(&details, &callback.booking_hash)
                        .map_err(|e| FetchError::Refused(format!("booking details: {e}")));
                }
                // A refusal with a cached token may only mean the token expired: renew once.
                Err(CallError::Rpc(_)) if !renewed => {
                    self.forget_token(company);
                }
                Err(CallError::Rpc(message)) => return Err(FetchError::Refused(message)),
                Err(CallError::Transport(message)) if attempt >= self.attempts => {
                    return Err(FetchError::Unavailable(message));
                }
                Err(CallError::Transport(message)) => {
                    metrics::counter!("ledger_simplybook_retries_total").increment(1);
                    tracing::warn!(attempt, error = %message, "simplybook call failed, retrying");
                    tokio::time::sleep(self.backoff * 2u32.saturating_pow(attempt - 1)).await;
                }
            }
        }
    }

    /// The cached token for `company`, or a new one (`true` when new).
    async fn token(&self, company: &str, api_key: &str) -> Result<(String, bool), CallError> {
        if let Some(token) = self.cached(company) {
            return Ok((token, false));
        }
        let result = self
            .call(
                "/login",
                &[],
                "getToken",
                &serde_json::json!([company, api_key]),
            )
            .await?;
        let token: String = serde_json::from_str(result.get())
            .map_err(|e| CallError::Rpc(format!("getToken returned no token: {e}")))?;
        self.lock_tokens()
            .insert(company.to_string(), token.clone());
        Ok((token, true))
    }

    fn cached(&self, company: &str) -> Option<String> {
        self.lock_tokens().get(company).cloned()
    }

    fn forget_token(&self, company: &str) {
        self.lock_tokens().remove(company);
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
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
