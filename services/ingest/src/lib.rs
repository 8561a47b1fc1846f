//! ingest: the front door. Authenticates webhooks, publishes the raw body with its verified
//! metadata to JetStream, and answers 2xx only once JetStream has acknowledged the message.
//! No database on this path; stateless, so it scales horizontally.
//!
//! # Layout
//!
//! - `serve`: the HTTP listener the internet reaches, defending itself first (header-read
//!   timeout, connection cap, header size) before a request reaches a handler.
//! - `webhooks`: the endpoints (SimplyBook forwarder, SimplyBook callbacks, Stripe): verify,
//!   check the shape, publish to JetStream, answer after the ack.
//! - `audit`: refused webhooks, published for the ledger's audit log (rate limited).
//! - `checks`: configuration checks clap cannot make without echoing a secret.
//! - `metrics`: what each metric means.
//!
//! `webhooks` uses `audit`; no other module uses another.
#![forbid(unsafe_code)]

mod audit;
pub mod checks;
mod metrics;
mod serve;
mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use billing_domain::Secret;
use billing_runtime::tenants::LiveTenants;
use billing_runtime::{Probes, Shutdown, Subjects, nats, ops, server};
use tokio::net::TcpListener;

billing_runtime::nats_identity_settings!(IngestNats, "INGEST");

/// ingest's configuration, from flags or `INGEST_*` environment variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "ingest",
    version,
    about = "Receives and authenticates webhooks"
)]
pub struct Config {
    /// Address for the webhook API and `/healthz` and `/readyz` (and `/metrics` unless
    /// `INGEST_OPS_ADDR` is set).
    #[arg(long, env = "INGEST_LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,
    /// An internal address for `/metrics` (and the probes again), so metrics are not served on
    /// the public port. Unset: everything on `INGEST_LISTEN_ADDR`.
    #[arg(long, env = "INGEST_OPS_ADDR")]
    pub ops_addr: Option<SocketAddr>,
    /// NATS server with JetStream; on a cluster, several seed URLs separated by commas. (Its value is not shown in `--help`: a URL may carry a
    /// password.)
    #[arg(
        long,
        env = "INGEST_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true,
        value_parser = billing_runtime::config::UrlParser
    )]
    pub nats_url: String,
    /// Prefix for subjects and streams; empty in production.
    #[arg(long, env = "INGEST_NATS_NAMESPACE", default_value = "")]
    pub nats_namespace: String,
    /// This service's identity on NATS (user and password file, creds or nkey seed file).
    #[command(flatten)]
    pub nats_identity: IngestNats,
    /// JSON file with the tenants and their webhook secrets.
    #[arg(long, env = "INGEST_TENANTS_FILE")]
    pub tenants_file: PathBuf,
    /// Ingest's secrets (each tenant's `webhook_secrets` and `callback_tokens`) in a file of
    /// their own, merged into the tenants file; optional (they may be in the tenants file).
    #[arg(long, env = "INGEST_TENANT_SECRETS_FILE")]
    pub tenant_secrets_file: Option<PathBuf>,
    /// How long to wait for JetStream's publish ack before answering 503.
    #[arg(long, env = "INGEST_PUBLISH_TIMEOUT_MS", default_value_t = 2000)]
    pub publish_timeout_ms: u64,
    /// How long to keep publishing again while JetStream cannot take the webhook for a reason
    /// that passes (no stream leader during an election, which takes seconds on a cluster; no
    /// ack in time), before answering 503; 0: never again. Each publish still waits at most
    /// INGEST_PUBLISH_TIMEOUT_MS; keep the sum below INGEST_REQUEST_TIMEOUT_MS.
    #[arg(long, env = "INGEST_PUBLISH_RETRY_MS", default_value_t = 7000)]
    pub publish_retry_ms: u64,
    /// How long the raw-webhook stream keeps bodies, in hours (they carry clients' personal
    /// data): the window in which an event can be consumed again. At least 24; ingest sets the
    /// stream to it at start-up.
    #[arg(
        long,
        env = "INGEST_WEBHOOK_RETENTION_HOURS",
        default_value_t = 168,
        value_parser = clap::value_parser!(u64).range(24..)
    )]
    pub webhook_retention_hours: u64,
    /// Stripe webhook signing secrets (`whsec_…`), comma-separated; several during a rotation.
    /// Without any, the Stripe endpoint refuses every request. A placeholder, or a value that is
    /// not `whsec_` and 24 characters or more, stops ingest at start.
    #[arg(
        long,
        env = "INGEST_STRIPE_WEBHOOK_SECRETS",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = billing_runtime::config::SecretParser
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
    /// A client that has not sent its request line and headers within this time is
    /// disconnected; so is a keep-alive connection idle for as long (keep the load balancer's
    /// upstream idle timeout below it).
    #[arg(long, env = "INGEST_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,
    /// Largest request line and headers together; larger ones get 431 before any body is read.
    #[arg(long, env = "INGEST_MAX_HEADER_BYTES", default_value_t = 16 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_header_bytes: u64,
    /// Connections served at once per listener; more wait in the accept queue until one closes.
    #[arg(long, env = "INGEST_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
}

impl Config {
    /// Checks what clap cannot check without echoing a value; run before anything starts.
    pub fn validate(&self) -> Result<(), checks::ConfigError> {
        checks::stripe_secrets(
            self.stripe_webhook_secrets
                .iter()
                .map(|s| s.expose().as_str()),
        )
    }

    fn limits(&self) -> serve::Limits {
        serve::Limits {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            max_header_bytes: usize::try_from(self.max_header_bytes).unwrap_or(usize::MAX),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }
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
    #[error("setting the raw-webhook stream's retention (INGEST_WEBHOOK_RETENTION_HOURS): {0}")]
    Retention(String),
    #[error("binding INGEST_OPS_ADDR {addr}: {source}")]
    BindOps {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Runs ingest on `listener` (and on `config.ops_addr`, bound here, when set) until `shutdown`
/// is cancelled.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    let ops = match config.ops_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| Error::BindOps { addr, source })?,
        ),
        None => None,
    };
    run_with_ops(config, listener, ops, shutdown).await
}

/// Runs ingest on `listener`, with `/metrics` on `ops` instead when given, until `shutdown` is
/// cancelled.
pub async fn run_with_ops(
    config: Config,
    listener: TcpListener,
    ops: Option<TcpListener>,
    shutdown: Shutdown,
) -> Result<(), Error> {
    // The metrics recorder first: anything counted before it exists would be lost.
    billing_runtime::ops::prometheus();
    metrics::describe();
    let tenants = LiveTenants::load(
        "ingest",
        &config.tenants_file,
        config.tenant_secrets_file.as_deref(),
    )?;
    let client = config
        .nats_identity
        .connect(&config.nats_url, "ingest")
        .await?;
    let js = nats::jetstream(
        client.clone(),
        Duration::from_millis(config.publish_timeout_ms),
    );
    let subjects = Subjects::new(&config.nats_namespace)
        .with_replicas(usize::from(config.nats_identity.stream_replicas));
    subjects.ensure_streams(&js).await?;
    let retention = Duration::from_secs(config.webhook_retention_hours * 3600);
    match subjects.set_webhook_retention(&js, retention).await {
        Ok(Some(was)) => tracing::info!(
            was_hours = was.as_secs() / 3600,
            now_hours = config.webhook_retention_hours,
            "raw-webhook stream retention changed"
        ),
        Ok(None) => {}
        Err(err) => return Err(Error::Retention(err.to_string())),
    }
    let ready_streams = (js.clone(), subjects.stream_names());

    let audit = audit::RejectionAudit::new(
        js.clone(),
        subjects.clone(),
        billing_runtime::limiter::RateLimiter::new(
            config.rejection_audit_per_sec,
            config.rejection_audit_burst,
        ),
    );
    let state = Arc::new(webhooks::AppState::new(
        tenants.clone(),
        config.stripe_webhook_secrets.clone(),
        billing_runtime::limiter::RateLimiter::new(
            config.rate_limit_per_sec,
            config.rate_limit_burst,
        ),
        audit,
        webhooks::Publishing {
            js,
            subjects,
            retry: publish_retry(&config),
            liveness: nats::Liveness::start(
                client.clone(),
                "ingest",
                nats::requires_tls(&config.nats_url),
                LIVENESS_PROBE_TIMEOUT,
            ),
        },
    ));
    let probes = Probes {
        db: None,
        nats: Some(client),
        streams: Some(ready_streams),
    };
    let app = webhooks::router(
        state.clone(),
        config.max_body_bytes,
        Duration::from_millis(config.request_timeout_ms),
    );
    // The probes stay on the public port either way (kubelet and compose check them there).
    let (app, ops_app) = match ops {
        Some(ops) => (
            app.merge(serve::probes(probes.clone())),
            Some((ops, ops::router(probes))),
        ),
        None => (app.merge(ops::router(probes)), None),
    };
    tokio::spawn(tenants.clone().watch(
        Duration::from_secs(config.tenants_reload_secs.max(1)),
        shutdown.clone(),
    ));
    tokio::spawn(apply_tenant_changes(tenants, state.clone()));
    let limits = config.limits();
    tracing::info!(addr = %listener.local_addr().map_err(server::ServeError::from)?, "ingest listening");
    let public = serve::serve(listener, app, limits, shutdown.clone());
    match ops_app {
        Some((ops, ops_app)) => {
            tracing::info!(addr = %ops.local_addr().map_err(server::ServeError::from)?, "ingest ops listening");
            tokio::try_join!(public, serve::serve(ops, ops_app, limits, shutdown))
                .map_err(server::ServeError::from)?;
        }
        None => public.await.map_err(server::ServeError::from)?,
    }
    Ok(())
}

/// Puts new tenants in force as the files change (a rotated secret or an onboarded tenant
/// needs no restart).
async fn apply_tenant_changes(tenants: LiveTenants, state: Arc<webhooks::AppState>) {
    let mut changes = tenants.changes();
    while changes.changed().await.is_ok() {
        state.apply_tenants();
    }
}

/// How long the server is given to answer the probe sent when an ack did not come in time
/// ([`nats::Liveness`]): a live server answers in well under a millisecond, so a second is slack
/// for a loaded machine, and leaves most of the publish retry budget to a new connection.
const LIVENESS_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a publish JetStream cannot take yet is tried again: INGEST_PUBLISH_RETRY_MS, cut so
/// that the last publish (INGEST_PUBLISH_TIMEOUT_MS) still ends, with half a second to answer,
/// inside INGEST_REQUEST_TIMEOUT_MS: the sender gets a 503 it will retry, never a 408 for a
/// webhook that may have been stored.
fn publish_retry(config: &Config) -> Duration {
    let wanted = Duration::from_millis(config.publish_retry_ms);
    let room = Duration::from_millis(config.request_timeout_ms).saturating_sub(
        Duration::from_millis(config.publish_timeout_ms) + Duration::from_millis(500),
    );
    if wanted > room {
        tracing::warn!(
            wanted_ms = config.publish_retry_ms,
            used_ms = room.as_millis(),
            "INGEST_PUBLISH_RETRY_MS cut to fit INGEST_REQUEST_TIMEOUT_MS"
        );
    }
    wanted.min(room)
}
