//! The services the console calls, exactly as billingctl does: one gRPC client each over a
//! channel that carries the console's own token and the trace context. A write also carries the
//! signed-in operator's name (`billing-operator`) and console role (`billing-operator-role`),
//! which the services record (`dana as billing (console)`).

use std::time::Duration;

use billing_domain::Secret;
use billing_proto::invoicing::invoicing_service_client::InvoicingServiceClient;
use billing_proto::ledger::ledger_service_client::LedgerServiceClient;
use billing_proto::notifier::notifier_service_client::NotifierServiceClient;
use billing_runtime::auth::TokensError;
use billing_runtime::trace::{TracedChannel, traced};
use tonic::transport::Endpoint;

use crate::sessions::Session;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{setting} is not a valid address")]
    Address { setting: &'static str },
    #[error("CONSOLE_TOKEN: {0}")]
    Token(#[from] TokensError),
}

#[derive(Clone)]
pub struct Backend {
    pub ledger: LedgerServiceClient<TracedChannel>,
    pub invoicing: InvoicingServiceClient<TracedChannel>,
    pub notifier: NotifierServiceClient<TracedChannel>,
}

fn channel(
    url: &str,
    setting: &'static str,
    token: &Secret<String>,
    timeout: Duration,
) -> Result<TracedChannel, BackendError> {
    let channel = Endpoint::from_shared(url.to_string())
        .map_err(|_| BackendError::Address { setting })?
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .connect_lazy();
    Ok(traced(channel, token)?)
}

impl Backend {
    /// Clients of the three services; they connect on their first call.
    pub fn new(
        ledger_url: &str,
        invoicing_url: &str,
        notifier_url: &str,
        token: &Secret<String>,
        timeout: Duration,
    ) -> Result<Self, BackendError> {
        Ok(Backend {
            ledger: LedgerServiceClient::new(channel(
                ledger_url,
                "CONSOLE_LEDGER_URL",
                token,
                timeout,
            )?),
            invoicing: InvoicingServiceClient::new(channel(
                invoicing_url,
                "CONSOLE_INVOICING_URL",
                token,
                timeout,
            )?),
            notifier: NotifierServiceClient::new(channel(
                notifier_url,
                "CONSOLE_NOTIFIER_URL",
                token,
                timeout,
            )?),
        })
    }
}

/// `message` as a write made for the session's operator: their name (`billing-operator`) and
/// the role the console gave them (`billing-operator-role`), which the services record as the
/// console's (`dana as billing (console)`) rather than the role of the console's token, and
/// which caps what the call may do there too.
pub fn as_operator<T>(message: T, who: &Session) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert(
        billing_runtime::operator::METADATA,
        who.operator.metadata_value(),
    );
    metadata.insert(
        billing_runtime::operator::ROLE_METADATA,
        tonic::metadata::MetadataValue::from_static(who.role.as_str()),
    );
    request
}
