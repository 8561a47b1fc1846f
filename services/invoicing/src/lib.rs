//! invoicing: tenant billing profiles and invoices. The monthly close issues exactly one
//! invoice per tenant and month from the ledger's bookings (by bank transfer or through
//! Stripe); payments, voids, the overdue sweep and Stripe's events move invoices through their
//! lifecycle; every change is announced on JetStream through an outbox.
//!
//! # Layout
//!
//! - `bank`: bank-statement transfers matched to invoices by number and recorded as payments.
//! - `close`: the monthly close; `close::ledger` asks the ledger, `close::plan` plans the lines.
//! - `consumer`: the JetStream consumers (booking changes become marks; Stripe's events).
//! - `gauges`: open and past-due invoice gauges, refreshed from the database.
//! - `grpc`: `InvoicingService`, its access rules and the proto conversions.
//! - `lifecycle`: payments, voids, the overdue sweep; `lifecycle::stripe_events`: Stripe's.
//! - `profile`: tenant billing profiles, managed over gRPC, seeded from the tenants file.
//! - `statement`: the month statement: the ledger's month, the invoice, their differences.
//! - `store`: the tables, one submodule per aggregate (see its docs), and the outbox.
//! - `stripe`: pushing invoices to Stripe; `stripe::{errors, find, limits}`.
//!
//! No cycles: `grpc` uses the others; `bank` and `consumer` use `lifecycle`; `lifecycle` and
//! `close` use `stripe`; `stripe` uses `profile` and `store`; `gauges` uses `store`; `statement` uses `store`, `profile` and `gauges`; `store` and
//! `profile` use no other module.
#![forbid(unsafe_code)]

mod bank;
mod close;
mod consumer;
mod gauges;
mod grpc;
mod lifecycle;
mod metrics;
mod profile;
mod statement;
mod store;
mod stripe;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use billing_domain::Secret;
use billing_proto::invoicing::invoicing_service_server::{InvoicingServiceServer, SERVICE_NAME};
use billing_proto::ledger::ledger_service_client::LedgerServiceClient;
use billing_runtime::auth::{Policy, Tokens};
use billing_runtime::tenants::LiveTenants;
use billing_runtime::{Probes, Shutdown, Subjects, db, nats, server, trace};
use tokio::net::TcpListener;
use tonic::transport::Endpoint;

/// The PostgreSQL schema this service owns.
pub const SCHEMA: &str = "invoicing";
/// What the runtime role `invoicing_runtime` may do (see `billing_runtime::db::grant_runtime`).
const GRANTS: &str = include_str!("grants.sql");

billing_runtime::nats_identity_settings!(InvoicingNats, "INVOICING");

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
    #[arg(
        long,
        env = "INVOICING_DATABASE_URL",
        hide_env_values = true,
        value_parser = billing_runtime::config::UrlParser
    )]
    pub database_url: String,
    /// Apply this service's database migrations, then exit (a deploy's migration step).
    #[arg(long, env = "INVOICING_MIGRATE_ONLY")]
    pub migrate_only: bool,
    /// Connections in the pool.
    #[arg(long, env = "INVOICING_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// NATS server with JetStream; on a cluster, several seed URLs separated by commas.
    #[arg(
        long,
        env = "INVOICING_NATS_URL",
        hide_env_values = true,
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// Prefix for subjects and streams; empty in production.
    #[arg(long, env = "INVOICING_NATS_NAMESPACE", default_value = "")]
    pub nats_namespace: String,
    /// This service's identity on NATS (user and password file, creds or nkey seed file).
    #[command(flatten)]
    pub nats_identity: InvoicingNats,
    /// JSON file of tenants: a billing profile is created for each tenant that has none
    /// (profiles are then managed over gRPC). Optional.
    #[arg(long, env = "INVOICING_TENANTS_FILE")]
    pub tenants_file: Option<PathBuf>,
    /// How often the tenants file is looked at; a tenant added to it gets its profile without a
    /// restart.
    #[arg(long, env = "INVOICING_TENANTS_RELOAD_SECS", default_value_t = 10)]
    pub tenants_reload_secs: u64,
    /// The operator's bank details, printed on bank-transfer invoices.
    #[arg(long, env = "INVOICING_BANK_DETAILS", default_value = "")]
    pub bank_details: String,
    /// Stripe secret key; needed only for tenants in Stripe mode.
    #[arg(
        long,
        env = "INVOICING_STRIPE_API_KEY",
        hide_env_values = true,
        value_parser = billing_runtime::config::SecretParser
    )]
    pub stripe_api_key: Option<Secret<String>>,
    /// Stripe's API base URL (a local fake in tests).
    #[arg(
        long,
        env = "INVOICING_STRIPE_API_BASE",
        default_value = "https://api.stripe.com"
    )]
    pub stripe_api_base: String,
    /// Per-request timeout for Stripe calls.
    #[arg(long, env = "INVOICING_STRIPE_TIMEOUT_MS", default_value_t = 10_000)]
    pub stripe_timeout_ms: u64,
    /// Dead letters of Stripe events older than this many hours lose the personal data in their
    /// bodies (they stay readable and replayable); 0: never.
    #[arg(long, env = "INVOICING_DEAD_LETTER_SCRUB_HOURS", default_value_t = 720)]
    pub dead_letter_scrub_hours: u64,
    /// The ledger's gRPC address.
    #[arg(
        long,
        env = "INVOICING_LEDGER_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8081"
    )]
    pub ledger_url: String,
    /// The token invoicing calls the ledger with (a `viewer` token is enough).
    #[arg(
        long,
        env = "INVOICING_LEDGER_TOKEN",
        value_parser = billing_runtime::config::SecretParser,
        hide_env_values = true,
        required_unless_present = "migrate_only"
    )]
    pub ledger_token: Option<Secret<String>>,
    /// Who may call the gRPC API: `role:token` entries (roles admin, billing, viewer) separated
    /// by commas or whitespace. Required to serve.
    #[arg(
        long,
        env = "INVOICING_GRPC_TOKENS",
        value_parser = billing_runtime::config::SecretParser,
        hide_env_values = true,
        required_unless_present = "migrate_only"
    )]
    pub grpc_tokens: Option<Secret<String>>,
}
/// Applies this service's migrations to its schema and returns: what `--migrate-only` runs.
pub async fn migrate(database_url: &str) -> Result<(), Error> {
    let pool = db::connect(database_url, SCHEMA, 1).await?;
    db::migrate(&pool, sqlx::migrate!("../../migrations/invoicing"), SCHEMA).await?;
    db::grant_runtime(&pool, SCHEMA, GRANTS).await?;
    pool.close().await;
    Ok(())
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
    #[error("stripe client: {0}")]
    Stripe(#[from] ::stripe::StripeError),
    #[error("starting the consumers: {0}")]
    Consumers(async_nats::Error),
    #[error("invalid ledger url: {0}")]
    LedgerUrl(#[from] tonic::transport::Error),
    #[error(transparent)]
    Serve(#[from] server::ServeError),
    #[error("{0} is required to serve")]
    Missing(&'static str),
    #[error(transparent)]
    Token(#[from] billing_runtime::auth::TokensError),
}

/// Runs the gRPC server and the outbox relay until `shutdown` is cancelled.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    // The metrics recorder first: anything counted before it exists would be lost.
    billing_runtime::ops::prometheus();
    metrics::describe();
    let tokens = Tokens::from_setting(config.grpc_tokens.as_ref(), "INVOICING_GRPC_TOKENS")?;
    let ledger_token = config
        .ledger_token
        .as_ref()
        .ok_or(Error::Missing("INVOICING_LEDGER_TOKEN"))?;
    let tenants = config
        .tenants_file
        .as_deref()
        .map(|path| LiveTenants::load("invoicing", path, None))
        .transpose()?;
    let pool = db::connect(&config.database_url, SCHEMA, config.db_max_connections).await?;
    db::migrate(&pool, sqlx::migrate!("../../migrations/invoicing"), SCHEMA).await?;
    db::grant_runtime(&pool, SCHEMA, GRANTS).await?;
    let profiles = profile::Profiles::new(pool.clone());
    if let Some(tenants) = &tenants {
        let created = profiles.seed(&tenants.current()).await?;
        tracing::info!(created, "billing profiles seeded from the tenants file");
        tokio::spawn(tenants.clone().watch(
            Duration::from_secs(config.tenants_reload_secs.max(1)),
            shutdown.clone(),
        ));
        tokio::spawn(seed_new_tenants(tenants.clone(), profiles.clone()));
    }
    let client = config
        .nats_identity
        .connect(&config.nats_url, "invoicing")
        .await?;
    let js = nats::jetstream(client.clone(), Duration::from_secs(5));
    let subjects = Subjects::new(&config.nats_namespace)
        .with_replicas(usize::from(config.nats_identity.stream_replicas));
    subjects.ensure_streams(&js).await?;
    let ready_streams = (js.clone(), subjects.stream_names());

    let ledger = LedgerServiceClient::new(trace::traced(
        Endpoint::from_shared(config.ledger_url.clone())?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .connect_lazy(),
        ledger_token,
    )?)
    // A month of a busy tenant (100,000 bookings) is ~30 MB of bookings.
    .max_decoding_message_size(LEDGER_MAX_MESSAGE);
    let store = store::Store::new(pool.clone(), subjects.clone());
    let stripe = config
        .stripe_api_key
        .as_ref()
        .map(|key| {
            stripe::StripeBilling::new(
                &config.stripe_api_base,
                key,
                Duration::from_millis(config.stripe_timeout_ms),
                store.clone(),
                profiles.clone(),
            )
        })
        .transpose()?;
    let relay = billing_runtime::outbox::Relay::new(
        "invoicing",
        pool.clone(),
        js.clone(),
        vec![subjects.invoice(""), subjects.alert("")],
    );
    let closer = close::MonthlyClose::new(
        store.clone(),
        ledger,
        stripe.clone(),
        &config.bank_details,
        relay.waker(),
    );
    let lifecycle = lifecycle::Lifecycle::new(store.clone(), stripe, relay.waker());
    let relay_task = tokio::spawn(relay.run(shutdown.clone()));
    tokio::spawn(gauges::report(pool.clone(), shutdown.clone()));
    // The series the alert rules read exist from the start, at 0 (a counter that first appears
    // at 1 shows no increase to Prometheus).
    metrics::counter!("invoicing_close_outcomes_total", "outcome" => "failed").increment(0);
    for consumer in [consumer::BOOKINGS_CONSUMER, consumer::STRIPE_CONSUMER] {
        metrics::counter!("invoicing_dead_letters_total", "consumer" => consumer).increment(0);
    }
    let consumers = consumer::Consumers::create(&js, &subjects)
        .await
        .map_err(Error::Consumers)?;
    if config.dead_letter_scrub_hours > 0 {
        tokio::spawn(nats::scrub::run(
            js.clone(),
            subjects.clone(),
            vec![consumer::STRIPE_CONSUMER.to_string()],
            Duration::from_secs(config.dead_letter_scrub_hours * 3600),
            shutdown.clone(),
        ));
    }
    tokio::spawn(nats::report_consumers(
        js.clone(),
        vec![
            (
                subjects.stream_name("LEDGER"),
                consumer::BOOKINGS_CONSUMER.to_string(),
            ),
            (
                subjects.stream_name("WEBHOOKS"),
                consumer::STRIPE_CONSUMER.to_string(),
            ),
        ],
        shutdown.clone(),
    ));
    let consumers = tokio::spawn(consumers.run(
        js,
        subjects,
        store.clone(),
        lifecycle.clone(),
        shutdown.clone(),
    ));

    let grpc = grpc::InvoicingGrpc::new(closer, lifecycle, store, profiles);
    let service = server::GrpcService {
        routes: tonic::service::Routes::new(InvoicingServiceServer::new(grpc)),
        names: &[SERVICE_NAME],
        policy: Policy::new(tokens, grpc::ACCESS),
        probes: Probes {
            db: Some(pool),
            nats: Some(client),
            streams: Some(ready_streams),
        },
    };
    let tasks = vec![("outbox relay", relay_task), ("consumers", consumers)];
    server::serve_until_shutdown("invoicing", listener, service, shutdown, tasks).await?;
    Ok(())
}

const LEDGER_MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// Creates the profiles of tenants added to the tenants file since start-up, so an onboarded
/// tenant is invoiced at the next month end without a restart. A failed attempt (database
/// unavailable) is tried again every few seconds until it succeeds.
async fn seed_new_tenants(tenants: LiveTenants, profiles: profile::Profiles) {
    let mut changes = tenants.changes();
    while changes.changed().await.is_ok() {
        while let Err(err) = profiles.seed(&tenants.current()).await {
            tracing::error!(error = %err, "seeding billing profiles from the changed tenants file failed; trying again");
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        tracing::info!("billing profiles seeded from the changed tenants file");
    }
}

#[cfg(test)]
mod config_tests {
    use billing_runtime::config::{env_values_shown_in_help, placeholder_refusals};
    use clap::CommandFactory;

    use super::Config;

    const TOKENS: &str = "admin:an-admin-token-long-enough-0123456789";

    #[test]
    fn help_never_prints_a_secret_from_the_environment() {
        assert_eq!(
            env_values_shown_in_help(&Config::command()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn placeholder_secrets_refuse_to_start_without_being_echoed() {
        let problems = placeholder_refusals::<Config>(
            "invoicing",
            &[("--ledger-token", TOKENS), ("--grpc-tokens", TOKENS)],
            &[
                ("--database-url", "postgres://billing:CHANGE-ME@db/billing"),
                ("--stripe-api-key", "sk_test_CHANGE-ME"),
                ("--ledger-token", "ledger-token-CHANGE-ME"),
            ],
            ("--database-url", "postgres://postgres@127.0.0.1:5432/test"),
        );
        assert_eq!(problems, Vec::<String>::new());
    }
}
