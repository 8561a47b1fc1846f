//! JSON-RPC 2.0 over HTTP: one call, and the retries with backoff while SimplyBook cannot be
//! reached (network, timeout, 5xx, 408, 429). Every request is counted on its [`Session`].

use std::sync::atomic::Ordering;

use billing_domain::simplybook::RpcError;
use serde_json::value::RawValue;

use super::client::Session;
use super::error::CallError;

#[derive(serde::Deserialize)]
struct RpcResponse {
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<Box<RawValue>>,
}

impl Session<'_> {
    /// One JSON-RPC call, retried with backoff while SimplyBook cannot be reached.
    pub(super) async fn call_with_retries(
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
