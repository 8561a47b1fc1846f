//! Starts the system, or the part of it a test needs ([`System::builder`]), for one test and
//! tears it down afterwards. Each service's settings are parsed by its own parser from the few
//! flags a test sets ([`parse_config`]); the rest keep the defaults production has.
//!
//! Under nextest every test has a process of its own; under `cargo test` they share one, and
//! with it the metrics recorder every service records into: a test that reads `/metrics` starts
//! its system [`alone`](Builder::alone) and reads counts since its start
//! ([`Metrics::since_start`]).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::Context;
use billing_domain::Secret;
use billing_domain::standard_webhooks::SigningKey;
use billing_proto::invoicing::invoicing_service_client::InvoicingServiceClient;
use billing_proto::ledger::ledger_service_client::LedgerServiceClient;
use billing_proto::notifier::notifier_service_client::NotifierServiceClient;
use billing_runtime::Subjects;
use billing_runtime::trace::{TracedChannel, traced};
use billing_testkit::smtp::Options as MailOptions;
use billing_testkit::{FakeSimplyBook, FakeStripe, MailSink, TestDatabase};
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Obviously fake secret for the test tenant.
pub const CLAIRE_SECRET: &str = "whsec_ZmFrZS10ZXN0LXNlY3JldC1ub3QtcmVhbA==";
/// Obviously fake secret of the second tenant, who bills in yen from Tokyo.
pub const KENJI_SECRET: &str = "whsec_ZmFrZS1rZW5qaS10ZXN0LXNlY3JldA==";
/// An older secret of Claire's, still accepted during a rotation.
pub const CLAIRE_OLD_SECRET: &str = "whsec_b2xkLWZha2UtdGVzdC1zZWNyZXQ=";
/// Obviously fake token in Claire's SimplyBook callback URL, and her SimplyBook company login.
pub const CLAIRE_CALLBACK_TOKEN: &str = "fake-callback-token-0123456789-abcdefghij";
pub const CLAIRE_COMPANY: &str = "claireh";
/// Obviously fake SimplyBook API credentials of Claire's company (the fake API checks them).
pub const CLAIRE_API_KEY: &str = "fake-simplybook-api-key";
pub const CLAIRE_SECRET_KEY: &str = "fake-simplybook-secret-key";
/// Obviously fake SimplyBook admin user the ledger lists Claire's bookings with.
pub const CLAIRE_ADMIN_LOGIN: &str = "fake-admin";
pub const CLAIRE_ADMIN_PASSWORD: &str = "fake-admin-password";
pub const CLAIRE_EMAIL: &str = "claire.billing@example.test";
/// Obviously fake key of the ledger's keyed hash chain (`LEDGER_CHAIN_KEY_FILE`).
pub const CHAIN_KEY: &str = "fake-ledger-chain-key-for-tests-not-secret-0123";
/// Kenji's SimplyBook company lives on another API domain (a second fake, which SimplyBook's
/// `getServiceUrl` on the first one names); obviously fake credentials.
pub const KENJI_COMPANY: &str = "kenjisato";
pub const KENJI_CALLBACK_TOKEN: &str = "fake-kenji-callback-token-0123456789-abcdef";
pub const KENJI_API_KEY: &str = "fake-kenji-simplybook-api-key";
pub const KENJI_SECRET_KEY: &str = "fake-kenji-simplybook-secret-key";
/// Small enough for a test to reach, large enough for every other test's traffic.
pub const RATE_LIMIT_PER_SEC: u32 = 20;
pub const RATE_LIMIT_BURST: u32 = 40;
/// Obviously fake Stripe signing secrets (current and previous).
pub const STRIPE_SECRET: &str = "whsec_test_fake_stripe_signing_secret";
pub const STRIPE_OLD_SECRET: &str = "whsec_test_fake_stripe_old_secret";
/// Obviously fake Stripe API key invoicing calls the fake Stripe with.
pub const STRIPE_API_KEY: &str = "sk_test_fake_not_a_real_key";
/// Printed on bank-transfer invoices.
pub const BANK_DETAILS: &str = "Platform Operator Pty Ltd, BSB 000-000, account 00000000 (fake)";
/// Where the notifier sends operator alerts.
pub const OPERATOR_EMAIL: &str = "ops@platform.example.test";
/// Obviously fake gRPC bearer tokens, one per role.
pub const ADMIN_TOKEN: &str = "fake-admin-grpc-token-not-secret-0001";
pub const BILLING_TOKEN: &str = "fake-billing-grpc-token-not-secret-0002";
pub const VIEWER_TOKEN: &str = "fake-viewer-grpc-token-not-secret-0003";
/// ingest answers 408 to a request not done within this time.
pub const REQUEST_TIMEOUT_MS: u64 = 3000;

/// The system's mail server and how the notifier talks to it. The default is a plain server
/// that takes mail from anyone, and a notifier without TLS or credentials.
pub struct Mail {
    /// What the mail sink offers and requires (STARTTLS, AUTH).
    pub sink: MailOptions,
    pub tls: notifier::mail::SmtpTls,
    /// The notifier's SMTP user and password.
    pub login: Option<(String, String)>,
    /// The notifier trusts the sink's test CA (`NOTIFIER_SMTP_TLS_CA_FILE`).
    pub trust_sink_ca: bool,
}

impl Default for Mail {
    fn default() -> Self {
        Mail {
            sink: MailOptions::default(),
            tls: notifier::mail::SmtpTls::None,
            login: None,
            trust_sink_ca: false,
        }
    }
}

/// A service started next to the system: its address, its own shutdown token, its task.
pub type Replica = (
    SocketAddr,
    CancellationToken,
    JoinHandle<anyhow::Result<()>>,
);

/// Where a service the builder did not start "listens": nothing answers there.
const NOT_STARTED: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

pub struct System {
    /// The test's database; `None` when no service that has one (the ledger, invoicing, the
    /// notifier) was started.
    pub db: Option<TestDatabase>,
    pub namespace: String,
    pub nats_url: String,
    pub tenants_file: PathBuf,
    pub mail: MailSink,
    pub simplybook: FakeSimplyBook,
    /// The API domain of Kenji's company (see [`KENJI_COMPANY`]).
    pub simplybook_kenji: FakeSimplyBook,
    pub stripe: FakeStripe,
    /// Where each service listens; `127.0.0.1:0`, where nothing answers, for one the builder did
    /// not start.
    pub ingest: SocketAddr,
    pub ledger: SocketAddr,
    pub invoicing: SocketAddr,
    pub notifier: SocketAddr,
    ingest_config: Option<ingest::Config>,
    ledger_config: Option<ledger::Config>,
    notifier_config: Option<notifier::Config>,
    shutdown: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
    dir: PathBuf,
    /// The process's metrics when the system started, for a system alone in the process.
    metrics_at_start: Option<Arc<BTreeMap<String, f64>>>,
    /// Released last, once the services have stopped.
    _occupant: Occupant,
}

/// The tokens every service of the test system accepts.
fn grpc_tokens() -> String {
    format!("admin:{ADMIN_TOKEN} billing:{BILLING_TOKEN} viewer:{VIEWER_TOKEN}")
}

async fn listener() -> anyhow::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    Ok((l, addr))
}

/// A loopback listener and its address for a service the system runs.
async fn listener_if(wanted: bool) -> anyhow::Result<Option<(TcpListener, SocketAddr)>> {
    Ok(if wanted {
        Some(listener().await?)
    } else {
        None
    })
}

/// A service's configuration parsed by its own clap parser, as its `main` parses it (a setting
/// the arguments do not name keeps its default, and a value is refused as the service would
/// refuse it), except that nothing is read from the environment: each `env = "…"` of `C` is
/// dropped before parsing, so a developer's `LEDGER_BATCH_SIZE` or `INGEST_RATE_LIMIT_PER_SEC`
/// never reaches a test.
pub fn parse_config<C: clap::Parser>(args: &[OsString]) -> anyhow::Result<C> {
    let command = without_env(C::command());
    let program = OsString::from(command.get_name());
    let mut matches =
        command.try_get_matches_from(std::iter::once(program).chain(args.iter().cloned()))?;
    Ok(C::from_arg_matches_mut(&mut matches)?)
}

/// `command` with no argument read from the environment.
fn without_env(command: clap::Command) -> clap::Command {
    command.mut_args(|arg| arg.env(None::<&'static str>))
}

/// Command-line arguments of one service.
#[derive(Debug, Clone, Default)]
struct Args(Vec<OsString>);

impl Args {
    fn set(mut self, flag: &str, value: impl AsRef<OsStr>) -> Self {
        self.0.push(flag.into());
        self.0.push(value.as_ref().to_owned());
        self
    }

    fn set_some(self, flag: &str, value: Option<impl AsRef<OsStr>>) -> Self {
        match value {
            Some(value) => self.set(flag, value),
            None => self,
        }
    }

    fn parse<C: clap::Parser>(&self) -> anyhow::Result<C> {
        parse_config(&self.0)
    }
}

/// Which services a system runs.
#[derive(Debug, Clone, Copy, Default)]
struct Services {
    ingest: bool,
    ledger: bool,
    invoicing: bool,
    notifier: bool,
}

/// A system with only the services a test needs: [`System::builder`]. The fakes (SimplyBook,
/// Stripe, the mail sink) always run; the database is made when a service that has a schema
/// runs. A service does not bring the ones it calls: invoicing asks the ledger, the notifier
/// invoicing, so a test that goes that far names them too.
#[must_use]
pub struct Builder {
    services: Services,
    nats_url: Option<String>,
    logins: Option<PathBuf>,
    namespace: Option<String>,
    mail: Mail,
    alone: bool,
}

impl Builder {
    /// ingest, on the webhook port (`/metrics` there too).
    pub fn ingest(mut self) -> Self {
        self.services.ingest = true;
        self
    }

    pub fn ledger(mut self) -> Self {
        self.services.ledger = true;
        self
    }

    pub fn invoicing(mut self) -> Self {
        self.services.invoicing = true;
        self
    }

    pub fn notifier(mut self) -> Self {
        self.services.notifier = true;
        self
    }

    /// All four services.
    pub fn everything(self) -> Self {
        self.ingest().ledger().invoicing().notifier()
    }

    /// The NATS server at `url` rather than the shared one.
    pub fn nats(mut self, url: String) -> Self {
        self.nats_url = Some(url);
        self
    }

    /// Each service logs in to NATS as the user of its name, with the password in
    /// `dir/<service>`.
    pub fn logins(mut self, dir: &Path) -> Self {
        self.logins = Some(dir.to_path_buf());
        self
    }

    /// Subjects and streams in `namespace` (empty: production's) rather than a fresh one.
    pub fn namespace(mut self, namespace: String) -> Self {
        self.namespace = Some(namespace);
        self
    }

    /// The mail server and the notifier's SMTP settings of `mail`.
    pub fn mail(mut self, mail: Mail) -> Self {
        self.mail = mail;
        self
    }

    /// No other test's services run in this process while this system does, so the test may
    /// read the process-wide metrics recorder ([`System::metrics`]). Under nextest every test
    /// has a process of its own and this changes nothing; under `cargo test` it waits for the
    /// systems running to stop, and they for it. A test alone starts only this one system.
    pub fn alone(mut self) -> Self {
        self.alone = true;
        self
    }

    /// Starts the services named and returns once each answers `/readyz`.
    pub async fn start(self) -> anyhow::Result<System> {
        let occupant = Occupant::enter(self.alone).await;
        // The services record into this process's recorder: what is in it now is not theirs.
        let metrics_at_start = self
            .alone
            .then(|| Arc::new(samples(&billing_runtime::ops::prometheus().render())));
        billing_testkit::init_test_logging();
        let services = self.services;
        let db = if services.ledger || services.invoicing || services.notifier {
            Some(
                TestDatabase::create()
                    .await
                    .context("creating the test database")?,
            )
        } else {
            None
        };
        let mail = MailSink::start_with(self.mail.sink.clone()).await?;
        let simplybook =
            FakeSimplyBook::start(CLAIRE_COMPANY, CLAIRE_API_KEY, CLAIRE_SECRET_KEY).await?;
        simplybook.set_admin_user(CLAIRE_ADMIN_LOGIN, CLAIRE_ADMIN_PASSWORD);
        let simplybook_kenji =
            FakeSimplyBook::start(KENJI_COMPANY, KENJI_API_KEY, KENJI_SECRET_KEY).await?;
        simplybook_kenji.set_time_zone("Asia/Tokyo");
        simplybook.add_company_host(KENJI_COMPANY, &simplybook_kenji.host());
        let stripe = FakeStripe::start().await?;
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(billing_testkit::unique_namespace);
        let dir = std::env::temp_dir().join(format!(
            "billing-e2e-{}",
            billing_testkit::unique_namespace()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut system = System {
            db,
            namespace,
            nats_url: self
                .nats_url
                .clone()
                .unwrap_or_else(billing_testkit::nats_url),
            tenants_file: dir.join("tenants.json"),
            mail,
            simplybook,
            simplybook_kenji,
            stripe,
            ingest: NOT_STARTED,
            ledger: NOT_STARTED,
            invoicing: NOT_STARTED,
            notifier: NOT_STARTED,
            ingest_config: None,
            ledger_config: None,
            notifier_config: None,
            shutdown: CancellationToken::new(),
            tasks: Vec::new(),
            dir,
            metrics_at_start,
            _occupant: occupant,
        };
        match system.launch(&self).await {
            Ok(()) => Ok(system),
            // What did start is stopped, and the database and files removed.
            Err(err) => Err(match system.stop().await {
                Ok(()) => err,
                Err(stopping) => anyhow::anyhow!("{err:#} (and stopping: {stopping:#})"),
            }),
        }
    }
}

impl System {
    /// A system of the services `builder` names: `System::builder().ingest().ledger().start()`.
    pub fn builder() -> Builder {
        Builder {
            services: Services::default(),
            nats_url: None,
            logins: None,
            namespace: None,
            mail: Mail::default(),
            alone: false,
        }
    }

    /// The whole system on the shared NATS server.
    pub async fn start() -> anyhow::Result<Self> {
        Self::builder().everything().start().await
    }

    /// Writes the tenants files, then starts the services `builder` names, each with its
    /// settings parsed from the few flags a test sets, and waits until they are ready.
    async fn launch(&mut self, builder: &Builder) -> anyhow::Result<()> {
        let services = builder.services;
        // Each service reads only its secrets, as in production: the profile (no secrets) is
        // shared; ingest's file adds webhook secrets and callback tokens (tests rotate them in
        // place); the ledger's secrets file holds SimplyBook's keys and admin user.
        let profile = serde_json::json!({"tenants": [{
            "id": "claire",
            "name": "Claire Hamilton Therapies",
            "billing_email": CLAIRE_EMAIL,
            "time_zone": "Australia/Sydney",
            "currency": "AUD",
            "deposit_rate": "0.20",
            "platform_fee_rate": "0.20",
            "payment_terms_days": 7,
            "simplybook_company": CLAIRE_COMPANY,
            "simplybook_status_labels": {"Completed": "completed", "No show": "no_show"}
        }, {
            "id": "kenji",
            "name": "Kenji Sato Shiatsu",
            "billing_email": "kenji.billing@example.test",
            "time_zone": "Asia/Tokyo",
            "currency": "JPY",
            "simplybook_company": KENJI_COMPANY
        }]});
        let profile_file = self.dir.join("profile.json");
        std::fs::write(&profile_file, profile.to_string())?;
        let mut ingest_tenants = profile.clone();
        ingest_tenants["tenants"][0]["webhook_secrets"] =
            serde_json::json!([CLAIRE_SECRET, CLAIRE_OLD_SECRET]);
        ingest_tenants["tenants"][0]["callback_tokens"] =
            serde_json::json!([CLAIRE_CALLBACK_TOKEN]);
        ingest_tenants["tenants"][1]["webhook_secrets"] = serde_json::json!([KENJI_SECRET]);
        ingest_tenants["tenants"][1]["callback_tokens"] = serde_json::json!([KENJI_CALLBACK_TOKEN]);
        std::fs::write(&self.tenants_file, ingest_tenants.to_string())?;
        let ledger_secrets = self.dir.join("ledger-secrets.json");
        std::fs::write(
            &ledger_secrets,
            serde_json::json!({"tenants": {
                "claire": {
                    "simplybook_api_key": CLAIRE_API_KEY,
                    "simplybook_secret_key": CLAIRE_SECRET_KEY,
                    "simplybook_user_login": CLAIRE_ADMIN_LOGIN,
                    "simplybook_user_password": CLAIRE_ADMIN_PASSWORD
                },
                "kenji": {
                    "simplybook_api_key": KENJI_API_KEY,
                    "simplybook_secret_key": KENJI_SECRET_KEY
                }
            }})
            .to_string(),
        )?;

        // Addresses are known before any service starts, so each can name the others.
        let ingest_l = listener_if(services.ingest).await?;
        let ledger_l = listener_if(services.ledger).await?;
        let invoicing_l = listener_if(services.invoicing).await?;
        let notifier_l = listener_if(services.notifier).await?;
        let addr = |l: &Option<(TcpListener, SocketAddr)>| l.as_ref().map_or(NOT_STARTED, |l| l.1);
        self.ingest = addr(&ingest_l);
        self.ledger = addr(&ledger_l);
        self.invoicing = addr(&invoicing_l);
        self.notifier = addr(&notifier_l);
        // What every service is told: where it listens, and its NATS server, namespace and
        // login.
        let common = |service: &str, addr: SocketAddr| {
            let args = Args::default()
                .set("--listen-addr", addr.to_string())
                .set("--nats-url", &self.nats_url)
                .set("--nats-namespace", &self.namespace);
            match &builder.logins {
                Some(dir) => args
                    .set("--nats-user", service)
                    .set("--nats-password-file", dir.join(service)),
                None => args,
            }
        };
        let database = |schema: &str| -> anyhow::Result<String> {
            Ok(self
                .db
                .as_ref()
                .context("no test database")?
                .runtime_url(schema))
        };

        if let Some((listener, _)) = ingest_l {
            let config: ingest::Config = common("ingest", self.ingest)
                .set("--tenants-file", &self.tenants_file)
                .set(
                    "--stripe-webhook-secrets",
                    format!("{STRIPE_SECRET},{STRIPE_OLD_SECRET}"),
                )
                .set("--tenants-reload-secs", "1")
                .set("--rate-limit-per-sec", RATE_LIMIT_PER_SEC.to_string())
                .set("--rate-limit-burst", RATE_LIMIT_BURST.to_string())
                .set("--rejection-audit-per-sec", "50")
                .set("--rejection-audit-burst", "100")
                .set("--request-timeout-ms", REQUEST_TIMEOUT_MS.to_string())
                .parse()?;
            // What ingest's main checks after parsing.
            config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
            self.ingest_config = Some(config.clone());
            let token = self.shutdown.clone();
            self.tasks.push((
                "ingest",
                tokio::spawn(async move { Ok(ingest::run(config, listener, token).await?) }),
            ));
        }

        // Each schema is migrated by its owner, and each service runs as its least-privilege
        // runtime role, as in production.
        let owner_url = self
            .db
            .as_ref()
            .map(|db| db.url.clone())
            .unwrap_or_default();
        if let Some((listener, _)) = ledger_l {
            let chain_key = self.dir.join("chain.key");
            std::fs::write(&chain_key, format!("{CHAIN_KEY}\n"))?;
            ledger::migrate(&owner_url).await?;
            let config: ledger::Config = common("ledger", self.ledger)
                .set("--database-url", database(ledger::SCHEMA)?)
                .set("--db-max-connections", "5")
                .set("--tenants-file", &profile_file)
                .set("--tenant-secrets-file", &ledger_secrets)
                .set("--simplybook-url", self.simplybook.url())
                // The fake answers getServiceUrl with its own loopback host.
                .set("--simplybook-api-hosts", "127.0.0.1")
                .set("--simplybook-lookups-per-sec", "0")
                .set("--simplybook-lookup-burst", "1")
                .set("--simplybook-timeout-ms", "2000")
                .set("--anchor-every-secs", "1")
                .set("--chain-key-file", &chain_key)
                .set("--batch-size", "100")
                .set("--grpc-tokens", grpc_tokens())
                .parse()?;
            self.ledger_config = Some(config.clone());
            let token = self.shutdown.clone();
            self.tasks.push((
                "ledger",
                tokio::spawn(async move { Ok(ledger::run(config, listener, token).await?) }),
            ));
        }

        if let Some((listener, _)) = invoicing_l {
            invoicing::migrate(&owner_url).await?;
            let config: invoicing::Config = common("invoicing", self.invoicing)
                .set("--database-url", database(invoicing::SCHEMA)?)
                .set("--db-max-connections", "5")
                .set("--tenants-file", &profile_file)
                .set("--ledger-url", format!("http://{}", self.ledger))
                .set("--ledger-token", VIEWER_TOKEN)
                .set("--bank-details", BANK_DETAILS)
                .set("--stripe-api-key", STRIPE_API_KEY)
                .set("--stripe-api-base", self.stripe.url())
                .set("--stripe-timeout-ms", "2000")
                .set("--grpc-tokens", grpc_tokens())
                .parse()?;
            let token = self.shutdown.clone();
            self.tasks.push((
                "invoicing",
                tokio::spawn(async move { Ok(invoicing::run(config, listener, token).await?) }),
            ));
        }

        if let Some((listener, _)) = notifier_l {
            notifier::migrate(&owner_url).await?;
            let mail = &builder.mail;
            let smtp_ca_file = match (mail.trust_sink_ca, self.mail.ca_pem()) {
                (true, Some(pem)) => {
                    let path = self.dir.join("smtp-ca.pem");
                    std::fs::write(&path, pem)?;
                    Some(path)
                }
                (true, None) => anyhow::bail!("the notifier cannot trust a sink without STARTTLS"),
                (false, _) => None,
            };
            let tls = clap::ValueEnum::to_possible_value(&mail.tls)
                .context("an SMTP TLS mode without a name")?;
            let config: notifier::Config = common("notifier", self.notifier)
                .set("--invoicing-url", format!("http://{}", self.invoicing))
                .set("--invoicing-token", VIEWER_TOKEN)
                .set("--grpc-tokens", grpc_tokens())
                .set("--database-url", database(notifier::SCHEMA)?)
                .set("--smtp-host", "127.0.0.1")
                .set("--smtp-port", self.mail.addr().port().to_string())
                .set("--smtp-tls", tls.get_name())
                .set_some("--smtp-username", mail.login.as_ref().map(|(user, _)| user))
                .set_some(
                    "--smtp-password",
                    mail.login.as_ref().map(|(_, password)| password),
                )
                .set_some("--smtp-tls-ca-file", smtp_ca_file)
                .set("--from", "Platform Billing <billing@platform.example.test>")
                .set("--operator-email", OPERATOR_EMAIL)
                .set("--operator-name", "Platform Operator Pty Ltd")
                .set("--operator-address", "1 Example Street; Sydney NSW 2000")
                .set("--operator-tax-id", "ABN 00 000 000 000 (fake)")
                .parse()?;
            self.notifier_config = Some(config.clone());
            let token = self.shutdown.clone();
            self.tasks.push((
                "notifier",
                tokio::spawn(async move { Ok(notifier::run(config, listener, token).await?) }),
            ));
        }

        for (started, addr) in [
            (services.ingest, self.ingest),
            (services.ledger, self.ledger),
            (services.invoicing, self.invoicing),
            (services.notifier, self.notifier),
        ] {
            if started {
                self.wait_ready(addr).await?;
            }
        }
        Ok(())
    }

    /// Waits for `/readyz` to answer 200 (the service migrated and connected).
    async fn wait_ready(&self, addr: SocketAddr) -> anyhow::Result<()> {
        let url = format!("http://{addr}/readyz");
        for _ in 0..200 {
            if let Some((name, task)) = self.tasks.iter().find(|(_, t)| t.is_finished()) {
                anyhow::bail!("{name} stopped during start-up: {task:?}");
            }
            if let Ok(r) = reqwest::get(&url).await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("{url} never became ready")
    }

    /// The configuration the system's ingest runs with (e.g. for a replica with other limits).
    pub fn ingest_config(&self) -> ingest::Config {
        self.ingest_config
            .clone()
            .unwrap_or_else(|| panic!("this system runs no ingest: start it with .ingest()"))
    }

    /// Starts one more ingest replica with its own shutdown token (for tests that stop it).
    pub async fn spawn_ingest(&self) -> anyhow::Result<Replica> {
        let config = self.ingest_config();
        self.spawn_replica(move |addr, l, stop| async move {
            let config = ingest::Config {
                listen_addr: addr,
                ..config
            };
            Ok(ingest::run(config, l, stop).await?)
        })
        .await
    }

    /// The configuration the system's ledger runs with.
    pub fn ledger_config(&self) -> ledger::Config {
        self.ledger_config
            .clone()
            .unwrap_or_else(|| panic!("this system runs no ledger: start it with .ledger()"))
    }

    /// Starts one more ledger replica on the same database and durable consumer, with its own
    /// shutdown token.
    pub async fn spawn_ledger(&self) -> anyhow::Result<Replica> {
        let config = self.ledger_config();
        self.spawn_replica(move |addr, l, stop| async move {
            let config = ledger::Config {
                listen_addr: addr,
                ..config
            };
            Ok(ledger::run(config, l, stop).await?)
        })
        .await
    }

    /// Starts one more notifier replica on the same database and durable consumers, with its
    /// own shutdown token.
    pub async fn spawn_notifier(&self) -> anyhow::Result<Replica> {
        self.spawn_notifier_with(|_| {}).await
    }

    /// Starts one more notifier replica as [`System::spawn_notifier`] does, its settings
    /// changed by `change` (a corrected configuration being rolled out).
    pub async fn spawn_notifier_with(
        &self,
        change: impl FnOnce(&mut notifier::Config),
    ) -> anyhow::Result<Replica> {
        let mut config = self
            .notifier_config
            .clone()
            .context("this system runs no notifier: start it with .notifier()")?;
        change(&mut config);
        self.spawn_replica(move |addr, l, stop| async move {
            let config = notifier::Config {
                listen_addr: addr,
                ..config
            };
            Ok(notifier::run(config, l, stop).await?)
        })
        .await
    }

    /// Runs `service` on a new loopback port with its own shutdown token, once it is ready.
    async fn spawn_replica<F, Fut>(&self, service: F) -> anyhow::Result<Replica>
    where
        F: FnOnce(SocketAddr, TcpListener, CancellationToken) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (l, addr) = listener().await?;
        let token = CancellationToken::new();
        let task = tokio::spawn(service(addr, l, token.clone()));
        self.wait_ready(addr).await?;
        Ok((addr, token, task))
    }

    /// The `/metrics` page of the service at `addr`, for a system started
    /// [`alone`](Builder::alone): every service of a process records into one recorder, so
    /// under `cargo test` another test's services would count into what this one reads.
    pub async fn metrics(&self, addr: SocketAddr) -> anyhow::Result<Metrics> {
        let at_start = self.metrics_at_start.clone().context(
            "metrics are process-wide: start the system .alone() to read them \
             (other tests' services record into them under cargo test)",
        )?;
        let page = reqwest::get(format!("http://{addr}/metrics"))
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(Metrics {
            samples: samples(&page),
            page,
            at_start,
        })
    }

    /// Runs `billingctl` (built with the workspace) against this system, as an operator would.
    pub async fn billingctl(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        self.billingctl_as(ADMIN_TOKEN, args).await
    }

    /// A gRPC channel to `addr` carrying the admin token.
    pub fn channel(&self, addr: SocketAddr) -> anyhow::Result<TracedChannel> {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect_lazy();
        Ok(traced(channel, &Secret::new(ADMIN_TOKEN.to_string()))?)
    }

    pub fn ledger_client(&self) -> anyhow::Result<LedgerServiceClient<TracedChannel>> {
        Ok(LedgerServiceClient::new(self.channel(self.ledger)?))
    }

    pub fn invoicing_client(&self) -> anyhow::Result<InvoicingServiceClient<TracedChannel>> {
        Ok(InvoicingServiceClient::new(self.channel(self.invoicing)?))
    }

    pub fn notifier_client(&self) -> anyhow::Result<NotifierServiceClient<TracedChannel>> {
        Ok(NotifierServiceClient::new(self.channel(self.notifier)?))
    }

    /// Runs billingctl with `token`.
    pub async fn billingctl_as(
        &self,
        token: &str,
        args: &[&str],
    ) -> anyhow::Result<std::process::Output> {
        // Tests run from target/<profile>/deps; the workspace's binaries are one level up.
        let exe = std::env::current_exe()?;
        let bin = exe
            .parent()
            .and_then(|deps| deps.parent())
            .map(|dir| dir.join("billingctl"))
            .context("locating billingctl")?;
        anyhow::ensure!(
            bin.exists(),
            "{} is missing: build it first (`cargo build -p billingctl`; scripts/test.sh does)",
            bin.display()
        );
        let mut command = tokio::process::Command::new(&bin);
        // Only what the test sets: none of the developer's own billingctl settings.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("BILLINGCTL_") {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .env("BILLINGCTL_LEDGER_URL", format!("http://{}", self.ledger))
            .env(
                "BILLINGCTL_INVOICING_URL",
                format!("http://{}", self.invoicing),
            )
            .env(
                "BILLINGCTL_NOTIFIER_URL",
                format!("http://{}", self.notifier),
            )
            .env("BILLINGCTL_TOKEN", token)
            .output()
            .await
            .with_context(|| format!("running {}", bin.display()))
    }

    /// Posts a SimplyBook native callback to Claire's callback URL with `token`.
    pub async fn post_callback(
        &self,
        tenant: &str,
        token: &str,
        body: &str,
    ) -> anyhow::Result<reqwest::Response> {
        Ok(reqwest::Client::new()
            .post(format!(
                "http://{}/api/v1/webhooks/simplybook/{tenant}/callback/{token}",
                self.ingest
            ))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?)
    }

    pub fn subjects(&self) -> Subjects {
        Subjects::new(&self.namespace)
    }

    pub async fn jetstream(&self) -> anyhow::Result<async_nats::jetstream::Context> {
        let client = async_nats::connect(&self.nats_url).await?;
        Ok(async_nats::jetstream::new(client))
    }

    /// A connection to the test database with `schema` on the search path.
    pub async fn db(&self, schema: &str) -> anyhow::Result<sqlx::PgPool> {
        let url = &self
            .db
            .as_ref()
            .context("no database: this system runs no ledger, invoicing or notifier")?
            .url;
        Ok(billing_runtime::db::connect(url, schema, 2).await?)
    }

    /// Posts a Stripe event with the given `Stripe-Signature` header value.
    pub async fn post_stripe(
        &self,
        body: &str,
        signature: &str,
    ) -> anyhow::Result<reqwest::Response> {
        Ok(reqwest::Client::new()
            .post(format!("http://{}/api/v1/webhooks/stripe", self.ingest))
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(body.to_string())
            .send()
            .await?)
    }

    /// Posts a raw request to the signed SimplyBook endpoint with explicit headers.
    pub async fn post_simplybook_raw(
        &self,
        tenant: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut request = reqwest::Client::new()
            .post(format!(
                "http://{}/api/v1/webhooks/simplybook/{tenant}",
                self.ingest
            ))
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        Ok(request.body(body).send().await?)
    }

    /// Messages stored in this system's WEBHOOKS stream on `subject`.
    pub async fn stream_count(&self, subject: &str) -> anyhow::Result<u64> {
        self.count_in("WEBHOOKS", subject).await
    }

    /// Messages stored in stream `base` (e.g. `INVOICING`) under `subject`.
    pub async fn count_in(&self, base: &str, subject: &str) -> anyhow::Result<u64> {
        let js = self.jetstream().await?;
        let stream = js.get_stream(self.subjects().stream_name(base)).await?;
        let mut counts = stream.info_with_subjects(subject).await?;
        let mut total = 0;
        while let Some(entry) = counts.next().await {
            total += u64::try_from(entry?.1).unwrap_or(0);
        }
        Ok(total)
    }

    /// Posts a signed SimplyBook booking payload to ingest.
    pub async fn post_signed(
        &self,
        tenant: &str,
        webhook_id: &str,
        body: &str,
        secret: &str,
    ) -> anyhow::Result<reqwest::Response> {
        let ts = chrono::Utc::now().timestamp();
        let signature = SigningKey::parse(secret)?.sign(webhook_id, ts, body.as_bytes());
        Ok(reqwest::Client::new()
            .post(format!(
                "http://{}/api/v1/webhooks/simplybook/{tenant}",
                self.ingest
            ))
            .header("content-type", "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(body.to_string())
            .send()
            .await?)
    }

    /// Stops the system and returns the test's `result`, or the shutdown's failure if the test
    /// itself passed: a service that failed or hung fails the test too.
    pub async fn finish(self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        let stopped = self.stop().await;
        result?;
        stopped
    }

    /// Stops every service, checks none of them failed, and removes the test's data.
    async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let mut failures = Vec::new();
        for (name, task) in self.tasks.drain(..) {
            match tokio::time::timeout(Duration::from_secs(15), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(err))) => failures.push(format!("{name}: {err:#}")),
                Ok(Err(err)) => failures.push(format!("{name} panicked: {err}")),
                Err(_) => failures.push(format!("{name} did not stop within 15 s")),
            }
        }
        if let Ok(js) = self.jetstream().await {
            self.subjects().delete_streams(&js).await;
        }
        if let Some(db) = self.db.take() {
            db.drop_database().await?;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        anyhow::ensure!(failures.is_empty(), "services failed: {failures:?}");
        Ok(())
    }
}

/// Whose services run in this process now: systems sharing it, or one alone.
#[derive(Debug, Default)]
struct Occupancy {
    sharing: usize,
    alone: bool,
}

static OCCUPANCY: LazyLock<watch::Sender<Occupancy>> =
    LazyLock::new(|| watch::Sender::new(Occupancy::default()));

/// A system's place in the process, shared or alone ([`Builder::alone`]); given up when the
/// system is dropped. A system that shares waits while one is alone; one alone waits until no
/// other runs (systems that share may start meanwhile, so a test holding one never waits for
/// itself).
struct Occupant {
    alone: bool,
}

impl Occupant {
    async fn enter(alone: bool) -> Self {
        let mut changed = OCCUPANCY.subscribe();
        loop {
            let entered = OCCUPANCY.send_if_modified(|now| {
                let free = !now.alone && (!alone || now.sharing == 0);
                if free && alone {
                    now.alone = true;
                } else if free {
                    now.sharing += 1;
                }
                free
            });
            if entered {
                return Occupant { alone };
            }
            if changed.changed().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl Drop for Occupant {
    fn drop(&mut self) {
        OCCUPANCY.send_modify(|now| {
            if self.alone {
                now.alone = false;
            } else {
                now.sharing = now.sharing.saturating_sub(1);
            }
        });
    }
}

/// One service's `/metrics` page ([`System::metrics`]).
pub struct Metrics {
    page: String,
    samples: BTreeMap<String, f64>,
    at_start: Arc<BTreeMap<String, f64>>,
}

impl Metrics {
    /// The value of `series` (its name and labels as the page prints them, e.g.
    /// `ingest_webhooks_accepted_total{source="simplybook"}`) as the page shows it: what to read
    /// of a gauge.
    pub fn value(&self, series: &str) -> Option<f64> {
        self.samples.get(series).copied()
    }

    /// What the counter `series` (or a histogram's `_count` or `_sum`) counted since the
    /// system started: its value less the process's when the system started (0 if it had none
    /// then). In a process of its own, the value itself. `None` when the page lacks the series.
    pub fn since_start(&self, series: &str) -> Option<f64> {
        let before = self.at_start.get(series).copied().unwrap_or(0.0);
        Some(self.value(series)? - before)
    }

    pub fn text(&self) -> &str {
        &self.page
    }
}

impl std::fmt::Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.page)
    }
}

/// Every sample of a Prometheus text page: the series as printed, and its value.
fn samples(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[test]
fn service_configurations_read_nothing_from_the_environment() {
    use clap::CommandFactory as _;
    for command in [
        ingest::Config::command(),
        ledger::Config::command(),
        invoicing::Config::command(),
        notifier::Config::command(),
    ] {
        let name = command.get_name().to_string();
        assert!(
            command.get_arguments().any(|arg| arg.get_env().is_some()),
            "{name} reads its settings from the environment"
        );
        let read: Vec<_> = without_env(command)
            .get_arguments()
            .filter_map(|arg| arg.get_env().map(|env| env.to_owned()))
            .collect();
        assert!(read.is_empty(), "{name} still reads {read:?}");
    }
}

/// Set in a test process [`in_own_process`] started.
const OWN_PROCESS: &str = "BILLING_E2E_OWN_PROCESS";

/// For a test that changes what is process-wide beyond the metrics (as a service's `main`
/// installing the global subscriber): `None` when the test has its process to itself (nextest
/// runs every test so), and the caller runs it; otherwise (`cargo test` runs all tests as
/// threads of one process) its outcome run alone in a process of its own, `name` being its
/// path as `cargo test` lists it.
pub fn in_own_process(name: &str) -> Option<anyhow::Result<()>> {
    let nextest =
        std::env::var_os("NEXTEST_EXECUTION_MODE").is_some_and(|m| m == "process-per-test");
    if nextest || std::env::var_os(OWN_PROCESS).is_some() {
        return None;
    }
    let run = || {
        // The binary running, even if a build has replaced its file since (Linux).
        let exe = Path::new("/proc/self/exe");
        let exe = if exe.exists() {
            exe.to_path_buf()
        } else {
            std::env::current_exe()?
        };
        let out = std::process::Command::new(exe)
            .args(["--exact", name, "--test-threads", "1"])
            .env(OWN_PROCESS, "1")
            .output()?;
        let said = String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(
            out.status.success() && said.contains("test result: ok. 1 passed"),
            "{name}, in a process of its own: {}\n{said}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    Some(run())
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A PDF's text as `pdftotext -layout` (poppler-utils) extracts it.
pub fn pdf_text(pdf: &[u8]) -> anyhow::Result<String> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("pdftotext")
        .args(["-layout", "-", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("pdftotext not runnable ({e}); install poppler-utils"))?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(pdf)?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "pdftotext failed: {out:?}");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
