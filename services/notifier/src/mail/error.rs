//! What can go wrong with an email: a refusal of the message (never retried), of our session
//! (retried until the settings are fixed), an outage (retried), or an email that cannot be built.

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The server refused this message or its recipient for good (550–556): retrying cannot
    /// help.
    #[error("smtp rejected the message: {0}")]
    Permanent(String),
    /// Connection failures, timeouts and 4xx: try again later.
    #[error("smtp unavailable: {0}")]
    Transient(String),
    /// A 5xx that is about us, not the message (authentication, commands the server does not
    /// accept): every email would fail the same way, so none is dead-lettered; retried until
    /// the configuration is fixed.
    #[error("smtp refused our session (check the SMTP settings): {0}")]
    Server(String),
    #[error("invalid address {0:?}")]
    Address(String),
    #[error("building the message: {0}")]
    Build(String),
}
