//! Emails through SMTP (lettre): plain-text and HTML parts, the PDF attached, and a Message-ID
//! derived from the logical message so that a resend is recognisably the same email.

use std::time::Duration;

use billing_domain::Secret;
use billing_proto::invoicing::Invoice;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How the notifier talks to its SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SmtpTls {
    /// Plain SMTP (a relay on localhost or inside the cluster).
    None,
    /// STARTTLS, required (port 587).
    Starttls,
    /// Implicit TLS (port 465).
    Tls,
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The server refused for good (5xx): retrying cannot help.
    #[error("smtp rejected the message: {0}")]
    Permanent(String),
    /// Connection failures, timeouts and 4xx: try again later.
    #[error("smtp unavailable: {0}")]
    Transient(String),
    #[error("invalid address {0:?}")]
    Address(String),
    #[error("building the message: {0}")]
    Build(String),
}

pub fn transport(s: &SmtpSettings) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let builder = match s.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host),
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)
            .map_err(|e| MailError::Build(e.to_string()))?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host)
            .map_err(|e| MailError::Build(e.to_string()))?,
    };
    let mut builder = builder.port(s.port).timeout(Some(Duration::from_secs(30)));
    if let (Some(user), Some(password)) = (&s.username, &s.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().clone()));
    }
    Ok(builder.build())
}

/// `<invoice-issued.{id}@{domain of the sender}>`: one per logical email.
pub fn message_id(kind: &str, invoice_id: &str, from: &Mailbox) -> String {
    format!("<{kind}.{invoice_id}@{}>", from.email.domain())
}

/// The "invoice issued" email with its PDF.
pub fn invoice_issued(
    from: &Mailbox,
    invoice: &Invoice,
    pdf: Vec<u8>,
    message_id: &str,
) -> Result<Message, MailError> {
    let to: Mailbox = invoice
        .billing_email
        .parse()
        .map_err(|_| MailError::Address(invoice.billing_email.clone()))?;
    let to = Mailbox::new(Some(invoice.tenant_name.clone()), to.email);
    let total = invoice
        .total
        .as_ref()
        .map(|m| format!("{} {}", m.currency_code, m.amount))
        .unwrap_or_default();
    let plain = format!(
        "Hello {name},\n\nYour invoice {number} for platform fees in {period} is attached.\n\n\
         Bookings: {count}\nTotal due: {total}\nDue date: {due}\n\n\
         Please quote {number} with your payment.\n\nThank you.\n",
        name = invoice.tenant_name,
        number = invoice.number,
        period = invoice.period,
        count = invoice.booking_count,
        due = invoice.due_date,
    );
    let html = format!(
        "<p>Hello {name},</p><p>Your invoice <strong>{number}</strong> for platform fees in \
         {period} is attached.</p><table><tr><td>Bookings</td><td>{count}</td></tr>\
         <tr><td>Total due</td><td><strong>{total}</strong></td></tr>\
         <tr><td>Due date</td><td>{due}</td></tr></table>\
         <p>Please quote {number} with your payment.</p><p>Thank you.</p>",
        name = escape(&invoice.tenant_name),
        number = escape(&invoice.number),
        period = escape(&invoice.period),
        count = invoice.booking_count,
        total = escape(&total),
        due = escape(&invoice.due_date),
    );
    let pdf_type =
        ContentType::parse("application/pdf").map_err(|e| MailError::Build(e.to_string()))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(format!(
            "Invoice {} – platform fees {}",
            invoice.number, invoice.period
        ))
        .message_id(Some(message_id.to_string()))
        .multipart(
            MultiPart::mixed()
                .multipart(MultiPart::alternative_plain_html(plain, html))
                .singlepart(Attachment::new(format!("{}.pdf", invoice.number)).body(pdf, pdf_type)),
        )
        .map_err(|e| MailError::Build(e.to_string()))
}

pub async fn send(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    message: Message,
) -> Result<(), MailError> {
    match transport.send(message).await {
        Ok(_) => Ok(()),
        Err(err) if err.is_permanent() => Err(MailError::Permanent(err.to_string())),
        Err(err) => Err(MailError::Transient(err.to_string())),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
