//! Webhook endpoints: authenticate, check the shape, publish the raw body to JetStream, answer
//! after the ack.
//!
//! Status codes: 202 accepted (stored in JetStream), 200 duplicate (already stored), 401 bad
//! signature or unknown tenant (no detail), 400 authenticated but malformed, 413 too large,
//! 429 over the sender's rate limit, 503 JetStream did not acknowledge in time (with `Retry-After`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap as HttpHeaders, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use billing_domain::booking::PayloadError;
use billing_domain::callback::Callback;
use billing_domain::standard_webhooks::{self, SignedHeaders, SigningKey};
use billing_domain::{BookingPayload, Secret, TenantConfig, TenantId, Tenants, stripe_signature};
use billing_runtime::nats::{
    AUTH_CALLBACK_TOKEN, AUTH_STANDARD_WEBHOOKS, AUTH_STRIPE_SIGNATURE, HDR_AUTH, HDR_EVENT_ID,
    HDR_EVENT_TYPE, HDR_RECEIVED_AT, HDR_SENT_AT, HDR_SOURCE, HDR_TENANT, Liveness,
    connections_lost,
};
use billing_runtime::{Subjects, trace};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tower_http::timeout::TimeoutLayer;

use crate::audit::{Rejection, RejectionAudit};
use billing_runtime::limiter::RateLimiter;
use billing_runtime::tenants::LiveTenants;

/// A tenant's settings with its signing keys decoded once, when the tenants file is (re)loaded.
struct TenantAuth {
    config: TenantConfig,
    keys: Vec<SigningKey>,
    /// The tenant's rate-limit bucket (`simplybook:<tenant>`), named once rather than per request.
    limit_key: String,
}

pub struct AppState {
    /// The tenants files as last read; `tenants` is derived from them.
    live: LiveTenants,
    tenants: RwLock<Arc<HashMap<String, Arc<TenantAuth>>>>,
    stripe_secrets: Vec<Secret<String>>,
    limiter: RateLimiter,
    audit: RejectionAudit,
    publishing: Publishing,
}

/// Where and how webhooks are published.
pub struct Publishing {
    pub js: jetstream::Context,
    pub subjects: Subjects,
    /// How long a publish JetStream could not take is tried again (INGEST_PUBLISH_RETRY_MS).
    pub retry: Duration,
    /// Told when an ack did not come in time, so a silent server's connection is given up.
    pub liveness: Liveness,
}

/// Counts a webhook that was refused or could not be stored, per source, as
/// `ingest_webhooks_failed_total{source}`: with `ingest_webhooks_accepted_total` it drives the
/// "webhooks failing" alert across every replica. Rate-limited requests are not failures.
fn count_failure(source: &'static str) {
    metrics::counter!("ingest_webhooks_failed_total", "source" => source).increment(1);
}

impl AppState {
    pub fn new(
        live: LiveTenants,
        stripe_secrets: Vec<Secret<String>>,
        limiter: RateLimiter,
        audit: RejectionAudit,
        publishing: Publishing,
    ) -> Self {
        // Every series an alert reads exists from the start, at 0: a counter that first
        // appears at 1 looks like no increase to Prometheus.
        for source in ["simplybook", "stripe"] {
            metrics::counter!("ingest_webhooks_accepted_total", "source" => source).increment(0);
            metrics::counter!("ingest_webhooks_failed_total", "source" => source).increment(0);
        }
        let tenants = RwLock::new(Arc::new(tenant_auth(&live.current())));
        AppState {
            live,
            tenants,
            stripe_secrets,
            limiter,
            audit,
            publishing,
        }
    }

    /// Replaces every tenant's settings and secrets at once (a rotation needs no restart).
    pub fn set_tenants(&self, tenants: &Tenants) {
        let auth = Arc::new(tenant_auth(tenants));
        match self.tenants.write() {
            Ok(mut guard) => *guard = auth,
            Err(poisoned) => *poisoned.into_inner() = auth,
        }
    }

    /// Puts the tenants the files hold now in force.
    pub fn apply_tenants(&self) {
        self.set_tenants(&self.live.current());
    }

    /// The tenant's settings. A tenant not known is looked for again in the files (at most once
    /// a second, whoever asks), so a tenant onboarded a moment ago is accepted at once.
    fn tenant(&self, tenant: &str) -> Option<Arc<TenantAuth>> {
        let known = || {
            let tenants = match self.tenants.read() {
                Ok(guard) => guard.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            };
            tenants.get(tenant).cloned()
        };
        known().or_else(|| {
            // Only a name a tenant could have is looked for: made-up paths never take the
            // once-a-second look from a tenant onboarded a moment ago.
            if tenant.parse::<TenantId>().is_err() || !self.live.refresh() {
                return None;
            }
            self.apply_tenants();
            known()
        })
    }

    /// Counts, logs and audits a request that failed authentication (never its body or a
    /// secret) and answers 401 without saying why.
    fn reject(
        &self,
        source: &'static str,
        tenant: &str,
        reason: &'static str,
        body: &[u8],
    ) -> Response {
        self.record_rejection(source, tenant, reason, StatusCode::UNAUTHORIZED, body);
        json(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"unauthorized"}"#.into(),
        )
    }

    /// An authenticated request whose body is not what the source sends: 400 with the reason,
    /// so the sender can fix it.
    fn malformed(
        &self,
        source: &'static str,
        tenant: &str,
        message: &str,
        body: &[u8],
    ) -> Response {
        self.record_rejection(source, tenant, "malformed", StatusCode::BAD_REQUEST, body);
        json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "error": format!("malformed payload: {message}") }).to_string(),
        )
    }

    fn record_rejection(
        &self,
        source: &'static str,
        tenant: &str,
        reason: &'static str,
        status: StatusCode,
        body: &[u8],
    ) {
        let body_sha256 = hex::encode(Sha256::digest(body));
        count_failure(source);
        metrics::counter!("ingest_webhooks_rejected_total", "source" => source, "reason" => reason)
            .increment(1);
        tracing::warn!(source, tenant, reason, body_sha256, "webhook rejected");
        self.audit.record(Rejection {
            source,
            tenant,
            reason,
            body_sha256,
            http_status: status.as_u16(),
            received_at: Utc::now(),
        });
    }
}

fn tenant_auth(tenants: &Tenants) -> HashMap<String, Arc<TenantAuth>> {
    tenants
        .iter()
        .map(|t| {
            let auth = TenantAuth {
                config: t.clone(),
                keys: t.signing_keys(),
                limit_key: format!("simplybook:{}", t.id),
            };
            (t.id.to_string(), Arc::new(auth))
        })
        .collect()
}

/// The webhook routes. A request that takes longer than `timeout` in all (a slow upload, a
/// stuck publish) is answered 408 and may be retried; retries are deduplicated.
pub fn router(state: Arc<AppState>, max_body_bytes: usize, timeout: Duration) -> Router {
    Router::new()
        .route(
            "/api/v1/webhooks/simplybook/{tenant}",
            post(simplybook_signed),
        )
        .route(
            "/api/v1/webhooks/simplybook/{tenant}/callback/{token}",
            post(simplybook_callback),
        )
        .route("/api/v1/webhooks/stripe", post(stripe))
        .layer(axum::middleware::from_fn(trace::http_span))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(state)
}

/// Verified metadata that travels in NATS headers next to the untouched body.
struct Verified<'a> {
    source: &'static str,
    auth: &'static str,
    event_id: String,
    tenant: Option<&'a str>,
    event_type: Option<&'a str>,
    received_at: DateTime<Utc>,
    /// The sender's signed timestamp, when the scheme has one.
    sent_at: Option<i64>,
}

impl Verified<'_> {
    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(async_nats::header::NATS_MESSAGE_ID, self.event_id.as_str());
        h.insert(HDR_EVENT_ID, self.event_id.as_str());
        h.insert(HDR_SOURCE, self.source);
        h.insert(HDR_AUTH, self.auth);
        if let Some(tenant) = self.tenant {
            h.insert(HDR_TENANT, tenant);
        }
        if let Some(kind) = self.event_type {
            h.insert(HDR_EVENT_TYPE, kind);
        }
        if let Some(sent_at) = self.sent_at {
            h.insert(HDR_SENT_AT, sent_at.to_string().as_str());
        }
        h.insert(
            HDR_RECEIVED_AT,
            self.received_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .as_str(),
        );
        h
    }
}

fn header<'a>(headers: &'a HttpHeaders, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A signed SimplyBook booking payload (Standard Webhooks).
async fn simplybook_signed(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HttpHeaders,
    body: Bytes,
) -> Response {
    const SOURCE: &str = "simplybook";
    let received_at = Utc::now();
    let Some(auth) = state.tenant(&tenant) else {
        return state.reject(SOURCE, &tenant, "unknown_tenant", &body);
    };
    let signed = SignedHeaders {
        id: header(&headers, "webhook-id"),
        timestamp: header(&headers, "webhook-timestamp"),
        signature: header(&headers, "webhook-signature"),
    };
    let sent_at =
        match standard_webhooks::verify(signed, &body, &auth.keys, received_at.timestamp()) {
            Ok(timestamp) => timestamp,
            Err(err) => return state.reject(SOURCE, &tenant, err.reason(), &body),
        };
    if !state.limiter.allow(&auth.limit_key) {
        return too_many(SOURCE, &tenant);
    }
    // Shape only: amount problems (≤ 0, not a number) are the ledger's to dead-letter and audit.
    if let Err(PayloadError::Malformed(message)) = BookingPayload::check_shape(&body) {
        return state.malformed(SOURCE, &tenant, &message, &body);
    }
    let verified = Verified {
        source: SOURCE,
        auth: AUTH_STANDARD_WEBHOOKS,
        event_id: format!("{SOURCE}:{tenant}:{}", signed.id),
        tenant: Some(&tenant),
        event_type: None,
        received_at,
        sent_at: Some(sent_at),
    };
    let subject = state.publishing.subjects.simplybook(&tenant);
    publish(&state, subject, &verified, body).await
}

/// A SimplyBook.me native callback, authenticated by the tenant's secret token in the URL and
/// the company login in the body. Published as sent; the ledger confirms it with SimplyBook.
async fn simplybook_callback(
    State(state): State<Arc<AppState>>,
    Path((tenant, token)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    const SOURCE: &str = "simplybook";
    let received_at = Utc::now();
    let Some(auth) = state.tenant(&tenant) else {
        return state.reject(SOURCE, &tenant, "unknown_tenant", &body);
    };
    if !auth.config.accepts_callback_token(&token) {
        return state.reject(SOURCE, &tenant, "bad_token", &body);
    }
    if !state.limiter.allow(&auth.limit_key) {
        return too_many(SOURCE, &tenant);
    }
    let callback = match Callback::parse(&body) {
        Ok(callback) => callback,
        Err(err) => return state.malformed(SOURCE, &tenant, &err.to_string(), &body),
    };
    let company_matches = auth
        .config
        .simplybook_company
        .as_deref()
        .is_some_and(|company| company.eq_ignore_ascii_case(&callback.company));
    if !company_matches {
        return state.reject(SOURCE, &tenant, "company_mismatch", &body);
    }
    let verified = Verified {
        source: SOURCE,
        auth: AUTH_CALLBACK_TOKEN,
        event_id: callback.event_id(&tenant, received_at),
        tenant: Some(&tenant),
        event_type: Some(callback.notification_type.as_str()),
        received_at,
        sent_at: None,
    };
    let subject = state.publishing.subjects.simplybook(&tenant);
    publish(&state, subject, &verified, body).await
}

/// The fields of a Stripe event ingest needs; the rest travels untouched.
#[derive(serde::Deserialize)]
struct StripeEvent<'a> {
    #[serde(borrow)]
    id: &'a str,
    #[serde(borrow, rename = "type")]
    kind: &'a str,
}

/// A Stripe event, verified against every configured signing secret.
async fn stripe(State(state): State<Arc<AppState>>, headers: HttpHeaders, body: Bytes) -> Response {
    const SOURCE: &str = "stripe";
    let received_at = Utc::now();
    if state.stripe_secrets.is_empty() {
        return state.reject(SOURCE, "", "not_configured", &body);
    }
    let secrets: Vec<&str> = state
        .stripe_secrets
        .iter()
        .map(|s| s.expose().as_str())
        .collect();
    let stripe_sent_at = match stripe_signature::verify(
        header(&headers, "stripe-signature"),
        &body,
        &secrets,
        received_at.timestamp(),
    ) {
        Ok(timestamp) => Some(timestamp),
        Err(err) => return state.reject(SOURCE, "", err.reason(), &body),
    };
    if !state.limiter.allow(SOURCE) {
        return too_many(SOURCE, "");
    }
    let event = match serde_json::from_slice::<StripeEvent<'_>>(&body) {
        Ok(e) if e.id.starts_with("evt_") && !e.kind.is_empty() => e,
        Ok(_) => {
            return state.malformed(
                SOURCE,
                "",
                "id must be an evt_ identifier and type non-empty",
                &body,
            );
        }
        Err(err) => return state.malformed(SOURCE, "", &err.to_string(), &body),
    };
    let verified = Verified {
        source: SOURCE,
        auth: AUTH_STRIPE_SIGNATURE,
        event_id: format!("{SOURCE}:{}", event.id),
        tenant: None,
        event_type: Some(event.kind),
        received_at,
        sent_at: stripe_sent_at,
    };
    let subject = state.publishing.subjects.stripe();
    publish(&state, subject, &verified, body.clone()).await
}

/// Publishes and waits for JetStream's ack; only then is the sender told the event is safe.
async fn publish(
    state: &AppState,
    subject: String,
    verified: &Verified<'_>,
    body: Bytes,
) -> Response {
    let source = verified.source;
    let event_id = verified.event_id.as_str();
    // While a stream elects a leader (seconds, after a node of a cluster is lost) JetStream
    // answers nothing, or "no stream", at once: publish again until the retry budget runs out,
    // so the sender gets a late 202 rather than a 503. Safe: a publish that was stored after
    // all is dropped as a duplicate by its Nats-Msg-Id (then answered 200 "duplicate").
    // An ack awaited on a connection that is lost meanwhile never comes: publish again at once
    // (on the connection the client makes next) rather than wait out the publish timeout.
    let publishing = &state.publishing;
    let deadline = tokio::time::Instant::now() + publishing.retry;
    let mut pause = Duration::from_millis(50);
    let acked = loop {
        let mut lost = connections_lost();
        // Built for each attempt (nearly always the only one) rather than built and copied.
        let mut headers = verified.headers();
        // The consumers continue this request's trace.
        trace::inject_nats(&mut headers);
        let attempt = match publishing
            .js
            .publish_with_headers(subject.clone(), headers, body.clone())
            .await
        {
            Ok(ack) => tokio::select! {
                acked = ack.into_future() => acked,
                _ = lost.changed() => Err(PublishError::new(PublishErrorKind::BrokenPipe)),
            },
            Err(err) => Err(err),
        };
        if attempt
            .as_ref()
            .is_err_and(|err| err.kind() == PublishErrorKind::TimedOut)
        {
            // No ack in time: a stream electing a leader, or a server gone silent.
            publishing.liveness.doubt();
        }
        let now = tokio::time::Instant::now();
        match attempt {
            Err(err) if passes(&err) && now + pause < deadline => {
                metrics::counter!("ingest_publish_retries_total", "source" => source).increment(1);
                tracing::debug!(source, event_id, error = %err, "publishing again");
                // A lost connection is already behind us: the client reconnects on its own.
                if err.kind() != PublishErrorKind::BrokenPipe {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
            }
            outcome => break outcome,
        }
    };
    if acked.is_err() {
        count_failure(source);
    }
    match acked {
        Ok(ack) if ack.duplicate => {
            metrics::counter!("ingest_webhooks_duplicate_total", "source" => source).increment(1);
            tracing::info!(source, event_id, "duplicate webhook acknowledged");
            json(StatusCode::OK, r#"{"status":"duplicate"}"#.into())
        }
        Ok(ack) => {
            metrics::counter!("ingest_webhooks_accepted_total", "source" => source).increment(1);
            tracing::debug!(source, event_id, seq = ack.sequence, "webhook published");
            json(StatusCode::ACCEPTED, r#"{"status":"accepted"}"#.into())
        }
        Err(err) => {
            metrics::counter!("ingest_webhooks_unavailable_total", "source" => source).increment(1);
            tracing::error!(source, event_id, error = %err, "jetstream publish failed");
            let mut response = json(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"temporarily unavailable, retry later"}"#.into(),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            response
        }
    }
}

/// Whether a failed publish may succeed if tried again soon: no stream answering (no leader yet),
/// no ack in time, the connection lost. Not a refusal of the message itself.
fn passes(err: &PublishError) -> bool {
    matches!(
        err.kind(),
        PublishErrorKind::StreamNotFound
            | PublishErrorKind::TimedOut
            | PublishErrorKind::BrokenPipe
    )
}

/// Over the sender's rate limit: 429 with `Retry-After`, nothing published.
fn too_many(source: &'static str, tenant: &str) -> Response {
    metrics::counter!("ingest_webhooks_rejected_total", "source" => source, "reason" => "rate_limited")
        .increment(1);
    tracing::warn!(source, tenant, "webhook rate limited");
    let mut response = json(
        StatusCode::TOO_MANY_REQUESTS,
        r#"{"error":"rate limit exceeded, retry later"}"#.into(),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
