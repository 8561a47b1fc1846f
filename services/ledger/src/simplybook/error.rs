//! What can go wrong asking SimplyBook: [`FetchError`] for callers, and the transport's own
//! [`CallError`] it is made from (SimplyBook's code decides which).

use billing_domain::booking::PayloadError;
use billing_domain::simplybook::codes;
use billing_domain::simplybook::{DetailsError, RpcError};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// SimplyBook could not be asked (network, timeout, 5xx): try again later.
    #[error("simplybook unavailable: {0}")]
    Unavailable(String),
    /// SimplyBook answered no (wrong hash, unknown booking, refused credentials), or the tenant
    /// lacks the credentials for the call: the booking is not confirmed.
    #[error("{0}")]
    Refused(String),
    /// SimplyBook has no such booking ("Appointment couldn't be found").
    #[error("{0}")]
    NotFound(String),
    /// The company does not use the feature asked about ("Plugin is not activated").
    #[error("{0}")]
    FeatureOff(String),
    /// SimplyBook refuses the admin login this needs, whatever the credentials (its HIPAA
    /// feature): the work is not possible for this company.
    #[error("{0}")]
    NotPossible(String),
    /// SimplyBook's answer is not a booking we can record (malformed, or unknown value).
    #[error(transparent)]
    Details(#[from] DetailsError),
}

impl From<PayloadError> for FetchError {
    fn from(e: PayloadError) -> Self {
        FetchError::Details(DetailsError::Payload(e))
    }
}

pub(super) enum CallError {
    Transport(String),
    Rpc { method: String, error: RpcError },
    Unreadable(String),
}

impl CallError {
    pub(super) fn into_fetch(self) -> FetchError {
        match self {
            CallError::Transport(m) => FetchError::Unavailable(m),
            CallError::Rpc { method, error } if error.is_internal() => {
                FetchError::Unavailable(format!("{method}: {error}"))
            }
            CallError::Rpc { method, error } if error.is_admin_login_refused() => {
                FetchError::NotPossible(format!(
                    "SimplyBook refuses the admin login for this company ({method}: {error})"
                ))
            }
            CallError::Rpc { method, error } => {
                let message = format!("{method}: {error}");
                match error.code {
                    Some(codes::BOOKING_NOT_FOUND) => FetchError::NotFound(message),
                    Some(codes::PLUGIN_NOT_ACTIVATED) => FetchError::FeatureOff(message),
                    _ => FetchError::Refused(message),
                }
            }
            CallError::Unreadable(m) => FetchError::Refused(m),
        }
    }
}
