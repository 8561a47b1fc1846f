//! Emails through SMTP (lettre): what each email says (invoice issued or resent, payment
//! reminder, payment received, operator alert), as plain-text and HTML parts, and the SMTP transport.
//!
//! # Layout
//!
//! - `error`: what can go wrong with an email, as the consumer decides its fate by it.
//! - `email`: an email's parts (recipient, words, attachment), rendered as plain text and HTML
//!   into an RFC 5322 message with a stable, opaque Message-ID.
//! - `compose`: what each email says, from the invoice, payment or alert it is about.
//! - `smtp`: the SMTP transport (TLS, a private CA, AUTH) and each refusal classified.

mod compose;
mod email;
mod error;
mod smtp;

pub use compose::{
    invoice_issued, invoice_resent, operator_alert, payment_received, payment_reminder,
};
pub use email::{Body, Email, message_id};
pub use error::MailError;
pub use smtp::{SmtpSettings, SmtpTls, send, transport};
