//! The ceilings ingest is measured against, each an axum server on ingest's routes:
//! - [`serve`], the bare one: only verifies the signatures (the same HMAC code ingest uses) and
//!   answers 202. Nothing else ingest does — shape checks, rate limits, the JetStream publish and
//!   its ack — is in it: what the machine's HTTP and HMAC allow.
//! - [`serve_contract`], the contract ceiling (issue 20): the least code that keeps ingest's
//!   promise — verify, publish the body to the same WEBHOOKS stream with the event's id for
//!   JetStream's deduplication, answer 202 only once JetStream acknowledged it (200 for a
//!   duplicate, 503 when the publish fails). No rate limits, shape checks beyond the id, audit
//!   records, metrics, traces or timeouts, unless `CONTRACT_CEILING_WITH` adds them ([`Extras`]).

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

/// What ingest does beyond the contract, each of which the contract ceiling can be made to do
/// too (`CONTRACT_CEILING_WITH=connect,headers,...`, or `all`), one at a time, to find which
/// difference makes ingest's latency tail (issue 20 item 5). Off by default: the contract
/// ceiling proper.
#[derive(Debug, Default, Clone, Copy)]
pub struct Extras {
    /// ingest's NATS connection (`billing_runtime::nats::connect`: pings every 5 s, its own
    /// inbox prefix, an event callback) and JetStream context (2 s timeout).
    connect: bool,
    /// ingest's NATS headers on each message (event id, source, auth, tenant, sent and received
    /// times), not only `Nats-Msg-Id`.
    headers: bool,
    /// ingest's publish: the ack raced against `connections_lost()`, the subject, headers and
    /// body cloned for a retry.
    lost: bool,
    /// `billing_runtime::trace::http_span` around each request (the `http_server_seconds`
    /// histogram).
    span: bool,
    /// The Prometheus recorder with its upkeep every 5 s, `/metrics`, and ingest's counters per
    /// request.
    recorder: bool,
    /// The body limit and the 10 s request timeout layers.
    timeout: bool,
    /// ingest's logging (`billing_runtime::telemetry::init`: JSON lines, `RUST_LOG`).
    logs: bool,
    /// ingest's HTTP server loop (hyper HTTP/1.1 with a header-read timer, a connection cap),
    /// not `axum::serve`.
    serve: bool,
    /// ingest's checks: tenant lookup, rate limiter, the body's shape.
    checks: bool,
}

impl Extras {
    /// From `CONTRACT_CEILING_WITH` (unknown names are refused).
    pub fn from_env() -> anyhow::Result<Self> {
        let mut extras = Extras::default();
        let wanted = std::env::var("CONTRACT_CEILING_WITH").unwrap_or_default();
        for name in wanted.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let all = name == "all";
            let mut known = all;
            for (flag, on) in [
                ("connect", &mut extras.connect),
                ("headers", &mut extras.headers),
                ("lost", &mut extras.lost),
                ("span", &mut extras.span),
                ("recorder", &mut extras.recorder),
                ("timeout", &mut extras.timeout),
                ("logs", &mut extras.logs),
                ("serve", &mut extras.serve),
                ("checks", &mut extras.checks),
            ] {
                if all || flag == name {
                    *on = true;
                    known = true;
                }
            }
            anyhow::ensure!(known, "CONTRACT_CEILING_WITH: unknown difference {name:?}");
        }
        Ok(extras)
    }
}

/// The contract ceiling's state, with what [`Extras`] adds.
struct Contract {
    js: jetstream::Context,
    subjects: Subjects,
    key: Vec<SigningKey>,
    extras: Extras,
    tenants: std::sync::RwLock<Arc<std::collections::HashMap<String, Arc<()>>>>,
    limiter: billing_runtime::limiter::RateLimiter,
}

impl Contract {
    /// Publishes `body` with `id` for deduplication (and ingest's headers when asked) and
    /// answers as ingest does once JetStream has answered.
    async fn publish(
        &self,
        subject: String,
        id: &str,
        body: Bytes,
        tenant: Option<&str>,
        received_at: chrono::DateTime<chrono::Utc>,
    ) -> StatusCode {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(billing_runtime::nats::NATS_MSG_ID, id);
        if self.extras.headers {
            use billing_runtime::nats::{
                AUTH_STANDARD_WEBHOOKS, HDR_AUTH, HDR_EVENT_ID, HDR_RECEIVED_AT, HDR_SENT_AT,
                HDR_SOURCE, HDR_TENANT,
            };
            headers.insert(HDR_EVENT_ID, id);
            headers.insert(HDR_SOURCE, "simplybook");
            headers.insert(HDR_AUTH, AUTH_STANDARD_WEBHOOKS);
            if let Some(tenant) = tenant {
                headers.insert(HDR_TENANT, tenant);
            }
            headers.insert(HDR_SENT_AT, received_at.timestamp().to_string().as_str());
            headers.insert(
                HDR_RECEIVED_AT,
                received_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                    .as_str(),
            );
        }
        let acked = if self.extras.lost {
            let mut lost = billing_runtime::nats::connections_lost();
            match self
                .js
                .publish_with_headers(subject.clone(), headers.clone(), body.clone())
                .await
            {
                Ok(ack) => tokio::select! {
                    acked = ack.into_future() => acked,
                    _ = lost.changed() => Err(jetstream::context::PublishError::new(
                        jetstream::context::PublishErrorKind::BrokenPipe,
                    )),
                },
                Err(err) => Err(err),
            }
        } else {
            match self.js.publish_with_headers(subject, headers, body).await {
                Ok(ack) => ack.await,
                Err(err) => Err(err),
            }
        };
        let status = match acked {
            Ok(ack) if ack.duplicate => StatusCode::OK,
            Ok(_) => StatusCode::ACCEPTED,
            Err(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if self.extras.recorder {
            let source = if tenant.is_some() {
                "simplybook"
            } else {
                "stripe"
            };
            if status == StatusCode::ACCEPTED {
                metrics::counter!("ingest_webhooks_accepted_total", "source" => source)
                    .increment(1);
            }
        }
        status
    }

    /// ingest's checks before a publish: the tenant, the rate limiter, the body's shape.
    fn checks(&self, source: &str, tenant: &str, body: &[u8]) -> bool {
        if !self.extras.checks {
            return true;
        }
        let known = {
            let tenants = match self.tenants.read() {
                Ok(guard) => guard.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            };
            tenants.get(tenant).cloned()
        };
        // Named once, as ingest names each tenant's key when it loads the tenants.
        let key = if tenant.is_empty() {
            source
        } else {
            SIMPLYBOOK_LIMIT_KEY
        };
        let shape = if source == "simplybook" {
            billing_domain::BookingPayload::check_shape(body).is_ok()
        } else {
            serde_json::from_slice::<StripeEvent<'_>>(body)
                .is_ok_and(|e| e.id.starts_with("evt_") && !e.kind.is_empty())
        };
        (tenant.is_empty() || known.is_some()) && self.limiter.allow(key) && shape
    }
}

/// The rate-limit key of the benchmark's one tenant (`simplybook:<TENANT>`), as ingest names it.
const SIMPLYBOOK_LIMIT_KEY: &str = "simplybook:bench";

/// The id of a Stripe event, the one field the contract needs from its body.
#[derive(serde::Deserialize)]
struct StripeId<'a> {
    #[serde(borrow)]
    id: &'a str,
}

/// A Stripe event's id and type, as ingest reads them (the `checks` difference).
#[derive(serde::Deserialize)]
struct StripeEvent<'a> {
    #[serde(borrow)]
    id: &'a str,
    #[serde(borrow, rename = "type")]
    kind: &'a str,
}

/// The contract ceiling (see the module): serves until killed on the streams of the NATS server
/// at `nats_url` (made as ingest makes them); prints `listening <addr>` once bound. With
/// `CONTRACT_CEILING_WITH`, it also does what [`Extras`] names.
pub async fn serve_contract(nats_url: &str) -> anyhow::Result<()> {
    let extras = Extras::from_env()?;
    if extras.recorder {
        billing_runtime::ops::prometheus();
    }
    let js = if extras.connect {
        billing_runtime::nats::jetstream(
            billing_runtime::nats::connect(nats_url, "ingest").await?,
            std::time::Duration::from_secs(2),
        )
    } else {
        jetstream::new(async_nats::connect(nats_url).await?)
    };
    // ingest's namespace and stream settings (the benchmark's ingest runs without a namespace).
    let subjects = Subjects::new("");
    subjects.ensure_streams(&js).await?;
    let state = Arc::new(Contract {
        js,
        subjects,
        key: vec![SigningKey::parse(SIMPLYBOOK_SECRET)?],
        extras,
        tenants: std::sync::RwLock::new(Arc::new(
            [(TENANT.to_string(), Arc::new(()))].into_iter().collect(),
        )),
        limiter: billing_runtime::limiter::RateLimiter::new(10_000_000, 10_000_000),
    });
    let state_s = state.clone();
    let mut app = Router::new()
        .route(
            "/api/v1/webhooks/simplybook/{tenant}",
            post(move |headers: HeaderMap, body: Bytes| {
                let state = state_s.clone();
                async move {
                    let received_at = chrono::Utc::now();
                    let Some(webhook_id) = simplybook_verified(&headers, &body, &state.key) else {
                        return StatusCode::UNAUTHORIZED;
                    };
                    if !state.checks("simplybook", TENANT, &body) {
                        return StatusCode::BAD_REQUEST;
                    }
                    let id = format!("simplybook:{TENANT}:{webhook_id}");
                    let subject = state.subjects.simplybook(TENANT);
                    state
                        .publish(subject, &id, body, Some(TENANT), received_at)
                        .await
                }
            }),
        )
        .route(
            "/api/v1/webhooks/stripe",
            post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    let received_at = chrono::Utc::now();
                    if !stripe_verified(&headers, &body) {
                        return StatusCode::UNAUTHORIZED;
                    }
                    if !state.checks("stripe", "", &body) {
                        return StatusCode::BAD_REQUEST;
                    }
                    let Ok(event) = serde_json::from_slice::<StripeId<'_>>(&body) else {
                        return StatusCode::BAD_REQUEST;
                    };
                    let id = format!("stripe:{}", event.id);
                    let subject = state.subjects.stripe();
                    state.publish(subject, &id, body, None, received_at).await
                }
            }),
        );
    if extras.span {
        app = app.layer(axum::middleware::from_fn(billing_runtime::trace::http_span));
    }
    if extras.timeout {
        app = app
            .layer(axum::extract::DefaultBodyLimit::max(256 * 1024))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                std::time::Duration::from_secs(10),
            ));
    }
    if extras.recorder {
        app = app.merge(billing_runtime::ops::router(
            billing_runtime::Probes::default(),
        ));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut out = std::io::stdout();
    writeln!(out, "listening {}", listener.local_addr()?)?;
    out.flush()?;
    // After the line the benchmark reads: the logs go where ingest's would, nowhere it reads.
    let _telemetry = extras
        .logs
        .then(|| billing_runtime::telemetry::init("contract-ceiling"));
    if extras.serve {
        serve_like_ingest(listener, app).await;
    } else {
        axum::serve(listener, app).await?;
    }
    Ok(())
}

/// ingest's server loop (`services/ingest/src/serve.rs`, without the graceful shutdown): a
/// connection cap of 1,024, HTTP/1.1 only, a 10 s header-read timeout on tokio's timer, 16 KiB
/// of headers, and the open-connections gauge.
async fn serve_like_ingest(listener: tokio::net::TcpListener, app: Router) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let permits = Arc::new(tokio::sync::Semaphore::new(1024));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            metrics::gauge!("ingest_connections_open").increment(1.0);
            let _ = stream.set_nodelay(true);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .max_header_size(16 * 1024);
            let _ = http
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
                .await;
            metrics::gauge!("ingest_connections_open").decrement(1.0);
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_limit_key_names_the_benchmarks_tenant() {
        assert_eq!(
            super::SIMPLYBOOK_LIMIT_KEY,
            format!("simplybook:{}", crate::payloads::TENANT)
        );
    }
}
