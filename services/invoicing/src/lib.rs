//! invoicing: the monthly close. Issues exactly one invoice per tenant and month from the
//! ledger's billable bookings, and announces it on JetStream through an outbox.
#![forbid(unsafe_code)]

mod close;
mod grpc;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use billing_domain::Tenants;
use billing_proto::invoicing::invoicing_service_server::{InvoicingServiceServer, SERVICE_NAME};
use billing_proto::ledger::ledger_service_client::LedgerServiceClient;
use billing_runtime::{Probes, Shutdown, Subjects, db, nats, ops, server};
use tokio::net::TcpListener;
use tonic::transport::Endpoint;

/// The PostgreSQL schema this service owns.
pub const SCHEMA: &str = "invoicing";

/// invoicing's configuration, from flags or `INVOICING_*` environment variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "invoicing",
    version,
    about = "Issues monthly invoices over gRPC"
)]
pub struct Config {
    /// Address for gRPC and the ops endpoints.
    #[arg(long, env = "INVOICING_LISTEN_ADDR", default_value = "0.0.0.0:8082")]
    pub listen_addr: SocketAddr,
    /// PostgreSQL URL; the service works in its own `invoicing` schema.
    #[arg(long, env = "INVOICING_DATABASE_URL")]
    pub database_url: String,
    /// Connections in the pool.
    #[arg(long, env = "INVOICING_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// NATS server with JetStream.
    #[arg(
        long,
        env = "INVOICING_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// Prefix for subjects and streams; empty in production.
    #[arg(long, env = "INVOICING_NATS_NAMESPACE", default_value = "")]
    pub nats_namespace: String,
    /// JSON file with the tenants (name, billing email, time zone, currency, terms).
    #[arg(long, env = "INVOICING_TENANTS_FILE")]
    pub tenants_file: PathBuf,
    /// The ledger's gRPC address.
    #[arg(
        long,
        env = "INVOICING_LEDGER_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub ledger_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tenants(#[from] billing_domain::tenant::TenantsError),
    #[error("connecting to postgresql: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrating the invoicing schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("connecting to nats: {0}")]
    Nats(#[from] async_nats::ConnectError),
    #[error("creating jetstream streams: {0}")]
    Streams(#[from] async_nats::jetstream::context::CreateStreamError),
    #[error("invalid ledger url: {0}")]
    LedgerUrl(#[from] tonic::transport::Error),
    #[error(transparent)]
    Serve(#[from] server::ServeError),
}

/// Runs the gRPC server and the outbox relay until `shutdown` is cancelled.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    let tenants = Arc::new(Tenants::load(&config.tenants_file)?);
    let pool = db::connect(&config.database_url, SCHEMA, config.db_max_connections).await?;
    db::migrate(&pool, sqlx::migrate!("../../migrations/invoicing"), SCHEMA).await?;
    let client = nats::connect(&config.nats_url, "invoicing").await?;
    let js = nats::jetstream(client.clone(), Duration::from_secs(5));
    let subjects = Subjects::new(&config.nats_namespace);
    subjects.ensure_streams(&js).await?;
    let ready_streams = (js.clone(), subjects.stream_names());

    let ledger = LedgerServiceClient::new(
        Endpoint::from_shared(config.ledger_url.clone())?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect_lazy(),
    );
    let store = store::Store::new(pool.clone());
    let relay = billing_runtime::outbox::Relay::new("invoicing", pool.clone(), js);
    let closer = close::MonthlyClose::new(store.clone(), ledger, subjects, relay.waker());
    let relay_task = tokio::spawn(relay.run(shutdown.clone()));

    let grpc = grpc::InvoicingGrpc::new(closer, store, tenants);
    let routes = tonic::service::Routes::new(InvoicingServiceServer::new(grpc));
    let app = server::grpc_router(routes, &[SERVICE_NAME])
        .await?
        .merge(ops::router(Probes {
            db: Some(pool),
            nats: Some(client),
            streams: Some(ready_streams),
        }));
    tracing::info!(addr = ?listener.local_addr().ok(), "invoicing listening");
    let served = server::serve(listener, app, shutdown.clone()).await;
    shutdown.cancel();
    if let Err(err) = relay_task.await {
        tracing::error!(error = %err, "outbox relay task failed");
    }
    served?;
    Ok(())
}
