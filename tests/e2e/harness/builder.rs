//! [`Builder`]: which services a test system runs, and how.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use billing_testkit::{FakeSimplyBook, FakeStripe, MailSink, TestDatabase};
use tokio_util::sync::CancellationToken;

use super::metrics::samples;
use super::occupancy::Occupant;
use super::system::{Mail, NOT_STARTED, System};
use super::*;

/// Which services a system runs.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Services {
    pub(super) ingest: bool,
    pub(super) ledger: bool,
    pub(super) invoicing: bool,
    pub(super) notifier: bool,
}

/// A system with only the services a test needs: [`System::builder`]. The fakes (SimplyBook,
/// Stripe, the mail sink) always run; the database is made when a service that has a schema
/// runs. A service does not bring the ones it calls: invoicing asks the ledger, the notifier
/// invoicing, so a test that goes that far names them too.
#[must_use]
pub struct Builder {
    pub(super) services: Services,
    pub(super) nats_url: Option<String>,
    pub(super) logins: Option<PathBuf>,
    pub(super) namespace: Option<String>,
    pub(super) mail: Mail,
    pub(super) alone: bool,
    pub(super) replicas: Option<u8>,
    /// Flags the ledger starts with beyond the harness's own.
    pub(super) ledger_flags: Vec<(&'static str, String)>,
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

    /// The ledger starts with `flag` set to `value` (one of its command-line flags).
    pub fn ledger_flag(mut self, flag: &'static str, value: impl Into<String>) -> Self {
        self.ledger_flags.push((flag, value.into()));
        self
    }

    /// Every service creates and keeps the streams on `replicas` servers (a cluster's).
    pub fn replicas(mut self, replicas: u8) -> Self {
        self.replicas = Some(replicas);
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
