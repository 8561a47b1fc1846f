//! [`System`]: the services of one test, started, replicated and stopped.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use billing_testkit::smtp::Options as MailOptions;
use billing_testkit::{FakeSimplyBook, FakeStripe, MailSink, TestDatabase};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::builder::{Builder, Services};
use super::config::Args;
use super::occupancy::Occupant;
use super::*;

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
pub(super) const NOT_STARTED: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

pub struct System {
    /// The test's database; `None` when no service that has one (the ledger, invoicing, the
    /// notifier) was started.
    pub db: Option<TestDatabase>,
    pub namespace: String,
    pub nats_url: String,
    /// The tenants file every service reads (no secrets: each service merges its own secrets
    /// file, [`System::ingest_secrets_file`] and [`System::ledger_secrets_file`]).
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
    pub(super) ingest_config: Option<ingest::Config>,
    pub(super) ledger_config: Option<ledger::Config>,
    pub(super) notifier_config: Option<notifier::Config>,
    pub(super) shutdown: CancellationToken,
    pub(super) tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
    pub(super) dir: PathBuf,
    /// The process's metrics when the system started, for a system alone in the process.
    pub(super) metrics_at_start: Option<Arc<BTreeMap<String, f64>>>,
    /// Released last, once the services have stopped.
    pub(super) _occupant: Occupant,
}

/// The tokens every service of the test system accepts.
pub(super) fn grpc_tokens() -> String {
    format!("admin:{ADMIN_TOKEN} billing:{BILLING_TOKEN} viewer:{VIEWER_TOKEN}")
}

pub(super) async fn listener() -> anyhow::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    Ok((l, addr))
}

/// A loopback listener and its address for a service the system runs.
pub(super) async fn listener_if(wanted: bool) -> anyhow::Result<Option<(TcpListener, SocketAddr)>> {
    Ok(if wanted {
        Some(listener().await?)
    } else {
        None
    })
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
            replicas: None,
            ledger_flags: Vec::new(),
        }
    }

    /// The whole system on the shared NATS server.
    pub async fn start() -> anyhow::Result<Self> {
        Self::builder().everything().start().await
    }

    /// Writes the tenants files, then starts the services `builder` names, each with its
    /// settings parsed from the few flags a test sets, and waits until they are ready.
    pub(super) async fn launch(&mut self, builder: &Builder) -> anyhow::Result<()> {
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
        std::fs::write(&self.tenants_file, profile.to_string())?;
        let profile_file = self.tenants_file.clone();
        std::fs::write(
            self.ingest_secrets_file(),
            serde_json::json!({"tenants": {
                "claire": {
                    "webhook_secrets": [CLAIRE_SECRET, CLAIRE_OLD_SECRET],
                    "callback_tokens": [CLAIRE_CALLBACK_TOKEN]
                },
                "kenji": {
                    "webhook_secrets": [KENJI_SECRET],
                    "callback_tokens": [KENJI_CALLBACK_TOKEN]
                }
            }})
            .to_string(),
        )?;
        let ledger_secrets = self.ledger_secrets_file();
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
            let mut args = Args::default()
                .set("--listen-addr", addr.to_string())
                .set("--nats-url", &self.nats_url)
                .set("--nats-namespace", &self.namespace);
            if let Some(replicas) = builder.replicas {
                args = args.set("--nats-stream-replicas", replicas.to_string());
            }
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
                .set("--tenant-secrets-file", self.ingest_secrets_file())
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
            let keyring = self.dir.join("client-keyring.json");
            std::fs::write(&keyring, CLIENT_KEYRING)?;
            ledger::migrate(&owner_url).await?;
            let mut ledger = common("ledger", self.ledger)
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
                .set("--client-keyring-file", &keyring)
                .set("--batch-size", "100")
                .set("--grpc-tokens", grpc_tokens());
            for (flag, value) in &builder.ledger_flags {
                ledger = ledger.set(flag, value);
            }
            let config: ledger::Config = ledger.parse()?;
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
    pub(super) async fn wait_ready(&self, addr: SocketAddr) -> anyhow::Result<()> {
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

    /// Ingest's secrets file (webhook secrets and callback tokens), merged into
    /// [`System::tenants_file`] as in production.
    pub fn ingest_secrets_file(&self) -> PathBuf {
        self.dir.join("ingest-secrets.json")
    }

    /// The ledger's secrets file (SimplyBook's keys and admin user).
    pub fn ledger_secrets_file(&self) -> PathBuf {
        self.dir.join("ledger-secrets.json")
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
        self.spawn_ledger_with(|_| {}).await
    }

    /// Starts one more ledger replica as [`System::spawn_ledger`] does, its settings changed by
    /// `change` (a new keyring being rolled out).
    pub async fn spawn_ledger_with(
        &self,
        change: impl FnOnce(&mut ledger::Config),
    ) -> anyhow::Result<Replica> {
        let mut config = self.ledger_config();
        change(&mut config);
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
    pub(super) async fn spawn_replica<F, Fut>(&self, service: F) -> anyhow::Result<Replica>
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

    /// Stops the system and returns the test's `result`, or the shutdown's failure if the test
    /// itself passed: a service that failed or hung fails the test too.
    pub async fn finish(self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        let stopped = self.stop().await;
        result?;
        stopped
    }

    /// Stops every service, checks none of them failed, and removes the test's data.
    pub(super) async fn stop(mut self) -> anyhow::Result<()> {
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
