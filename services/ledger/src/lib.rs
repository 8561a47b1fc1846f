//! ledger: turns booking events into immutable, hash-chained financial records with a full audit
//! trail, and serves them over gRPC (`billing.ledger.v1.LedgerService`).
//!
//! # Layout
//!
//! An event's way in, the records, then what guards and serves them:
//!
//! - `consumer`: the durable JetStream consumers (webhooks in batches; ingest's refusals).
//! - `incoming`: a webhook message decoded into a booking to record, or why it cannot be one.
//! - `simplybook`: SimplyBook's JSON-RPC client (sign-in, one booking, a month's listing).
//! - `batch`: a batch in one transaction: load, plan (pure: every money and order rule), write.
//! - `clients`: clients' personal details, sealed under a key per client; shown, erased,
//!   re-wrapped.
//! - `outcome`: what an event did (applied how, or rejected why); a leaf every module may use.
//! - `store`: the tables by aggregate: bookings, chain, audit, reconciliations, alerts.
//! - `integrity`: verifying a tenant's hash chain from its records, head and latest anchor.
//! - `anchors`: each chain's head published on the LEDGER stream, outside the database.
//! - `rekey`: the one-off re-keying of unkeyed chains when a chain key is first set.
//! - `reconcile`: a tenant's month compared with SimplyBook's, gaps repaired via the stream.
//! - `deposits`: deposits received (a tenant's export) matched to bookings; a month's deposits.
//! - `golive`: the go-live check of a tenant's SimplyBook account, call by call.
//! - `dlq`: every service's dead letters, listed and replayed.
//! - `grpc`: `LedgerService`, over the store, the checks, the dead letters and reconciliation.
//! - `metrics`: the HELP text and unit of every metric the ledger emits.
#![forbid(unsafe_code)]

mod anchors;
mod batch;
mod clients;
mod consumer;
mod deposits;
mod dlq;
mod golive;
mod grpc;
mod incoming;
mod integrity;
mod metrics;
mod outcome;
mod reconcile;
mod rekey;
mod simplybook;
mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use billing_domain::Secret;
use billing_domain::hash::ChainKey;
use billing_proto::ledger::ledger_service_server::{LedgerServiceServer, SERVICE_NAME};
use billing_runtime::auth::{Policy, Tokens};
use billing_runtime::tenants::LiveTenants;
use billing_runtime::{Probes, Shutdown, Subjects, db, nats, server};
use tokio::net::TcpListener;

/// The PostgreSQL schema this service owns.
pub const SCHEMA: &str = "ledger";
/// What the runtime role `ledger_runtime` may do (see `billing_runtime::db::grant_runtime`).
const GRANTS: &str = include_str!("grants.sql");

billing_runtime::nats_identity_settings!(LedgerNats, "LEDGER");

/// ledger's configuration, from flags or `LEDGER_*` environment variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "ledger",
    version,
    about = "Records bookings and serves them over gRPC"
)]
pub struct Config {
    /// Address for gRPC and the ops endpoints.
    #[arg(long, env = "LEDGER_LISTEN_ADDR", default_value = "0.0.0.0:8081")]
    pub listen_addr: SocketAddr,
    /// PostgreSQL URL; the service works in its own `ledger` schema.
    #[arg(
        long,
        env = "LEDGER_DATABASE_URL",
        hide_env_values = true,
        value_parser = billing_runtime::config::UrlParser
    )]
    pub database_url: String,
    /// Apply this service's database migrations, then exit (a deploy's migration step).
    #[arg(long, env = "LEDGER_MIGRATE_ONLY")]
    pub migrate_only: bool,
    /// Re-key every intact unkeyed hash chain with LEDGER_CHAIN_KEY_FILE's key, then exit: once,
    /// when the key is first set, with the ledger stopped, after `billingctl bookings verify`
    /// reported every chain intact. Needs the schema's owner. Never run automatically, since a
    /// history rewritten and re-chained without the key would verify unkeyed and be re-keyed.
    #[arg(long)]
    pub rekey_chains: bool,
    /// Connections in the pool.
    #[arg(long, env = "LEDGER_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// NATS server with JetStream; on a cluster, several seed URLs separated by commas.
    #[arg(
        long,
        env = "LEDGER_NATS_URL",
        hide_env_values = true,
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// Prefix for subjects and streams; empty in production.
    #[arg(long, env = "LEDGER_NATS_NAMESPACE", default_value = "")]
    pub nats_namespace: String,
    /// This service's identity on NATS (user and password file, creds or nkey seed file).
    #[command(flatten)]
    pub nats_identity: LedgerNats,
    /// JSON file with the tenants (currency, rates, time zone).
    #[arg(long, env = "LEDGER_TENANTS_FILE")]
    pub tenants_file: PathBuf,
    /// The ledger's secrets (each tenant's SimplyBook API key, secret key and admin user) in a
    /// file of their own, merged into the tenants file; optional.
    #[arg(long, env = "LEDGER_TENANT_SECRETS_FILE")]
    pub tenant_secrets_file: Option<PathBuf>,
    /// How often the tenant files are looked at; a changed file is in force without a restart.
    #[arg(long, env = "LEDGER_TENANTS_RELOAD_SECS", default_value_t = 10)]
    pub tenants_reload_secs: u64,
    /// How long an event for a tenant the ledger's files do not name is retried (its files may
    /// reach this replica after ingest's) before it is dead-lettered as unknown_tenant.
    #[arg(long, env = "LEDGER_UNKNOWN_TENANT_GRACE_SECS", default_value_t = 600)]
    pub unknown_tenant_grace_secs: u64,
    /// SimplyBook.me's login API, where each company's API domain is asked (`getServiceUrl`);
    /// a bare host it answers is called with this URL's scheme.
    #[arg(
        long,
        env = "LEDGER_SIMPLYBOOK_URL",
        hide_env_values = true,
        default_value = "https://user-api.simplybook.me"
    )]
    pub simplybook_url: String,
    /// Domains a company's SimplyBook API may be on (the host or any subdomain of it), comma
    /// separated: the tenant's API key and admin password are sent there.
    #[arg(
        long,
        env = "LEDGER_SIMPLYBOOK_API_HOSTS",
        default_value = "simplybook.me,simplybook.it,simplybook.asia,simplybook.net,simplybook.us",
        value_delimiter = ','
    )]
    pub simplybook_api_hosts: Vec<String>,
    /// Rows asked of SimplyBook's `getBookings` at once while reconciling; a day with more
    /// bookings than this cannot be listed (the run says so).
    #[arg(long, env = "LEDGER_SIMPLYBOOK_PAGE_SIZE", default_value_t = 500)]
    pub simplybook_page_size: u32,
    /// SimplyBook lookups one tenant's callbacks may cause per second on this replica (0: no
    /// limit); over it, callbacks wait and are delivered again.
    #[arg(long, env = "LEDGER_SIMPLYBOOK_LOOKUPS_PER_SEC", default_value_t = 20)]
    pub simplybook_lookups_per_sec: u32,
    /// Lookups one tenant's callbacks may cause at once.
    #[arg(long, env = "LEDGER_SIMPLYBOOK_LOOKUP_BURST", default_value_t = 200)]
    pub simplybook_lookup_burst: u32,
    /// Per-request timeout for SimplyBook's API.
    #[arg(long, env = "LEDGER_SIMPLYBOOK_TIMEOUT_MS", default_value_t = 5000)]
    pub simplybook_timeout_ms: u64,
    /// File holding the hash chain's key (at least 32 bytes; a trailing newline is ignored):
    /// every record's hash becomes HMAC-SHA256 with it, so a record written without the key
    /// fails VerifyIntegrity. The database never holds it. Setting it for the first time,
    /// `--migrate-only` re-keys every intact chain (and refuses one that is not).
    #[arg(long, env = "LEDGER_CHAIN_KEY_FILE")]
    pub chain_key_file: Option<PathBuf>,
    /// JSON keyring the clients' personal details are encrypted with (key-encryption keys and
    /// the identity key; see docs/privacy.md). Without it the ledger keeps no client details.
    /// Details stored in plaintext by an older ledger are sealed in place at start-up.
    #[arg(long, env = "LEDGER_CLIENT_KEYRING_FILE")]
    pub client_keyring_file: Option<PathBuf>,
    /// Dead letters of the ledger's consumers older than this many hours lose the personal data
    /// in their bodies (they stay readable and replayable); 0: never.
    #[arg(long, env = "LEDGER_DEAD_LETTER_SCRUB_HOURS", default_value_t = 720)]
    pub dead_letter_scrub_hours: u64,
    /// How often each tenant's hash-chain head is anchored on the LEDGER stream (when it moved,
    /// and daily), so a rewrite behind the database's triggers is detected.
    #[arg(long, env = "LEDGER_ANCHOR_EVERY_SECS", default_value_t = 300)]
    pub anchor_every_secs: u64,
    /// Messages pulled from JetStream per batch.
    #[arg(long, env = "LEDGER_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: usize,
    /// Who may call the gRPC API: `role:token` entries (roles admin, billing, viewer) separated
    /// by commas or whitespace. Required to serve.
    #[arg(
        long,
        env = "LEDGER_GRPC_TOKENS",
        value_parser = billing_runtime::config::SecretParser,
        hide_env_values = true,
        required_unless_present_any = ["migrate_only", "rekey_chains"]
    )]
    pub grpc_tokens: Option<Secret<String>>,
}
/// Applies this service's migrations to its schema and returns: what `--migrate-only` runs.
pub async fn migrate(database_url: &str) -> Result<(), Error> {
    let pool = db::connect(database_url, SCHEMA, 1).await?;
    db::migrate(&pool, sqlx::migrate!("../../migrations/ledger"), SCHEMA).await?;
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
    #[error("migrating the ledger schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("connecting to nats: {0}")]
    Nats(#[from] async_nats::ConnectError),
    #[error("creating jetstream streams: {0}")]
    Streams(#[from] async_nats::jetstream::context::CreateStreamError),
    #[error("building the SimplyBook client: {0}")]
    SimplyBook(#[from] reqwest::Error),
    #[error("creating the jetstream consumer: {0}")]
    Consumer(String),
    #[error(transparent)]
    Serve(#[from] server::ServeError),
    #[error(transparent)]
    Token(#[from] billing_runtime::auth::TokensError),
    #[error("LEDGER_CHAIN_KEY_FILE: {0}")]
    ChainKey(String),
    #[error("LEDGER_CLIENT_KEYRING_FILE: {0}")]
    Keyring(String),
    #[error("sealing client details stored in plaintext: {0}")]
    SealPlaintext(#[from] clients::ClientDataError),
    #[error(transparent)]
    Rekey(#[from] rekey::RekeyError),
}

/// Re-keys the intact unkeyed chains with the key in `chain_key_file` (`--rekey-chains`);
/// returns the tenants re-keyed.
pub async fn rekey(
    database_url: &str,
    chain_key_file: Option<&Path>,
) -> Result<Vec<String>, Error> {
    let key = chain_key(chain_key_file)?
        .ok_or_else(|| Error::ChainKey("--rekey-chains needs the key".into()))?;
    // Two connections: re-keying reads a chain while it holds the chain's head.
    let pool = db::connect(database_url, SCHEMA, 2).await?;
    let rekeyed = rekey::rekey_chains(&pool, &key).await?;
    pool.close().await;
    tracing::info!(tenants = ?rekeyed, "hash chains re-keyed");
    Ok(rekeyed)
}

/// With a chain key, a chain whose head was hashed without it must be re-keyed before the ledger
/// appends to it (`--rekey-chains`): keyed records after unkeyed ones would make the chain fail
/// verification for good. A head that verifies neither way is left to VerifyIntegrity.
async fn refuse_unkeyed_chains(store: &store::Store) -> Result<(), Error> {
    let Some(key) = store.chain_key() else {
        return Ok(());
    };
    for (tenant, last_seq, _) in store.chain_heads().await? {
        // The head record alone: its hash tells which way the chain is hashed.
        let (records, _) = store.chain_from(&tenant, last_seq).await?;
        let Some(head) = records.last() else { continue };
        let keyed = head.expected_hash(&tenant, &head.prev_hash, Some(key));
        let unkeyed = head.expected_hash(&tenant, &head.prev_hash, None);
        if keyed.as_deref() != Some(head.record_hash.as_str())
            && unkeyed.as_deref() == Some(head.record_hash.as_str())
        {
            return Err(Error::ChainKey(format!(
                "tenant {tenant}'s hash chain is not keyed yet: stop the ledger and run \
                 ledger --rekey-chains"
            )));
        }
    }
    Ok(())
}

/// The chain key from its file, if one is configured.
fn chain_key(path: Option<&Path>) -> Result<Option<ChainKey>, Error> {
    let Some(path) = path else { return Ok(None) };
    let mut bytes = std::fs::read(path)
        .map_err(|e| Error::ChainKey(format!("reading {}: {e}", path.display())))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    ChainKey::new(bytes)
        .map(Some)
        .map_err(|e| Error::ChainKey(e.to_string()))
}

/// Runs the consumer and the gRPC server until `shutdown` is cancelled.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    // The metrics recorder first: anything counted before it exists would be lost.
    billing_runtime::ops::prometheus();
    metrics::describe();
    let tokens = Tokens::from_setting(config.grpc_tokens.as_ref(), "LEDGER_GRPC_TOKENS")?;
    let tenants = LiveTenants::load(
        "ledger",
        &config.tenants_file,
        config.tenant_secrets_file.as_deref(),
    )?;
    for tenant in tenants.current().missing_simplybook_api() {
        tracing::warn!(
            tenant = %tenant,
            "tenant has a SimplyBook company but no simplybook_api_key and simplybook_secret_key: its callbacks cannot be confirmed"
        );
    }
    let pool = db::connect(&config.database_url, SCHEMA, config.db_max_connections).await?;
    db::migrate(&pool, sqlx::migrate!("../../migrations/ledger"), SCHEMA).await?;
    db::grant_runtime(&pool, SCHEMA, GRANTS).await?;
    let client = config
        .nats_identity
        .connect(&config.nats_url, "ledger")
        .await?;
    let js = nats::jetstream(client.clone(), Duration::from_secs(5));
    let subjects = Subjects::new(&config.nats_namespace)
        .with_replicas(usize::from(config.nats_identity.stream_replicas));
    subjects.ensure_streams(&js).await?;
    let ready_streams = (js.clone(), subjects.stream_names());

    let vault = match &config.client_keyring_file {
        Some(path) => Some(clients::Vault::from_keyring_file(path).map_err(Error::Keyring)?),
        None => {
            tracing::warn!(
                "no LEDGER_CLIENT_KEYRING_FILE: clients' names, emails and phones are not kept"
            );
            None
        }
    };
    let store = store::Store::new(pool.clone(), subjects.clone())
        .with_chain_key(chain_key(config.chain_key_file.as_deref())?)
        .with_vault(vault.clone());
    refuse_unkeyed_chains(&store).await?;
    if let Some(vault) = &vault {
        let sealed = clients::manage::seal_plaintext(&pool, vault).await?;
        if sealed > 0 {
            tracing::info!(
                bookings = sealed,
                "client details stored in plaintext sealed in place"
            );
        }
    }
    let relay = billing_runtime::outbox::Relay::new(
        "ledger",
        pool.clone(),
        js.clone(),
        vec![subjects.booking_event(""), subjects.alert("")],
    );
    let relay_waker = relay.waker();
    let relay_task = tokio::spawn(relay.run(shutdown.clone()));
    let simplybook = Arc::new(simplybook::SimplyBook::new(simplybook::Settings {
        login_url: config.simplybook_url.clone(),
        api_hosts: config.simplybook_api_hosts.clone(),
        timeout: Duration::from_millis(config.simplybook_timeout_ms),
        attempts: 3,
        backoff: Duration::from_millis(200),
        page_size: config.simplybook_page_size,
        lookups_per_sec: config.simplybook_lookups_per_sec,
        lookup_burst: config.simplybook_lookup_burst,
    })?);
    let reconciler = reconcile::Reconciler::new(
        store.clone(),
        tenants.clone(),
        simplybook.clone(),
        reconcile::Repairs::new(js.clone(), subjects.clone()),
        relay_waker.clone(),
    );
    let dead_letters = dlq::DeadLetters::new(js.clone(), subjects.clone());
    let consumer = consumer::Consumer::create(
        js.clone(),
        subjects.clone(),
        tenants.clone(),
        simplybook,
        store.clone(),
        relay_waker,
        config.batch_size,
    )
    .await
    .map_err(|e| Error::Consumer(e.to_string()))?
    .with_unknown_tenant_grace(Duration::from_secs(config.unknown_tenant_grace_secs));
    let consumer_task = tokio::spawn(consumer.run(shutdown.clone()));
    if config.dead_letter_scrub_hours > 0 {
        tokio::spawn(nats::scrub::run(
            js.clone(),
            subjects.clone(),
            vec![
                consumer::CONSUMER.to_string(),
                consumer::REJECTIONS_CONSUMER.to_string(),
            ],
            Duration::from_secs(config.dead_letter_scrub_hours * 3600),
            shutdown.clone(),
        ));
    }
    // The series the alert rules read exist from the start, at 0 (a counter that first appears
    // at 1 shows no increase to Prometheus).
    for reason in outcome::REJECT_CODES {
        metrics::counter!("ledger_dead_letters_total", "reason" => reason).increment(0);
    }
    for kind in ["unavailable", "refused", "client_keys"] {
        metrics::counter!("ledger_db_write_failures_total", "kind" => kind).increment(0);
    }
    tokio::spawn(nats::report_consumers(
        js.clone(),
        [consumer::CONSUMER, consumer::REJECTIONS_CONSUMER]
            .map(|c| (subjects.stream_name("WEBHOOKS"), c.to_string()))
            .into(),
        shutdown.clone(),
    ));

    let covered = reconciler.clone();
    tokio::spawn(reconcile::report_gauges(
        store.clone(),
        move || covered.covered(),
        shutdown.clone(),
    ));
    tokio::spawn(tenants.clone().watch(
        Duration::from_secs(config.tenants_reload_secs.max(1)),
        shutdown.clone(),
    ));
    let anchors = anchors::Anchors::new(js.clone(), subjects.clone());
    tokio::spawn(anchors.clone().run(
        store.clone(),
        Duration::from_secs(config.anchor_every_secs.max(1)),
        shutdown.clone(),
    ));
    let grpc = grpc::LedgerGrpc::new(store, tenants, dead_letters, reconciler, anchors);
    let service = server::GrpcService {
        routes: tonic::service::Routes::new(LedgerServiceServer::new(grpc)),
        names: &[SERVICE_NAME],
        policy: Policy::new(tokens, grpc::ACCESS),
        probes: Probes {
            db: Some(pool),
            nats: Some(client),
            streams: Some(ready_streams),
        },
    };
    // Whatever stops the server, the consumers stop pulling and finish the batch in hand.
    let tasks = vec![("consumers", consumer_task), ("outbox relay", relay_task)];
    server::serve_until_shutdown("ledger", listener, service, shutdown, tasks).await?;
    Ok(())
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
            "ledger",
            &[
                ("--tenants-file", "tenants.json"),
                ("--grpc-tokens", TOKENS),
            ],
            &[
                ("--database-url", "postgres://billing:CHANGE-ME@db/billing"),
                ("--grpc-tokens", "admin:CHANGE-ME-CHANGE-ME-CHANGE-ME"),
            ],
            ("--database-url", "postgres://postgres@127.0.0.1:5432/test"),
        );
        assert_eq!(problems, Vec::<String>::new());
    }
}
