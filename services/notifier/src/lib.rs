//! notifier: turns invoice events and operator alerts into emails. Renders invoice PDFs, sends
//! them over SMTP to the tenant's billing address, and records each delivery so that every
//! logical email goes out once. Serves the PDFs on demand over gRPC.
//!
//! # Layout
//!
//! - `consumer`: the two JetStream consumers (invoice events, operator alerts): what email an
//!   event asks for, and what becomes of the event.
//! - `deliveries`: the table that makes each logical email go out once.
//! - `mail`: what each email says, and the SMTP transport.
//! - `pdf`: the invoice PDF (krilla, embedded fonts); `pdf::fonts`, the faces text is drawn
//!   with (DejaVu Sans, then the fallback fonts for the scripts it lacks) and measured in.
//! - `text`: how amounts, rates and dates read in PDFs and emails.
//! - `grpc`: `NotifierService` (PDFs on demand, deliveries) and its access rules.
//! - `metrics`: what each metric means.
//!
//! No cycles: `grpc` uses `consumer`; `consumer` uses `deliveries`, `mail` and `pdf`;
//! `deliveries` uses `mail`; `mail` and `pdf` use `text`.
#![forbid(unsafe_code)]

mod consumer;
pub mod deliveries;
mod grpc;
pub mod mail;
mod metrics;
pub mod pdf;
mod text;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use billing_domain::Secret;
use billing_proto::invoicing::invoicing_service_client::InvoicingServiceClient;
use billing_proto::notifier::notifier_service_server::NotifierServiceServer;
use billing_runtime::auth::{Policy, Tokens};
use billing_runtime::{Probes, Shutdown, Subjects, db, nats, server, trace};
use lettre::message::Mailbox;
use tokio::net::TcpListener;
use tonic::transport::Endpoint;

/// The PostgreSQL schema this service owns.
pub const SCHEMA: &str = "notifier";
/// What the runtime role `notifier_runtime` may do (see `billing_runtime::db::grant_runtime`).
const GRANTS: &str = include_str!("grants.sql");
/// The gRPC service name (for health checks).
pub const SERVICE_NAME: &str = "billing.notifier.v1.NotifierService";

billing_runtime::nats_identity_settings!(NotifierNats, "NOTIFIER");

/// notifier's configuration, from flags or `NOTIFIER_*` environment variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "notifier", version, about = "Emails invoice PDFs")]
pub struct Config {
    /// Address for gRPC and the ops endpoints.
    #[arg(long, env = "NOTIFIER_LISTEN_ADDR", default_value = "0.0.0.0:8083")]
    pub listen_addr: SocketAddr,
    /// PostgreSQL URL; the service works in its own `notifier` schema.
    #[arg(
        long,
        env = "NOTIFIER_DATABASE_URL",
        hide_env_values = true,
        value_parser = billing_runtime::config::UrlParser
    )]
    pub database_url: String,
    /// Apply this service's database migrations, then exit (a deploy's migration step).
    #[arg(long, env = "NOTIFIER_MIGRATE_ONLY")]
    pub migrate_only: bool,
    /// NATS server with JetStream; on a cluster, several seed URLs separated by commas.
    #[arg(
        long,
        env = "NOTIFIER_NATS_URL",
        hide_env_values = true,
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// Prefix for subjects and streams; empty in production.
    #[arg(long, env = "NOTIFIER_NATS_NAMESPACE", default_value = "")]
    pub nats_namespace: String,
    /// This service's identity on NATS (user and password file, creds or nkey seed file).
    #[command(flatten)]
    pub nats_identity: NotifierNats,
    /// The invoicing service's gRPC address.
    #[arg(
        long,
        env = "NOTIFIER_INVOICING_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8082"
    )]
    pub invoicing_url: String,
    /// The token the notifier calls invoicing with (a `viewer` token is enough).
    #[arg(
        long,
        env = "NOTIFIER_INVOICING_TOKEN",
        value_parser = billing_runtime::config::SecretParser,
        hide_env_values = true,
        required_unless_present = "migrate_only"
    )]
    pub invoicing_token: Option<Secret<String>>,
    /// Who may call the gRPC API: `role:token` entries (roles admin, billing, viewer) separated
    /// by commas or whitespace. Required to serve.
    #[arg(
        long,
        env = "NOTIFIER_GRPC_TOKENS",
        value_parser = billing_runtime::config::SecretParser,
        hide_env_values = true,
        required_unless_present = "migrate_only"
    )]
    pub grpc_tokens: Option<Secret<String>>,
    /// SMTP server host.
    #[arg(long, env = "NOTIFIER_SMTP_HOST", default_value = "127.0.0.1")]
    pub smtp_host: String,
    /// SMTP server port.
    #[arg(long, env = "NOTIFIER_SMTP_PORT", default_value_t = 25)]
    pub smtp_port: u16,
    /// Transport security towards the SMTP server.
    #[arg(long, env = "NOTIFIER_SMTP_TLS", value_enum, default_value = "none")]
    pub smtp_tls: mail::SmtpTls,
    /// SMTP user name (optional).
    #[arg(long, env = "NOTIFIER_SMTP_USERNAME")]
    pub smtp_username: Option<String>,
    /// SMTP password (optional; never logged).
    #[arg(
        long,
        env = "NOTIFIER_SMTP_PASSWORD",
        hide_env_values = true,
        value_parser = billing_runtime::config::SecretParser
    )]
    pub smtp_password: Option<Secret<String>>,
    /// CA certificate(s) to trust for the SMTP server (PEM), besides the public roots: an
    /// internal relay's private CA. Only with starttls or tls.
    #[arg(long, env = "NOTIFIER_SMTP_TLS_CA_FILE")]
    pub smtp_tls_ca_file: Option<std::path::PathBuf>,
    /// Sender of every email, e.g. `Billing <billing@example.com>`; also printed on invoices.
    #[arg(
        long,
        env = "NOTIFIER_FROM",
        default_value = "Platform Billing <billing@example.com>"
    )]
    pub from: Mailbox,
    /// Where operator alerts go; default: the sender's address.
    #[arg(long, env = "NOTIFIER_OPERATOR_EMAIL")]
    pub operator_email: Option<Mailbox>,
    /// The operator's legal name, printed on invoices; default: the sender's display name.
    #[arg(long, env = "NOTIFIER_OPERATOR_NAME")]
    pub operator_name: Option<String>,
    /// The operator's postal address on invoices; `\n` or `;` separates lines.
    #[arg(long, env = "NOTIFIER_OPERATOR_ADDRESS", default_value = "")]
    pub operator_address: String,
    /// The operator's tax registration printed on invoices, e.g. `ABN 00 000 000 000`.
    #[arg(long, env = "NOTIFIER_OPERATOR_TAX_ID", default_value = "")]
    pub operator_tax_id: String,
    /// Fonts for what DejaVu Sans lacks (Japanese, Chinese, Korean), tried in order: files
    /// separated by commas, each `path` or `path#index` (a face of a collection, .ttc); `none`
    /// for no fallback. Default: Debian's fonts-noto-cjk (Noto Sans CJK JP, regular and bold)
    /// where installed. A file that cannot be loaded stops the notifier at start.
    #[arg(long, env = "NOTIFIER_FALLBACK_FONTS")]
    pub fallback_fonts: Option<pdf::FallbackFonts>,
}

impl Config {
    /// The operator as printed at the top of every invoice.
    pub fn issuer(&self) -> pdf::Issuer {
        pdf::Issuer {
            legal_name: self
                .operator_name
                .clone()
                .or_else(|| self.from.name.clone())
                .unwrap_or_else(|| self.from.email.to_string()),
            address: self.operator_address.replace(';', "\n"),
            tax_id: self.operator_tax_id.clone(),
            email: self.from.email.to_string(),
        }
    }

    /// The fallback fonts to load: as configured, or Debian's Noto Sans CJK where installed.
    pub fn fallback_font_files(&self) -> pdf::FallbackFonts {
        self.fallback_fonts
            .clone()
            .unwrap_or_else(pdf::FallbackFonts::debian)
    }
}

/// Loads the invoice fonts and says once which scripts invoices cannot print (script names
/// only, never a name printed with them).
fn load_fonts(config: &Config) -> Result<pdf::Fonts, pdf::FontError> {
    let files = config.fallback_font_files();
    // Read at start-up, before anything connects: tens of megabytes, once per process.
    let fonts = pdf::Fonts::load(&files)?;
    let loaded: Vec<String> = files
        .0
        .iter()
        .zip(fonts.fallback_names())
        .map(|(file, name)| format!("{name} ({file})"))
        .collect();
    tracing::info!(
        fallbacks = %if loaded.is_empty() { "none".to_string() } else { loaded.join(", ") },
        "invoice pdf fonts: dejavu sans, then the fallbacks for what it lacks"
    );
    let missing = fonts.missing_scripts();
    if !missing.is_empty() {
        tracing::warn!(
            scripts = %missing.join(", "),
            "invoice pdfs print these scripts as missing glyphs (boxes): no font has them; \
             NOTIFIER_FALLBACK_FONTS adds fonts (docs/configuration.md)"
        );
    }
    Ok(fonts)
}

/// Applies this service's migrations to its schema and returns: what `--migrate-only` runs.
pub async fn migrate(database_url: &str) -> Result<(), Error> {
    let pool = db::connect(database_url, SCHEMA, 1).await?;
    db::migrate(&pool, sqlx::migrate!("../../migrations/notifier"), SCHEMA).await?;
    db::grant_runtime(&pool, SCHEMA, GRANTS).await?;
    pool.close().await;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to postgresql: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrating the notifier schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("connecting to nats: {0}")]
    Nats(#[from] async_nats::ConnectError),
    #[error("creating jetstream streams: {0}")]
    Streams(#[from] async_nats::jetstream::context::CreateStreamError),
    #[error("creating the jetstream consumer: {0}")]
    Consumer(String),
    #[error("invalid invoicing url: {0}")]
    InvoicingUrl(#[from] tonic::transport::Error),
    #[error(transparent)]
    Smtp(#[from] mail::MailError),
    #[error(transparent)]
    Serve(#[from] server::ServeError),
    #[error("{0} is required to serve")]
    Missing(&'static str),
    #[error(transparent)]
    Token(#[from] billing_runtime::auth::TokensError),
    #[error("NOTIFIER_FALLBACK_FONTS: {0}")]
    Fonts(#[from] pdf::FontError),
}

/// Runs the consumers, the gRPC service and the ops endpoints until `shutdown` is cancelled.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    // The metrics recorder first: anything counted before it exists would be lost.
    billing_runtime::ops::prometheus();
    metrics::describe();
    let tokens = Tokens::from_setting(config.grpc_tokens.as_ref(), "NOTIFIER_GRPC_TOKENS")?;
    let invoicing_token = config
        .invoicing_token
        .as_ref()
        .ok_or(Error::Missing("NOTIFIER_INVOICING_TOKEN"))?;
    // A font that cannot be loaded, a wrong SMTP setting or CA file stop the notifier before it
    // connects to anything (the transport itself connects only for the first email).
    let fonts = Arc::new(load_fonts(&config)?);
    let smtp = mail::transport(&mail::SmtpSettings {
        host: config.smtp_host.clone(),
        port: config.smtp_port,
        tls: config.smtp_tls,
        username: config.smtp_username.clone(),
        password: config.smtp_password.clone(),
        tls_ca_file: config.smtp_tls_ca_file.clone(),
    })?;
    let pool = db::connect(&config.database_url, SCHEMA, 5).await?;
    db::migrate(&pool, sqlx::migrate!("../../migrations/notifier"), SCHEMA).await?;
    db::grant_runtime(&pool, SCHEMA, GRANTS).await?;
    let client = config
        .nats_identity
        .connect(&config.nats_url, "notifier")
        .await?;
    let js = nats::jetstream(client.clone(), Duration::from_secs(5));
    let subjects = Subjects::new(&config.nats_namespace)
        .with_replicas(usize::from(config.nats_identity.stream_replicas));
    subjects.ensure_streams(&js).await?;
    let ready_streams = (js.clone(), subjects.stream_names());

    let invoicing = InvoicingServiceClient::new(trace::traced(
        Endpoint::from_shared(config.invoicing_url.clone())?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect_lazy(),
        invoicing_token,
    )?)
    // An invoice with every line of a busy month is large.
    .max_decoding_message_size(256 * 1024 * 1024);
    let notifier = Arc::new(consumer::Notifier {
        js,
        subjects,
        deliveries: deliveries::Deliveries::new(pool.clone()),
        invoicing,
        smtp,
        operator: config
            .operator_email
            .clone()
            .unwrap_or_else(|| config.from.clone()),
        issuer: config.issuer(),
        from: config.from.clone(),
        fonts,
    });
    let (invoices, alerts) = notifier
        .create_consumers()
        .await
        .map_err(|e| Error::Consumer(e.to_string()))?;
    tokio::spawn(nats::report_consumers(
        notifier.js.clone(),
        vec![
            (
                notifier.subjects.stream_name("INVOICING"),
                consumer::INVOICES_CONSUMER.to_string(),
            ),
            (
                notifier.subjects.stream_name("ALERTS"),
                consumer::ALERTS_CONSUMER.to_string(),
            ),
        ],
        shutdown.clone(),
    ));
    // The series the alert rules read exist from the start, at 0 (a counter that first appears
    // at 1 shows no increase to Prometheus).
    for consumer in [consumer::INVOICES_CONSUMER, consumer::ALERTS_CONSUMER] {
        metrics::counter!("notifier_dead_letters_total", "consumer" => consumer).increment(0);
    }
    for kind in deliveries::Kind::ALL {
        for result in ["rejected", "server_refused"] {
            metrics::counter!("notifier_emails_total", "kind" => kind.as_str(), "result" => result)
                .increment(0);
        }
    }
    let consumer_task = {
        let notifier = notifier.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { notifier.run(invoices, alerts, shutdown).await })
    };

    let service = server::GrpcService {
        routes: tonic::service::Routes::new(
            NotifierServiceServer::new(grpc::NotifierGrpc::new(notifier))
                .max_encoding_message_size(256 * 1024 * 1024),
        ),
        names: &[SERVICE_NAME],
        policy: Policy::new(tokens, grpc::ACCESS),
        probes: Probes {
            db: Some(pool),
            nats: Some(client),
            streams: Some(ready_streams),
        },
    };
    let tasks = vec![("consumers", consumer_task)];
    server::serve_until_shutdown("notifier", listener, service, shutdown, tasks).await?;
    Ok(())
}

#[cfg(test)]
mod config_tests {
    use billing_runtime::config::{env_values_shown_in_help, placeholder_refusals};
    use clap::CommandFactory;
    use tokio::net::TcpListener;

    use super::Config;

    const TOKENS: &str = "admin:an-admin-token-long-enough-0123456789";

    #[test]
    fn help_never_prints_a_secret_from_the_environment() {
        assert_eq!(
            env_values_shown_in_help(&Config::command()),
            Vec::<String>::new()
        );
    }

    /// A configuration that gets as far as start-up checks: its database URL leads nowhere.
    const START_ARGS: [&str; 7] = [
        "notifier",
        "--database-url",
        "postgres://postgres@127.0.0.1:1/nowhere",
        "--grpc-tokens",
        TOKENS,
        "--invoicing-token",
        "a-viewer-token-long-enough-0123456789",
    ];

    /// SMTP settings that cannot be used stop the notifier before it connects to anything:
    /// the database URL leads nowhere, and the SMTP refusal comes first.
    #[tokio::test]
    async fn unusable_smtp_settings_stop_the_notifier_before_it_connects() {
        use clap::Parser;

        let base = START_ARGS;
        let cases: [(&[&str], &str); 3] = [
            (
                &[
                    "--smtp-username",
                    "billing",
                    "--smtp-password",
                    "fake-smtp-password",
                ],
                "would send the password in clear",
            ),
            (
                &["--smtp-tls-ca-file", "/etc/ssl/certs/ca-certificates.crt"],
                "NOTIFIER_SMTP_TLS=none: no certificate would be checked",
            ),
            (
                &[
                    "--smtp-tls",
                    "starttls",
                    "--smtp-tls-ca-file",
                    "/nonexistent/ca.pem",
                ],
                "NOTIFIER_SMTP_TLS_CA_FILE /nonexistent/ca.pem",
            ),
        ];
        for (settings, expected) in cases {
            let config = Config::try_parse_from(base.iter().chain(settings)).expect("parses");
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("listener");
            let started = super::run(config, listener, billing_runtime::Shutdown::new());
            let refused = tokio::time::timeout(std::time::Duration::from_secs(5), started)
                .await
                .expect("refused at once")
                .expect_err("refused");
            let message = refused.to_string();
            assert!(matches!(refused, super::Error::Smtp(_)), "{message}");
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains("fake-smtp-password"), "{message}");
        }
    }

    /// A fallback font that cannot be loaded stops the notifier at start (exit 64 from main),
    /// naming the setting and the file; an index that is not a number is refused as it parses.
    #[tokio::test]
    async fn a_fallback_font_that_cannot_be_loaded_stops_the_notifier_at_start() {
        use clap::Parser;

        let base = START_ARGS;
        let config = Config::try_parse_from(
            base.iter()
                .chain(&["--fallback-fonts", "/nonexistent/NotoSansCJK-Regular.ttc#0"]),
        )
        .expect("parses");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("listener");
        let started = super::run(config, listener, billing_runtime::Shutdown::new());
        let refused = tokio::time::timeout(std::time::Duration::from_secs(5), started)
            .await
            .expect("refused at once")
            .expect_err("refused");
        let message = refused.to_string();
        assert!(matches!(refused, super::Error::Fonts(_)), "{message}");
        assert!(
            message.starts_with(
                "NOTIFIER_FALLBACK_FONTS: cannot read /nonexistent/NotoSansCJK-Regular.ttc:"
            ),
            "{message}"
        );

        let refused = Config::try_parse_from(base.iter().chain(&["--fallback-fonts", "a.ttc#JP"]))
            .expect_err("refused");
        assert!(refused.to_string().contains("index of a face"), "{refused}");
        let none = Config::try_parse_from(base.iter().chain(&["--fallback-fonts", "none"]))
            .expect("parses");
        assert_eq!(
            none.fallback_font_files(),
            crate::pdf::FallbackFonts::default()
        );
        let unset = Config::try_parse_from(base).expect("parses");
        assert_eq!(
            unset.fallback_font_files(),
            crate::pdf::FallbackFonts::debian()
        );
    }

    #[test]
    fn placeholder_secrets_refuse_to_start_without_being_echoed() {
        let problems = placeholder_refusals::<Config>(
            "notifier",
            &[("--invoicing-token", TOKENS), ("--grpc-tokens", TOKENS)],
            &[
                ("--database-url", "postgres://billing:CHANGE-ME@db/billing"),
                ("--smtp-password", "smtp-CHANGE-ME"),
                ("--invoicing-token", "invoicing-token-CHANGE-ME"),
            ],
            ("--database-url", "postgres://postgres@127.0.0.1:5432/test"),
        );
        assert_eq!(problems, Vec::<String>::new());
    }
}
