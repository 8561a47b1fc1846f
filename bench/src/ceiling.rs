//! The ceiling: a bare axum server on the same routes that only verifies the signatures (the
//! same HMAC code ingest uses) and answers 202. Nothing else ingest does — shape checks, rate
//! limits, the JetStream publish and its ack — is in it.

use std::io::Write;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use billing_domain::standard_webhooks::{self, SignedHeaders, SigningKey};
use billing_domain::stripe_signature;

use crate::payloads::{SIMPLYBOOK_SECRET, STRIPE_SECRET};

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
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
                    let signed = SignedHeaders {
                        id: header(&headers, "webhook-id"),
                        timestamp: header(&headers, "webhook-timestamp"),
                        signature: header(&headers, "webhook-signature"),
                    };
                    let now = chrono::Utc::now().timestamp();
                    match standard_webhooks::verify(signed, &body, &key, now) {
                        Ok(_) => StatusCode::ACCEPTED,
                        Err(_) => StatusCode::UNAUTHORIZED,
                    }
                }
            }),
        )
        .route(
            "/api/v1/webhooks/stripe",
            post(|headers: HeaderMap, body: Bytes| async move {
                let now = chrono::Utc::now().timestamp();
                let signature = header(&headers, "stripe-signature");
                match stripe_signature::verify(signature, &body, &[STRIPE_SECRET], now) {
                    Ok(_) => StatusCode::ACCEPTED,
                    Err(_) => StatusCode::UNAUTHORIZED,
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
