//! The services billingctl calls: where they are, the token it calls them with, one gRPC client
//! for each, and the calls more than one command makes.

use std::time::Duration;

use anyhow::Context as _;
use billing_domain::Secret;
use billing_proto::invoicing::invoicing_service_client::InvoicingServiceClient;
use billing_proto::invoicing::{GetTenantProfileRequest, TenantProfile};
use billing_proto::ledger::ledger_service_client::LedgerServiceClient;
use billing_proto::notifier::notifier_service_client::NotifierServiceClient;
use billing_runtime::trace::{TracedChannel, traced};
use tonic::transport::Endpoint;

/// Where the services are and the token to call them with.
#[derive(clap::Args)]
pub struct Conn {
    /// The ledger's gRPC address.
    #[arg(
        long,
        global = true,
        env = "BILLINGCTL_LEDGER_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8081"
    )]
    ledger_url: String,
    /// The invoicing service's gRPC address.
    #[arg(
        long,
        global = true,
        env = "BILLINGCTL_INVOICING_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8082"
    )]
    invoicing_url: String,
    /// The notifier's gRPC address (invoice PDFs and emails).
    #[arg(
        long,
        global = true,
        env = "BILLINGCTL_NOTIFIER_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8083"
    )]
    notifier_url: String,
    /// The bearer token billingctl calls the services with; its role (viewer, billing, admin)
    /// decides what it may do. Prefer the environment variable: a flag shows in `ps`.
    #[arg(
        long,
        global = true,
        env = "BILLINGCTL_TOKEN",
        hide_env_values = true,
        value_parser = billing_runtime::config::SecretParser
    )]
    token: Option<Secret<String>>,
    /// How long one call may take (a reconciliation of many tenants takes minutes).
    #[arg(
        long,
        global = true,
        env = "BILLINGCTL_TIMEOUT_SECS",
        default_value_t = 120
    )]
    timeout_secs: u64,
}

impl Conn {
    /// A channel to `url` that sends the token with every call. It connects on the first call,
    /// so an unreachable service shows as that call's `Unavailable`.
    fn channel(&self, url: &str) -> anyhow::Result<TracedChannel> {
        // As the services would answer a call without one (exit status 77, with the hint).
        let token = self.token.as_ref().ok_or_else(|| {
            tonic::Status::unauthenticated(
                "no token: set BILLINGCTL_TOKEN (or --token) to a token of role viewer, billing or admin",
            )
        })?;
        let channel = Endpoint::from_shared(url.to_string())
            .with_context(|| format!("invalid service address {url:?}"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(self.timeout_secs))
            .connect_lazy();
        Ok(traced(channel, token)?)
    }

    pub fn ledger(&self) -> anyhow::Result<LedgerServiceClient<TracedChannel>> {
        Ok(LedgerServiceClient::new(self.channel(&self.ledger_url)?))
    }

    pub fn invoicing(&self) -> anyhow::Result<InvoicingServiceClient<TracedChannel>> {
        Ok(InvoicingServiceClient::new(
            self.channel(&self.invoicing_url)?,
        ))
    }

    pub fn notifier(&self) -> anyhow::Result<NotifierServiceClient<TracedChannel>> {
        Ok(NotifierServiceClient::new(
            self.channel(&self.notifier_url)?,
        ))
    }

    /// The three addresses, for a hint when a service cannot be reached.
    pub fn urls(&self) -> String {
        format!(
            "ledger {}, invoicing {}, notifier {}",
            self.ledger_url, self.invoicing_url, self.notifier_url
        )
    }
}

/// One tenant's profile; an unknown tenant is an error that says so.
pub async fn profile(
    invoicing: &mut InvoicingServiceClient<TracedChannel>,
    tenant: &str,
) -> anyhow::Result<TenantProfile> {
    match invoicing
        .get_tenant_profile(GetTenantProfileRequest {
            tenant_id: tenant.to_string(),
        })
        .await
    {
        Ok(response) => Ok(response.into_inner()),
        Err(status) if status.code() == tonic::Code::NotFound => {
            Err(anyhow::Error::new(status).context(format!("unknown tenant {tenant:?}")))
        }
        Err(status) => Err(status.into()),
    }
}

/// Whether `err` is the service's `NotFound` (as [`profile`] returns for an unknown tenant).
pub fn is_not_found(err: &anyhow::Error) -> bool {
    err.downcast_ref::<tonic::Status>()
        .is_some_and(|s| s.code() == tonic::Code::NotFound)
}
