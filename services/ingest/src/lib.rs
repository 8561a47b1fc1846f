//! ingest: the front door. Authenticates webhooks, publishes the raw body with its verified
//! metadata to JetStream, and answers 2xx only once JetStream has acknowledged the message.
//! No database on this path; stateless, so it scales horizontally.
#![forbid(unsafe_code)]

mod audit;
mod limiter;
mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use billing_domain::{Secret, Tenants};
use billing_runtime::{Probes, Shutdown, Subjects, nats, ops, server};
use tokio::net::TcpListener;

/// ingest's configuration, from flags or `INGEST_*` environment variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "ingest",
    version,
    about = "Receives and authenticates webhooks"
)]
pub struct Config {
    /// Address for the webhook API and the ops endpoints.
    #[arg(long, env = "INGEST_LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,
    /// NATS server with JetStream.
    #[arg(long, env = "INGEST_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Prefix for subjects and streams; empty in production.
    #[arg(long, env = "INGEST_NATS_NAMESPACE", default_value = "")]
    pub nats_namespace: String,
    /// JSON file with the tenants and their webhook secrets.
    #[arg(long, env = "INGEST_TENANTS_FILE")]
    pub tenants_file: PathBuf,
    /// How long to wait for JetStream's publish ack before answering 503.
    #[arg(long, env = "INGEST_PUBLISH_TIMEOUT_MS", default_value_t = 2000)]
    pub publish_timeout_ms: u64,
    /// Stripe webhook signing secrets (`whsec_…`), comma-separated; several during a rotation.
    /// Without any, the Stripe endpoint refuses every request.
    #[arg(
        long,
        env = "INGEST_STRIPE_WEBHOOK_SECRETS",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = billing_runtime::config::parse_secret
    )]
    pub stripe_webhook_secrets: Vec<Secret<String>>,
    /// How often the tenants file is re-read; changed secrets apply without a restart.
    #[arg(long, env = "INGEST_TENANTS_RELOAD_SECS", default_value_t = 10)]
    pub tenants_reload_secs: u64,
    /// Sustained requests per second accepted per source and tenant (0: no limit); more get 429.
    #[arg(long, env = "INGEST_RATE_LIMIT_PER_SEC", default_value_t = 500)]
    pub rate_limit_per_sec: u32,
    /// Requests per source and tenant accepted at once above the sustained rate.
    #[arg(long, env = "INGEST_RATE_LIMIT_BURST", default_value_t = 2000)]
    pub rate_limit_burst: u32,
    /// Audit records of refused requests published per second and source (a flood of forged
    /// requests must not become a flood of database writes); more are counted but not audited.
    #[arg(long, env = "INGEST_REJECTION_AUDIT_PER_SEC", default_value_t = 20)]
    pub rejection_audit_per_sec: u32,
    /// Audit records per source published at once above the sustained rate.
    #[arg(long, env = "INGEST_REJECTION_AUDIT_BURST", default_value_t = 200)]
    pub rejection_audit_burst: u32,
    /// A request not answered within this time (a slow upload, a stuck publish) gets 408.
    #[arg(long, env = "INGEST_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Largest accepted request body; larger ones get 413.
    #[arg(long, env = "INGEST_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tenants(#[from] billing_domain::tenant::TenantsError),
    #[error("connecting to nats: {0}")]
    Nats(#[from] async_nats::ConnectError),
    #[error("creating jetstream streams: {0}")]
    Streams(#[from] async_nats::jetstream::context::CreateStreamError),
    #[error(transparent)]
    Serve(#[from] server::ServeError),
}

/// Runs ingest on `listener` until `shutdown` is cancelled.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    // The metrics recorder first: anything counted before it exists would be lost.
    billing_runtime::ops::prometheus();
    let tenants = Tenants::load(&config.tenants_file)?;
    let client = nats::connect(&config.nats_url, "ingest").await?;
    let js = nats::jetstream(
        client.clone(),
        Duration::from_millis(config.publish_timeout_ms),
    );
    let subjects = Subjects::new(&config.nats_namespace);
    subjects.ensure_streams(&js).await?;
    let ready_streams = (js.clone(), subjects.stream_names());

    let audit = audit::RejectionAudit::new(
        js.clone(),
        subjects.clone(),
        limiter::RateLimiter::new(config.rejection_audit_per_sec, config.rejection_audit_burst),
    );
    let state = Arc::new(webhooks::AppState::new(
        &tenants,
        config.stripe_webhook_secrets.clone(),
        limiter::RateLimiter::new(config.rate_limit_per_sec, config.rate_limit_burst),
        audit,
        js,
        subjects,
    ));
    let app = webhooks::router(
        state.clone(),
        config.max_body_bytes,
        Duration::from_millis(config.request_timeout_ms),
    )
    .merge(ops::router(Probes {
        db: None,
        nats: Some(client),
        streams: Some(ready_streams),
    }));
    tokio::spawn(reload_tenants(
        config.tenants_file.clone(),
        Duration::from_secs(config.tenants_reload_secs.max(1)),
        state.clone(),
        shutdown.clone(),
    ));
    tracing::info!(addr = %listener.local_addr().map_err(server::ServeError::from)?, "ingest listening");
    server::serve(listener, app, shutdown).await?;
    Ok(())
}

/// Re-reads the tenants file when its content changes (e.g. a Kubernetes Secret update). A file
/// that does not parse is ignored with an error, and the previous secrets stay in force.
async fn reload_tenants(
    path: PathBuf,
    every: Duration,
    state: Arc<webhooks::AppState>,
    shutdown: Shutdown,
) {
    let mut last = std::fs::read(&path).ok();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let current = std::fs::read(&path).ok();
        if current.is_none() || current == last {
            continue;
        }
        match Tenants::load(&path) {
            Ok(tenants) => {
                state.set_tenants(&tenants);
                metrics::counter!("ingest_tenants_reloads_total", "result" => "ok").increment(1);
                tracing::info!(tenants = tenants.iter().count(), "tenants file reloaded");
            }
            Err(err) => {
                metrics::counter!("ingest_tenants_reloads_total", "result" => "invalid")
                    .increment(1);
                tracing::error!(error = %err, "tenants file changed but is invalid; keeping the previous one");
            }
        }
        last = current;
    }
}
