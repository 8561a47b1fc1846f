//! The services billingctl calls: where they are, the token it calls them with, who is calling
//! (`--as`), one gRPC client for each, and the calls more than one command makes.

use std::time::Duration;

use anyhow::Context as _;
use billing_domain::Secret;
use billing_proto::invoicing::invoicing_service_client::InvoicingServiceClient;
use billing_proto::invoicing::{GetTenantProfileRequest, TenantProfile};
use billing_proto::ledger::ledger_service_client::LedgerServiceClient;
use billing_proto::notifier::notifier_service_client::NotifierServiceClient;
use billing_runtime::operator::Operator;
use billing_runtime::trace::{TracedChannel, traced};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Endpoint;

/// A channel to a service: the token and the trace context ([`traced`]), and who is acting.
pub type Channel = InterceptedService<TracedChannel, Actor>;

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
    /// Who is acting, sent with every call as `billing-operator` and recorded by the writes it
    /// makes (invoice history, payments, replays, erasures) beside the token's role: 1-64
    /// characters of A-Z, a-z, 0-9, '.', '_', '@', '-'. Default: $USER; when that is unset, no
    /// name, and the records name only the token's role.
    #[arg(
        long = "as",
        global = true,
        env = "BILLINGCTL_AS",
        value_name = "NAME",
        value_parser = actor_name
    )]
    actor: Option<Actor>,
}

/// Who is acting, as the `billing-operator` metadata of every call
/// ([`billing_runtime::operator`]); none: the services record only the token's role.
#[derive(Clone, Debug, Default)]
pub struct Actor(Option<Operator>);

impl Interceptor for Actor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(name) = &self.0 {
            request
                .metadata_mut()
                .insert(billing_runtime::operator::METADATA, name.metadata_value());
        }
        Ok(request)
    }
}

/// `--as`: a name the services accept ([`Operator::parse`]), surrounding spaces dropped.
fn actor_name(value: &str) -> Result<Actor, String> {
    Operator::parse(value.trim())
        .map(|name| Actor(Some(name)))
        .map_err(|_| {
            format!(
                "a name must be 1-{} characters of A-Z, a-z, 0-9, '.', '_', '@' and '-' (a login \
                 name or an email address)",
                billing_runtime::operator::MAX_LEN
            )
        })
}

impl Conn {
    /// A channel to `url` that sends the token with every call. It connects on the first call,
    /// so an unreachable service shows as that call's `Unavailable`.
    fn channel(&self, url: &str) -> anyhow::Result<Channel> {
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
        Ok(InterceptedService::new(
            traced(channel, token)?,
            self.actor()?,
        ))
    }

    /// `--as` (or `BILLINGCTL_AS`), else `$USER` when set, else nobody.
    fn actor(&self) -> anyhow::Result<Actor> {
        if let Some(actor) = &self.actor {
            return Ok(actor.clone());
        }
        let Some(user) = std::env::var_os("USER").filter(|u| !u.is_empty()) else {
            return Ok(Actor::default());
        };
        let user = user.to_string_lossy();
        actor_name(&user).map_err(|why| {
            // As the ledger would answer this name (exit status 64).
            tonic::Status::invalid_argument(format!(
                "$USER ({user:?}) cannot name who is acting: {why}; set --as or BILLINGCTL_AS"
            ))
            .into()
        })
    }

    pub fn ledger(&self) -> anyhow::Result<LedgerServiceClient<Channel>> {
        Ok(LedgerServiceClient::new(self.channel(&self.ledger_url)?))
    }

    pub fn invoicing(&self) -> anyhow::Result<InvoicingServiceClient<Channel>> {
        Ok(InvoicingServiceClient::new(
            self.channel(&self.invoicing_url)?,
        ))
    }

    pub fn notifier(&self) -> anyhow::Result<NotifierServiceClient<Channel>> {
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
    invoicing: &mut InvoicingServiceClient<Channel>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(value: &str) -> Result<String, String> {
        let Actor(name) = actor_name(value)?;
        Ok(name.map(|n| n.to_string()).unwrap_or_default())
    }

    #[test]
    fn a_name_is_what_the_services_accept_trimmed() {
        assert_eq!(sent("Dana").as_deref(), Ok("Dana"));
        assert_eq!(
            sent("  dana@example.org ").as_deref(),
            Ok("dana@example.org")
        );
        assert_eq!(sent(&"x".repeat(64)).map(|n| n.len()), Ok(64));
        for refused in [
            "",
            "   ",
            "Zoë",
            "Dana (privacy officer)",
            "tab\there",
            "line\nbreak",
        ] {
            assert!(sent(refused).is_err(), "{refused:?}");
        }
        assert!(sent(&"x".repeat(65)).is_err());
    }
}
