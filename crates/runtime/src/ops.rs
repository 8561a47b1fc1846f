//! Operational endpoints every service serves: `/healthz` (the process is up), `/readyz` (its
//! dependencies answer) and `/metrics` (Prometheus text format).

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets (seconds) for every `*_seconds` histogram.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide Prometheus recorder, installed on first use, with the runtime's own metrics
/// described ([`crate::metric_docs::describe`]). A service describes its metrics right after
/// calling this, before anything serves `/metrics`.
pub fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        // Names already end in their unit, so the exporter's unit suffix (and its
        // "recommended naming") stays off: a description's unit documents the name and
        // changes no series.
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (cannot happen in our binaries): render an empty one.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        };
        crate::metric_docs::describe();
        handle
    })
}

/// The dependencies `/readyz` checks.
#[derive(Clone, Default)]
pub struct Probes {
    pub db: Option<sqlx::PgPool>,
    pub nats: Option<async_nats::Client>,
    /// JetStream streams the service needs; each must answer an info request.
    pub streams: Option<(async_nats::jetstream::Context, Vec<String>)>,
}

impl Probes {
    /// `Err` names the first dependency that does not answer.
    pub async fn check(&self) -> Result<(), &'static str> {
        if let Some(db) = &self.db {
            let ping = sqlx::query_scalar::<_, i32>("select 1").fetch_one(db);
            match tokio::time::timeout(Duration::from_secs(2), ping).await {
                Ok(Ok(_)) => {}
                _ => return Err("postgresql"),
            }
        }
        if let Some(nats) = &self.nats
            && nats.connection_state() != async_nats::connection::State::Connected
        {
            return Err("nats");
        }
        if let Some((js, names)) = &self.streams {
            for name in names {
                let info = js.get_stream(name);
                match tokio::time::timeout(Duration::from_secs(2), info).await {
                    Ok(Ok(_)) => {}
                    _ => return Err("jetstream streams"),
                }
            }
        }
        Ok(())
    }
}

/// Drains histogram samples into their buckets now and then, as the exporter's own HTTP
/// listener would (we serve `/metrics` ourselves). One task per process.
fn spawn_upkeep() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        tokio::spawn(async {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                prometheus().run_upkeep();
            }
        });
    });
}

/// `/healthz`, `/readyz` and `/metrics`. Call from within the Tokio runtime.
pub fn router(probes: Probes) -> Router {
    // Make sure the recorder exists before the first request renders it.
    let _ = prometheus();
    spawn_upkeep();
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(|| async { prometheus().render() }))
        .with_state(probes)
}

async fn ready(State(probes): State<Probes>) -> (StatusCode, String) {
    match probes.check().await {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(dep) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {dep} unavailable\n"),
        ),
    }
}
