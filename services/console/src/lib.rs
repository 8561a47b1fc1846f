//! console: the operators' web console. Server-rendered HTML (maud; no script, no build step)
//! over the same gRPC APIs billingctl uses, with the console's own token; operators sign in
//! with accounts from a file (argon2id hashes, a role each), sessions live in PostgreSQL (any
//! replica serves any request), and every write carries the operator's name
//! (`billing-operator`), which the services record beside the token's role.
//!
//! # Layout
//!
//! - `accounts`: the accounts file and password checks.
//! - `sessions`: sessions and the sign-in throttle per name, in the `console` schema.
//! - `throttle`: sign-ins per client address and in all, before any password is checked.
//! - `backend`: the gRPC clients, and a write made for an operator.
//! - `web`: routes, security headers, the signed-in operator, the checks of every POST.
//! - `pages`: one module a page (overview, invoices, dead letters, sign-in) and the frame.
//! - `format`: money and times as the pages show them.
//! - `metrics`: what each metric means.
//!
//! No cycles: `web` uses `pages`, and `pages` use `web`'s types (`Operator`, `Refusal`) only.
#![forbid(unsafe_code)]

pub mod accounts;
mod backend;
mod format;
mod metrics;
mod pages;
pub mod sessions;
mod throttle;
mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use billing_domain::Secret;
use billing_runtime::{Probes, Shutdown, db, server};
use tokio::net::TcpListener;

/// The PostgreSQL schema this service owns.
pub const SCHEMA: &str = "console";
/// What the runtime role `console_runtime` may do.
const GRANTS: &str = include_str!("grants.sql");

pub use web::{LOGIN_COOKIE, SESSION_COOKIE};

/// The console's configuration, from flags or `CONSOLE_*` environment variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "console", version, about = "The operators' web console")]
pub struct Config {
    /// Address for the console's pages and its ops endpoints. Serve it behind the cluster's
    /// ingress (TLS there): its cookies are Secure.
    #[arg(long, env = "CONSOLE_LISTEN_ADDR", default_value = "0.0.0.0:8084")]
    pub listen_addr: SocketAddr,
    /// PostgreSQL URL; sessions live in the `console` schema.
    #[arg(
        long,
        env = "CONSOLE_DATABASE_URL",
        hide_env_values = true,
        value_parser = billing_runtime::config::UrlParser
    )]
    pub database_url: String,
    /// Apply this service's database migrations, then exit (a deploy's migration step).
    #[arg(long, env = "CONSOLE_MIGRATE_ONLY")]
    pub migrate_only: bool,
    /// The ledger's gRPC address.
    #[arg(
        long,
        env = "CONSOLE_LEDGER_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8081"
    )]
    pub ledger_url: String,
    /// The invoicing service's gRPC address.
    #[arg(
        long,
        env = "CONSOLE_INVOICING_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8082"
    )]
    pub invoicing_url: String,
    /// The notifier's gRPC address.
    #[arg(
        long,
        env = "CONSOLE_NOTIFIER_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8083"
    )]
    pub notifier_url: String,
    /// The token the console calls the services with. Its role caps what any operator can do
    /// (admin lets admins replay dead letters; billing is enough for payments and voids); each
    /// operator's own role is enforced by the console.
    #[arg(
        long,
        env = "CONSOLE_TOKEN",
        value_parser = billing_runtime::config::SecretParser,
        hide_env_values = true,
        required_unless_present = "migrate_only"
    )]
    pub token: Option<Secret<String>>,
    /// The operator accounts: one `name role argon2id-hash` a line (docs/console.md).
    #[arg(
        long,
        env = "CONSOLE_ACCOUNTS_FILE",
        required_unless_present = "migrate_only"
    )]
    pub accounts_file: Option<PathBuf>,
    /// How long a session lasts after signing in.
    #[arg(long, env = "CONSOLE_SESSION_HOURS", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=168))]
    pub session_hours: u64,
    /// How long one call to a service may take.
    #[arg(long, env = "CONSOLE_CALL_TIMEOUT_SECS", default_value_t = 30)]
    pub call_timeout_secs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Accounts(#[from] accounts::AccountsError),
    #[error(transparent)]
    Backend(#[from] backend::BackendError),
    #[error("{0} is required to serve")]
    Missing(&'static str),
    #[error(transparent)]
    Serve(#[from] server::ServeError),
}

impl Error {
    /// A configuration mistake (exit 64), not a failure at run time.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Error::Accounts(_) | Error::Backend(_) | Error::Missing(_)
        )
    }
}

/// Applies the console's migrations and grants its runtime role (as the schema's owner).
pub async fn migrate(database_url: &str) -> Result<(), Error> {
    let pool = db::connect(database_url, SCHEMA, 2).await?;
    db::migrate(&pool, sqlx::migrate!("../../migrations/console"), SCHEMA).await?;
    db::grant_runtime(&pool, SCHEMA, GRANTS).await?;
    Ok(())
}

/// Serves the console on `listener` until `shutdown`.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    // The metrics recorder first: anything counted before it exists would be lost.
    billing_runtime::ops::prometheus();
    metrics::describe();
    let accounts = accounts::Accounts::read(
        config
            .accounts_file
            .as_deref()
            .ok_or(Error::Missing("CONSOLE_ACCOUNTS_FILE"))?,
    )?;
    let token = config
        .token
        .as_ref()
        .ok_or(Error::Missing("CONSOLE_TOKEN"))?;
    let backend = backend::Backend::new(
        &config.ledger_url,
        &config.invoicing_url,
        &config.notifier_url,
        token,
        Duration::from_secs(config.call_timeout_secs),
    )?;
    let pool = db::connect(&config.database_url, SCHEMA, 8).await?;
    db::migrate(&pool, sqlx::migrate!("../../migrations/console"), SCHEMA).await?;
    db::grant_runtime(&pool, SCHEMA, GRANTS).await?;
    let state = Arc::new(web::AppState {
        accounts: Arc::new(accounts),
        sessions: sessions::Sessions::new(
            pool.clone(),
            Duration::from_secs(config.session_hours * 3600),
        ),
        backend,
        sign_in_limits: throttle::SignInLimits::default(),
    });
    let probes = Probes {
        db: Some(pool),
        ..Probes::default()
    };
    let app = web::router(state)
        .merge(billing_runtime::ops::router(probes))
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "not found\n") });
    tracing::info!(addr = ?listener.local_addr().ok(), "console listening");
    // As `server::serve`, but telling each request its TCP peer: the sign-in limits count
    // per client address.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
    .map_err(server::ServeError::Io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn placeholder_secrets_refuse_to_start_without_being_echoed() {
        let token = "an-admin-token-long-enough-0123456789";
        let problems = billing_runtime::config::placeholder_refusals::<Config>(
            "console",
            &[("--token", token), ("--accounts-file", "/nonexistent")],
            &[
                ("--database-url", "postgres://billing:CHANGE-ME@db/billing"),
                ("--token", "console-token-CHANGE-ME"),
            ],
            ("--database-url", "postgres://postgres@127.0.0.1:5432/test"),
        );
        assert_eq!(problems, Vec::<String>::new());
    }

    #[test]
    fn help_shows_no_secret_and_the_token_is_required_to_serve() {
        Config::command().debug_assert();
        let shown = billing_runtime::config::env_values_shown_in_help(&Config::command());
        assert_eq!(shown, Vec::<String>::new());
    }
}
