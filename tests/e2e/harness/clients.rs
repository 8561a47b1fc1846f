//! How a test reaches a running [`System`]: its metrics, billingctl, gRPC clients, webhooks,
//! NATS streams and database.

use std::net::SocketAddr;

use anyhow::Context;
use billing_domain::Secret;
use billing_domain::standard_webhooks::SigningKey;
use billing_proto::invoicing::invoicing_service_client::InvoicingServiceClient;
use billing_proto::ledger::ledger_service_client::LedgerServiceClient;
use billing_proto::notifier::notifier_service_client::NotifierServiceClient;
use billing_runtime::Subjects;
use billing_runtime::trace::{TracedChannel, traced};
use futures::StreamExt;

use super::metrics::{Metrics, samples};
use super::system::System;
use super::*;

impl System {
    /// The `/metrics` page of the service at `addr`, for a system started
    /// [`alone`](super::builder::Builder::alone): every service of a process records into one
    /// recorder, so under `cargo test` another test's services would count into what this one
    /// reads.
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
        self.channel_as(addr, ADMIN_TOKEN)
    }

    /// A gRPC channel to `addr` carrying `token`.
    pub fn channel_as(&self, addr: SocketAddr, token: &str) -> anyhow::Result<TracedChannel> {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect_lazy();
        Ok(traced(channel, &Secret::new(token.to_string()))?)
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
        let mut command = self.billingctl_command(token, args)?;
        let bin = std::path::PathBuf::from(command.as_std().get_program());
        command
            .output()
            .await
            .with_context(|| format!("running {}", bin.display()))
    }

    /// billingctl with `token` and `args`, set up to run against this system, for a test that
    /// runs it its own way (its stdout closed, say).
    pub fn billingctl_command(
        &self,
        token: &str,
        args: &[&str],
    ) -> anyhow::Result<tokio::process::Command> {
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
            .env("BILLINGCTL_TOKEN", token);
        Ok(command)
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
        // One server, or a cluster's seeds separated by commas.
        let seeds: Vec<&str> = self.nats_url.split(',').collect();
        let client = async_nats::connect(seeds).await?;
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
}
