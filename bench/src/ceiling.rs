//! The ceilings ingest is measured against, each an axum server on ingest's routes:
//! - [`serve`], the bare one: only verifies the signatures (the same HMAC code ingest uses) and
//!   answers 202. Nothing else ingest does — shape checks, rate limits, the JetStream publish and
//!   its ack — is in it: what the machine's HTTP and HMAC allow.
//! - [`serve_contract`], the contract ceiling (issue 20): the least code that keeps ingest's
//!   promise — verify, publish the body to the same WEBHOOKS stream with the event's id for
//!   JetStream's deduplication, answer 202 only once JetStream acknowledged it (200 for a
//!   duplicate, 503 when the publish fails). No rate limits, shape checks beyond the id, audit
//!   records, metrics, traces or timeouts.

use std::io::Write;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use billing_domain::standard_webhooks::{self, SignedHeaders, SigningKey};
use billing_domain::stripe_signature;

use async_nats::jetstream;
use billing_runtime::Subjects;

use crate::payloads::{SIMPLYBOOK_SECRET, STRIPE_SECRET, TENANT};

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The webhook id of a SimplyBook request whose Standard Webhooks signature verifies, as ingest
/// checks it.
fn simplybook_verified<'h>(
    headers: &'h HeaderMap,
    body: &[u8],
    key: &[SigningKey],
) -> Option<&'h str> {
    let signed = SignedHeaders {
        id: header(headers, "webhook-id"),
        timestamp: header(headers, "webhook-timestamp"),
        signature: header(headers, "webhook-signature"),
    };
    let now = chrono::Utc::now().timestamp();
    standard_webhooks::verify(signed, body, key, now)
        .ok()
        .map(|_| signed.id)
}

/// Whether a Stripe request's signature verifies, as ingest checks it.
fn stripe_verified(headers: &HeaderMap, body: &[u8]) -> bool {
    let now = chrono::Utc::now().timestamp();
    let signature = header(headers, "stripe-signature");
    stripe_signature::verify(signature, body, &[STRIPE_SECRET], now).is_ok()
}

/// Serves until killed; prints `listening <addr>` once bound.
pub async fn serve() -> anyhow::Result<()> {
    let key = Arc::new(vec![SigningKey::parse(SIMPLYBOOK_SECRET)?]);
    let app = Router::new()
        .route(
            "/api/v1/webhooks/simplybook/{tenant}",
            post(move |headers: HeaderMap, body: Bytes| {
                let key = key.clone();
                async move {
                    match simplybook_verified(&headers, &body, &key) {
                        Some(_) => StatusCode::ACCEPTED,
                        None => StatusCode::UNAUTHORIZED,
                    }
                }
            }),
        )
        .route(
            "/api/v1/webhooks/stripe",
            post(|headers: HeaderMap, body: Bytes| async move {
                if stripe_verified(&headers, &body) {
                    StatusCode::ACCEPTED
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut out = std::io::stdout();
    writeln!(out, "listening {}", listener.local_addr()?)?;
    out.flush()?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// Publishes `body` with `id` for deduplication and answers as ingest does once JetStream has
/// answered.
async fn publish_acked(
    js: &jetstream::Context,
    subject: String,
    id: &str,
    body: Bytes,
) -> StatusCode {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(billing_runtime::nats::NATS_MSG_ID, id);
    let acked = match js.publish_with_headers(subject, headers, body).await {
        Ok(ack) => ack.await,
        Err(err) => Err(err),
    };
    match acked {
        Ok(ack) if ack.duplicate => StatusCode::OK,
        Ok(_) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The id of a Stripe event, the one field the contract needs from its body.
#[derive(serde::Deserialize)]
struct StripeId<'a> {
    #[serde(borrow)]
    id: &'a str,
}

/// The contract ceiling (see the module): serves until killed on the streams of the NATS server
/// at `nats_url` (made as ingest makes them); prints `listening <addr>` once bound.
pub async fn serve_contract(nats_url: &str) -> anyhow::Result<()> {
    let js = jetstream::new(async_nats::connect(nats_url).await?);
    // ingest's namespace and stream settings (the benchmark's ingest runs without a namespace).
    let subjects = Arc::new(Subjects::new(""));
    subjects.ensure_streams(&js).await?;
    let key = Arc::new(vec![SigningKey::parse(SIMPLYBOOK_SECRET)?]);
    let (js_s, subjects_s) = (js.clone(), subjects.clone());
    let app = Router::new()
        .route(
            "/api/v1/webhooks/simplybook/{tenant}",
            post(move |headers: HeaderMap, body: Bytes| {
                let (key, js, subjects) = (key.clone(), js_s.clone(), subjects_s.clone());
                async move {
                    let Some(webhook_id) = simplybook_verified(&headers, &body, &key) else {
                        return StatusCode::UNAUTHORIZED;
                    };
                    let id = format!("simplybook:{TENANT}:{webhook_id}");
                    publish_acked(&js, subjects.simplybook(TENANT), &id, body).await
                }
            }),
        )
        .route(
            "/api/v1/webhooks/stripe",
            post(move |headers: HeaderMap, body: Bytes| {
                let (js, subjects) = (js.clone(), subjects.clone());
                async move {
                    if !stripe_verified(&headers, &body) {
                        return StatusCode::UNAUTHORIZED;
                    }
                    let Ok(event) = serde_json::from_slice::<StripeId<'_>>(&body) else {
                        return StatusCode::BAD_REQUEST;
                    };
                    let id = format!("stripe:{}", event.id);
                    publish_acked(&js, subjects.stripe(), &id, body).await
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut out = std::io::stdout();
    writeln!(out, "listening {}", listener.local_addr()?)?;
    out.flush()?;
    axum::serve(listener, app).await?;
    Ok(())
}
