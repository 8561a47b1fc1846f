//! Starts the whole system for one test and tears it down afterwards.

use std::net::SocketAddr;
use std::path::PathBuf;
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
pub const STRIPE_SECRET: &str = "whsec_test_fake_stripe_secret";
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

pub struct System {
    pub db: Option<TestDatabase>,
    pub namespace: String,
    pub nats_url: String,
    pub tenants_file: PathBuf,
    pub mail: MailSink,
    pub simplybook: FakeSimplyBook,
    /// The API domain of Kenji's company (see [`KENJI_COMPANY`]).
    pub simplybook_kenji: FakeSimplyBook,
    pub stripe: FakeStripe,
    pub ingest: SocketAddr,
    pub ledger: SocketAddr,
    pub invoicing: SocketAddr,
    pub notifier: SocketAddr,
    ingest_config: ingest::Config,
    ledger_config: ledger::Config,
    notifier_config: notifier::Config,
    shutdown: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
    dir: PathBuf,
}

/// The tokens every service of the test system accepts.
fn grpc_tokens() -> Secret<String> {
    Secret::new(format!(
        "admin:{ADMIN_TOKEN} billing:{BILLING_TOKEN} viewer:{VIEWER_TOKEN}"
    ))
}

async fn listener() -> anyhow::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    Ok((l, addr))
}

impl System {
    /// The whole system on the shared NATS server.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with_nats(billing_testkit::nats_url()).await
    }

    /// The whole system on the NATS server at `nats_url`.
    pub async fn start_with_nats(nats_url: String) -> anyhow::Result<Self> {
        Self::start_as(nats_url, None, billing_testkit::unique_namespace()).await
    }

    /// The whole system on the shared NATS server, with the mail server and notifier settings
    /// of `mail`.
    pub async fn start_with_mail(mail: Mail) -> anyhow::Result<Self> {
        let namespace = billing_testkit::unique_namespace();
        Self::launch(billing_testkit::nats_url(), None, namespace, mail).await
    }

    /// The whole system on the NATS server at `nats_url`, each service logging in as the user
    /// of its name with the password in `logins/<service>` when `logins` is given, in
    /// `namespace`.
    pub async fn start_as(
        nats_url: String,
        logins: Option<&std::path::Path>,
        namespace: String,
    ) -> anyhow::Result<Self> {
        Self::launch(nats_url, logins, namespace, Mail::default()).await
    }

    async fn launch(
        nats_url: String,
        logins: Option<&std::path::Path>,
        namespace: String,
        mail_settings: Mail,
    ) -> anyhow::Result<Self> {
        billing_testkit::init_test_logging();
        let db = TestDatabase::create()
            .await
            .context("creating the test database")?;
        let login = |service: &str| logins.map(|dir| (service.to_string(), dir.join(service)));
        let mail = MailSink::start_with(mail_settings.sink.clone()).await?;
        let simplybook =
            FakeSimplyBook::start(CLAIRE_COMPANY, CLAIRE_API_KEY, CLAIRE_SECRET_KEY).await?;
        simplybook.set_admin_user(CLAIRE_ADMIN_LOGIN, CLAIRE_ADMIN_PASSWORD);
        let simplybook_kenji =
            FakeSimplyBook::start(KENJI_COMPANY, KENJI_API_KEY, KENJI_SECRET_KEY).await?;
        simplybook_kenji.set_time_zone("Asia/Tokyo");
        simplybook.add_company_host(KENJI_COMPANY, &simplybook_kenji.host());
        let stripe = FakeStripe::start().await?;
        let dir = std::env::temp_dir().join(format!("billing-e2e-{namespace}"));
        std::fs::create_dir_all(&dir)?;
        let smtp_ca_file = match (mail_settings.trust_sink_ca, mail.ca_pem()) {
            (true, Some(pem)) => {
                let path = dir.join("smtp-ca.pem");
                std::fs::write(&path, pem)?;
                Some(path)
            }
            (true, None) => anyhow::bail!("the notifier cannot trust a sink without STARTTLS"),
            (false, _) => None,
        };
        let tenants_file = dir.join("tenants.json");
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
        let profile_file = dir.join("profile.json");
        std::fs::write(&profile_file, profile.to_string())?;
        let mut ingest_tenants = profile.clone();
        ingest_tenants["tenants"][0]["webhook_secrets"] =
            serde_json::json!([CLAIRE_SECRET, CLAIRE_OLD_SECRET]);
        ingest_tenants["tenants"][0]["callback_tokens"] =
            serde_json::json!([CLAIRE_CALLBACK_TOKEN]);
        ingest_tenants["tenants"][1]["webhook_secrets"] = serde_json::json!([KENJI_SECRET]);
        ingest_tenants["tenants"][1]["callback_tokens"] = serde_json::json!([KENJI_CALLBACK_TOKEN]);
        std::fs::write(&tenants_file, ingest_tenants.to_string())?;
        let ledger_secrets = dir.join("ledger-secrets.json");
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
        let shutdown = CancellationToken::new();
        let (ingest_l, ingest) = listener().await?;
        let (ledger_l, ledger) = listener().await?;
        let (invoicing_l, invoicing) = listener().await?;
        let (notifier_l, notifier) = listener().await?;
        let mut tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)> = Vec::new();

        let config = ingest::Config {
            listen_addr: ingest,
            nats_url: nats_url.clone(),
            nats_namespace: namespace.clone(),
            nats_identity: login("ingest")
                .map(|(user, password_file)| ingest::IngestNats {
                    user: Some(user),
                    password_file: Some(password_file),
                    ..Default::default()
                })
                .unwrap_or_default(),
            tenants_file: tenants_file.clone(),
            tenant_secrets_file: None,
            publish_timeout_ms: 2000,
            stripe_webhook_secrets: vec![
                Secret::new(STRIPE_SECRET.to_string()),
                Secret::new(STRIPE_OLD_SECRET.to_string()),
            ],
            max_body_bytes: 256 * 1024,
            tenants_reload_secs: 1,
            rate_limit_per_sec: RATE_LIMIT_PER_SEC,
            rate_limit_burst: RATE_LIMIT_BURST,
            rejection_audit_per_sec: 50,
            rejection_audit_burst: 100,
            request_timeout_ms: REQUEST_TIMEOUT_MS,
            header_read_timeout_ms: 10_000,
            max_header_bytes: 16 * 1024,
            max_connections: 1024,
            // /metrics on the webhook port, where the tests read it.
            ops_addr: None,
        };
        let ingest_config = config.clone();
        let token = shutdown.clone();
        tasks.push((
            "ingest",
            tokio::spawn(async move { Ok(ingest::run(config, ingest_l, token).await?) }),
        ));

        // The ledger's schema is migrated by its owner, and the ledger runs as its
        // least-privilege runtime role, as in production.
        let chain_key = dir.join("chain.key");
        std::fs::write(&chain_key, format!("{CHAIN_KEY}\n"))?;
        ledger::migrate(&db.url).await?;
        let config = ledger::Config {
            listen_addr: ledger,
            database_url: db.runtime_url(ledger::SCHEMA),
            migrate_only: false,
            db_max_connections: 5,
            nats_url: nats_url.clone(),
            nats_namespace: namespace.clone(),
            nats_identity: login("ledger")
                .map(|(user, password_file)| ledger::LedgerNats {
                    user: Some(user),
                    password_file: Some(password_file),
                    ..Default::default()
                })
                .unwrap_or_default(),
            tenants_file: profile_file.clone(),
            tenant_secrets_file: Some(ledger_secrets.clone()),
            simplybook_url: simplybook.url(),
            // The fake answers getServiceUrl with its own loopback host.
            simplybook_api_hosts: vec!["127.0.0.1".into()],
            simplybook_page_size: 500,
            simplybook_lookups_per_sec: 0,
            simplybook_lookup_burst: 1,
            anchor_every_secs: 1,
            rekey_chains: false,
            chain_key_file: Some(chain_key.clone()),
            simplybook_timeout_ms: 2000,
            batch_size: 100,
            grpc_tokens: Some(grpc_tokens()),
        };
        let ledger_config = config.clone();
        let token = shutdown.clone();
        tasks.push((
            "ledger",
            tokio::spawn(async move { Ok(ledger::run(config, ledger_l, token).await?) }),
        ));

        invoicing::migrate(&db.url).await?;
        let config = invoicing::Config {
            listen_addr: invoicing,
            database_url: db.runtime_url(invoicing::SCHEMA),
            migrate_only: false,
            db_max_connections: 5,
            nats_url: nats_url.clone(),
            nats_namespace: namespace.clone(),
            nats_identity: login("invoicing")
                .map(|(user, password_file)| invoicing::InvoicingNats {
                    user: Some(user),
                    password_file: Some(password_file),
                    ..Default::default()
                })
                .unwrap_or_default(),
            tenants_file: Some(profile_file.clone()),
            ledger_url: format!("http://{ledger}"),
            bank_details: BANK_DETAILS.into(),
            stripe_api_key: Some(Secret::new(STRIPE_API_KEY.to_string())),
            stripe_api_base: stripe.url(),
            stripe_timeout_ms: 2000,
            ledger_token: Some(Secret::new(VIEWER_TOKEN.to_string())),
            grpc_tokens: Some(grpc_tokens()),
        };
        let token = shutdown.clone();
        tasks.push((
            "invoicing",
            tokio::spawn(async move { Ok(invoicing::run(config, invoicing_l, token).await?) }),
        ));

        notifier::migrate(&db.url).await?;
        let config = notifier::Config {
            listen_addr: notifier,
            database_url: db.runtime_url(notifier::SCHEMA),
            migrate_only: false,
            nats_url: nats_url.clone(),
            nats_namespace: namespace.clone(),
            nats_identity: login("notifier")
                .map(|(user, password_file)| notifier::NotifierNats {
                    user: Some(user),
                    password_file: Some(password_file),
                    ..Default::default()
                })
                .unwrap_or_default(),
            invoicing_url: format!("http://{invoicing}"),
            invoicing_token: Some(Secret::new(VIEWER_TOKEN.to_string())),
            grpc_tokens: Some(grpc_tokens()),
            smtp_host: "127.0.0.1".into(),
            smtp_port: mail.addr().port(),
            smtp_tls: mail_settings.tls,
            smtp_username: mail_settings.login.as_ref().map(|(user, _)| user.clone()),
            smtp_password: mail_settings
                .login
                .as_ref()
                .map(|(_, password)| Secret::new(password.clone())),
            smtp_tls_ca_file: smtp_ca_file,
            from: "Platform Billing <billing@platform.example.test>".parse()?,
            operator_email: Some(OPERATOR_EMAIL.parse()?),
            operator_name: Some("Platform Operator Pty Ltd".into()),
            operator_address: "1 Example Street; Sydney NSW 2000".into(),
            operator_tax_id: "ABN 00 000 000 000 (fake)".into(),
        };
        let notifier_config = config.clone();
        let token = shutdown.clone();
        tasks.push((
            "notifier",
            tokio::spawn(async move { Ok(notifier::run(config, notifier_l, token).await?) }),
        ));

        let system = System {
            db: Some(db),
            namespace,
            nats_url,
            tenants_file,
            mail,
            simplybook,
            simplybook_kenji,
            stripe,
            ingest,
            ledger,
            invoicing,
            notifier,
            ingest_config,
            ledger_config,
            notifier_config,
            shutdown,
            tasks,
            dir,
        };
        for addr in [
            system.ingest,
            system.ledger,
            system.invoicing,
            system.notifier,
        ] {
            system.wait_ready(addr).await?;
        }
        Ok(system)
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

    /// Starts one more ingest replica with its own shutdown token (for tests that stop it).
    pub async fn spawn_ingest(&self) -> anyhow::Result<Replica> {
        let config = self.ingest_config.clone();
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
        self.ledger_config.clone()
    }

    /// Starts one more ledger replica on the same database and durable consumer, with its own
    /// shutdown token.
    pub async fn spawn_ledger(&self) -> anyhow::Result<Replica> {
        let config = self.ledger_config.clone();
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
        let mut config = self.notifier_config.clone();
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
        tokio::process::Command::new(&bin)
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
        let url = &self.db.as_ref().context("database already dropped")?.url;
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
