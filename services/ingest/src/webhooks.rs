//! Webhook endpoints: authenticate, publish the raw body to JetStream, answer after the ack.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::HeaderMap;
use async_nats::jetstream;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap as HttpHeaders, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use billing_domain::Tenants;
use billing_domain::standard_webhooks::{self, SignedHeaders, SigningKey};
use billing_runtime::Subjects;
use billing_runtime::nats::{HDR_AUTH, HDR_EVENT_ID, HDR_RECEIVED_AT, HDR_SOURCE, HDR_TENANT};
use sha2::{Digest, Sha256};

pub struct AppState {
    /// Signing keys by tenant id, decoded once at start-up.
    keys: HashMap<String, Vec<SigningKey>>,
    js: jetstream::Context,
    subjects: Subjects,
}

impl AppState {
    pub fn new(tenants: &Tenants, js: jetstream::Context, subjects: Subjects) -> Self {
        let keys = tenants
            .iter()
            .map(|t| (t.id.to_string(), t.signing_keys()))
            .collect();
        AppState { keys, js, subjects }
    }
}

pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route(
            "/api/v1/webhooks/simplybook/{tenant}",
            post(simplybook_signed),
        )
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// A signed SimplyBook booking payload (Standard Webhooks).
async fn simplybook_signed(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HttpHeaders,
    body: Bytes,
) -> Response {
    const SOURCE: &str = "simplybook";
    let received_at = chrono::Utc::now();
    let Some(keys) = state.keys.get(&tenant) else {
        return reject(SOURCE, &tenant, "unknown_tenant", &body);
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let signed = SignedHeaders {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
    };
    if let Err(err) = standard_webhooks::verify(signed, &body, keys, received_at.timestamp()) {
        return reject(SOURCE, &tenant, err.reason(), &body);
    }

    let event_id = format!("{SOURCE}:{tenant}:{}", signed.id);
    let mut nats_headers = HeaderMap::new();
    nats_headers.insert(async_nats::header::NATS_MESSAGE_ID, event_id.as_str());
    nats_headers.insert(HDR_EVENT_ID, event_id.as_str());
    nats_headers.insert(HDR_SOURCE, SOURCE);
    nats_headers.insert(HDR_TENANT, tenant.as_str());
    nats_headers.insert(HDR_AUTH, "standard-webhooks");
    nats_headers.insert(
        HDR_RECEIVED_AT,
        received_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .as_str(),
    );
    publish(
        &state,
        state.subjects.simplybook(&tenant),
        nats_headers,
        body,
        SOURCE,
        &event_id,
    )
    .await
}

/// Publishes and waits for JetStream's ack; only then is the sender told the event is safe.
async fn publish(
    state: &AppState,
    subject: String,
    headers: HeaderMap,
    body: Bytes,
    source: &'static str,
    event_id: &str,
) -> Response {
    let acked = match state.js.publish_with_headers(subject, headers, body).await {
        Ok(ack) => ack.await,
        Err(err) => Err(err),
    };
    match acked {
        Ok(ack) if ack.duplicate => {
            metrics::counter!("ingest_webhooks_duplicate_total", "source" => source).increment(1);
            tracing::info!(source, event_id, "duplicate webhook acknowledged");
            json(StatusCode::OK, r#"{"status":"duplicate"}"#)
        }
        Ok(ack) => {
            metrics::counter!("ingest_webhooks_accepted_total", "source" => source).increment(1);
            tracing::debug!(source, event_id, seq = ack.sequence, "webhook published");
            json(StatusCode::ACCEPTED, r#"{"status":"accepted"}"#)
        }
        Err(err) => {
            metrics::counter!("ingest_webhooks_unavailable_total", "source" => source).increment(1);
            tracing::error!(source, event_id, error = %err, "jetstream publish failed");
            let mut response = json(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"temporarily unavailable, retry later"}"#,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            response
        }
    }
}

/// Counts and logs a rejected request (never its body or the secret), answering 401.
fn reject(source: &'static str, tenant: &str, reason: &'static str, body: &[u8]) -> Response {
    metrics::counter!("ingest_webhooks_rejected_total", "source" => source, "reason" => reason)
        .increment(1);
    tracing::warn!(
        source,
        tenant,
        reason,
        body_sha256 = %hex::encode(Sha256::digest(body)),
        "webhook rejected"
    );
    json(StatusCode::UNAUTHORIZED, r#"{"error":"unauthorized"}"#)
}

fn json(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
