//! Emails through SMTP (lettre): what each email says (invoice issued, payment reminder, payment
//! received, operator alert), as plain-text and HTML parts, and the SMTP transport.

use std::time::Duration;

use billing_domain::Secret;
use billing_proto::convert;
use billing_proto::events::{AlertV1, PaymentRecordedV1};
use billing_proto::invoicing::Invoice;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::{Digest, Sha256};

use crate::text::{long_date, money};

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
    /// PEM file of CA certificates to trust besides the public roots (an internal relay's
    /// private CA); only with `starttls` or `tls`.
    pub tls_ca_file: Option<std::path::PathBuf>,
}

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

/// The Message-ID of one logical email, named by its kind, reference (an invoice or alert id)
/// and version: `<32 hex digits@domain>`, the first 128 bits of a SHA-256 over the three parts.
/// Stable, so every attempt at the same email carries the same id and a resend shows as one
/// message; opaque, so recipients and the mail servers on the way learn no internal id (the old
/// `<kind.reference.version@domain>` showed the invoice's UUID).
pub fn message_id(kind: &str, reference: &str, version: u32, domain: &str) -> String {
    let mut sha = Sha256::new();
    sha.update(b"billing-tracker/message-id/v1");
    for part in [kind, reference, &version.to_string()] {
        // Length-prefixed, so no two different triples hash the same bytes.
        sha.update(u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        sha.update(part.as_bytes());
    }
    let digest = sha.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("<{hex}@{domain}>")
}

pub fn transport(s: &SmtpSettings) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    // SMTP AUTH over a plain connection hands the password to anyone on the path.
    if s.tls == SmtpTls::None && (s.username.is_some() || s.password.is_some()) {
        return Err(MailError::Build(
            "NOTIFIER_SMTP_USERNAME/NOTIFIER_SMTP_PASSWORD with NOTIFIER_SMTP_TLS=none would send \
             the password in clear: use starttls or tls"
                .into(),
        ));
    }
    if s.tls == SmtpTls::None && s.tls_ca_file.is_some() {
        return Err(MailError::Build(
            "NOTIFIER_SMTP_TLS_CA_FILE with NOTIFIER_SMTP_TLS=none: no certificate would be \
             checked; use starttls or tls"
                .into(),
        ));
    }
    // What lettre's `starttls_relay` and `relay` build, with our trusted roots.
    let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host);
    let builder = match s.tls {
        SmtpTls::None => builder,
        SmtpTls::Starttls => builder.tls(Tls::Required(tls_parameters(s)?)),
        SmtpTls::Tls => builder.tls(Tls::Wrapper(tls_parameters(s)?)),
    };
    let mut builder = builder.port(s.port).timeout(Some(Duration::from_secs(30)));
    if let (Some(user), Some(password)) = (&s.username, &s.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().clone()));
    }
    Ok(builder.build())
}

/// The server's certificate must name `host` and chain to a public root (webpki-roots) or to a
/// CA in `NOTIFIER_SMTP_TLS_CA_FILE`. The file is read once, here, at start.
fn tls_parameters(s: &SmtpSettings) -> Result<TlsParameters, MailError> {
    let builder = TlsParameters::builder(s.host.clone());
    let Some(path) = &s.tls_ca_file else {
        return builder.build().map_err(|e| MailError::Build(e.to_string()));
    };
    let refused = |why: String| {
        MailError::Build(format!(
            "NOTIFIER_SMTP_TLS_CA_FILE {}: {why}",
            path.display()
        ))
    };
    let pem = std::fs::read(path).map_err(|e| refused(e.to_string()))?;
    // lettre reads a file without any certificate as an empty list: nothing would be trusted,
    // and nothing said.
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    if !pem.windows(BEGIN.len()).any(|w| w == BEGIN) {
        return Err(refused("no PEM certificate in it".into()));
    }
    let ca = Certificate::from_pem(&pem).map_err(|e| refused(e.to_string()))?;
    // A certificate that does not parse is refused here.
    builder
        .add_root_certificate(ca)
        .build()
        .map_err(|e| refused(e.to_string()))
}

/// An email ready to be built: who gets it, what it says, what is attached.
#[derive(Debug)]
pub struct Email {
    pub to: Mailbox,
    pub subject: String,
    pub body: Body,
    pub attachment: Option<(String, Vec<u8>)>,
}

/// The words of an email, written once and rendered as both plain text and HTML.
#[derive(Debug, Default)]
pub struct Body {
    pub greeting: String,
    pub paragraphs: Vec<String>,
    /// Label and value rows ("Total due", "AUD 32.00").
    pub facts: Vec<(String, String)>,
    /// Text and URL of a button-like link.
    pub link: Option<(String, String)>,
    pub closing: Vec<String>,
}

impl Body {
    fn plain(&self) -> String {
        let mut out = format!("{}\n\n", self.greeting);
        for p in &self.paragraphs {
            out.push_str(p);
            out.push_str("\n\n");
        }
        if !self.facts.is_empty() {
            let width = self.facts.iter().map(|(l, _)| l.chars().count()).max();
            for (label, value) in &self.facts {
                let pad = width.unwrap_or(0) - label.chars().count();
                out.push_str(&format!("{label}:{} {value}\n", " ".repeat(pad)));
            }
            out.push('\n');
        }
        if let Some((text, url)) = &self.link {
            out.push_str(&format!("{text}: {url}\n\n"));
        }
        for p in &self.closing {
            out.push_str(p);
            out.push('\n');
        }
        out
    }

    fn html(&self) -> String {
        let mut out = String::from(
            "<!DOCTYPE html><html><body style=\"font-family:Helvetica,Arial,sans-serif;\
             color:#222;font-size:14px;line-height:1.5\">",
        );
        out.push_str(&format!("<p>{}</p>", escape(&self.greeting)));
        for p in &self.paragraphs {
            out.push_str(&format!("<p>{}</p>", escape(p)));
        }
        if !self.facts.is_empty() {
            out.push_str("<table style=\"border-collapse:collapse;margin:8px 0\">");
            for (label, value) in &self.facts {
                out.push_str(&format!(
                    "<tr><td style=\"padding:2px 16px 2px 0;color:#666\">{}</td>\
                     <td style=\"padding:2px 0\"><strong>{}</strong></td></tr>",
                    escape(label),
                    escape(value)
                ));
            }
            out.push_str("</table>");
        }
        if let Some((text, url)) = &self.link {
            out.push_str(&format!(
                "<p><a href=\"{}\" style=\"background:#1f4e8c;color:#fff;padding:8px 14px;\
                 border-radius:4px;text-decoration:none\">{}</a></p>",
                escape(url),
                escape(text)
            ));
        }
        for p in &self.closing {
            out.push_str(&format!("<p>{}</p>", escape(p)));
        }
        out.push_str("</body></html>");
        out
    }
}

impl Email {
    /// The RFC 5322 message: plain and HTML alternatives, then the attachment if any.
    pub fn build(self, from: &Mailbox, message_id: &str) -> Result<Message, MailError> {
        let alternatives = MultiPart::alternative_plain_html(self.body.plain(), self.body.html());
        let builder = Message::builder()
            .from(from.clone())
            .to(self.to)
            .subject(self.subject)
            .message_id(Some(message_id.to_string()));
        let message = match self.attachment {
            Some((name, bytes)) => {
                let pdf = ContentType::parse("application/pdf")
                    .map_err(|e| MailError::Build(e.to_string()))?;
                builder.multipart(
                    MultiPart::mixed()
                        .multipart(alternatives)
                        .singlepart(Attachment::new(name).body(bytes, pdf)),
                )
            }
            None => builder.multipart(alternatives),
        };
        message.map_err(|e| MailError::Build(e.to_string()))
    }
}

/// The tenant's billing mailbox, with their legal name.
fn tenant_mailbox(invoice: &Invoice) -> Result<Mailbox, MailError> {
    let to: Mailbox = invoice
        .billing_email
        .parse()
        .map_err(|_| MailError::Address(invoice.billing_email.clone()))?;
    Ok(Mailbox::new(Some(invoice.tenant_name.clone()), to.email))
}

/// How to pay, as sentences and an optional link.
fn how_to_pay(invoice: &Invoice, body: &mut Body) {
    if !invoice.stripe_hosted_url.is_empty() {
        body.link = Some(("Pay online".into(), invoice.stripe_hosted_url.clone()));
    } else if !invoice.payment_instructions.is_empty() {
        body.paragraphs.push(format!(
            "To pay by bank transfer: {} Please quote {} as the reference.",
            invoice.payment_instructions.trim(),
            invoice.number
        ));
    }
}

/// "Invoice issued": the invoice PDF attached.
pub fn invoice_issued(invoice: &Invoice, pdf: Vec<u8>) -> Result<Email, MailError> {
    let mut body = Body {
        greeting: format!("Hello {},", invoice.tenant_name),
        paragraphs: vec![format!(
            "Your invoice {} for platform fees in {} is attached.",
            invoice.number,
            month(invoice)
        )],
        facts: vec![
            ("Invoice".into(), invoice.number.clone()),
            ("Bookings".into(), invoice.booking_count.to_string()),
            ("Total due".into(), money(invoice.total.as_ref())),
            ("Due date".into(), long_date(&invoice.due_date)),
        ],
        closing: vec!["Thank you.".into()],
        ..Body::default()
    };
    how_to_pay(invoice, &mut body);
    Ok(Email {
        to: tenant_mailbox(invoice)?,
        subject: format!(
            "Invoice {} – platform fees {}",
            invoice.number,
            month(invoice)
        ),
        body,
        attachment: Some((format!("{}.pdf", invoice.number), pdf)),
    })
}

/// "Payment reminder" for an overdue invoice, with its current PDF.
pub fn payment_reminder(invoice: &Invoice, pdf: Vec<u8>) -> Result<Email, MailError> {
    let mut body = Body {
        greeting: format!("Hello {},", invoice.tenant_name),
        paragraphs: vec![format!(
            "Our records show that invoice {} was due on {} and has not been paid in full. \
             If you have already paid, thank you, and please ignore this reminder.",
            invoice.number,
            long_date(&invoice.due_date)
        )],
        facts: vec![
            ("Invoice".into(), invoice.number.clone()),
            ("Total".into(), money(invoice.total.as_ref())),
            ("Paid so far".into(), money(invoice.amount_paid.as_ref())),
            ("Balance due".into(), money(invoice.balance.as_ref())),
        ],
        closing: vec!["Thank you.".into()],
        ..Body::default()
    };
    how_to_pay(invoice, &mut body);
    Ok(Email {
        to: tenant_mailbox(invoice)?,
        subject: format!("Payment reminder: invoice {} is overdue", invoice.number),
        body,
        attachment: Some((format!("{}.pdf", invoice.number), pdf)),
    })
}

/// "Payment received": a receipt for one payment, with the invoice as that payment left it.
pub fn payment_received(
    invoice: &Invoice,
    payment: &PaymentRecordedV1,
) -> Result<Email, MailError> {
    let paid_in_full = payment.status == "paid";
    let total = convert::amount(payment.total.as_ref()).unwrap_or_default();
    let paid = convert::amount(payment.amount_paid.as_ref()).unwrap_or_default();
    let balance = convert::money(
        &payment
            .total
            .as_ref()
            .map(|m| m.currency_code.clone())
            .unwrap_or_default(),
        (total - paid).to_string(),
    );
    let method = match payment.method.as_str() {
        "bank_transfer" => "bank transfer",
        "stripe" => "card (Stripe)",
        other => other,
    };
    let mut body = Body {
        greeting: format!("Hello {},", invoice.tenant_name),
        paragraphs: vec![format!(
            "Thank you: we received {} by {method} on {} for invoice {}.",
            money(payment.amount.as_ref()),
            long_date(&payment.received_on),
            payment.invoice_number
        )],
        facts: vec![
            ("Invoice".into(), payment.invoice_number.clone()),
            ("Payment reference".into(), payment.reference.clone()),
            ("Invoice total".into(), money(payment.total.as_ref())),
            ("Paid so far".into(), money(payment.amount_paid.as_ref())),
        ],
        closing: vec!["Thank you.".into()],
        ..Body::default()
    };
    if paid_in_full {
        body.paragraphs
            .push("The invoice is now paid in full.".to_string());
    }
    if total > paid {
        body.facts
            .push(("Balance due".into(), money(Some(&balance))));
        how_to_pay(invoice, &mut body);
    } else if paid > total {
        let credit = convert::money(&balance.currency_code, (paid - total).to_string());
        body.paragraphs.push(format!(
            "You have paid {} more than the invoice total; we will contact you about the credit.",
            money(Some(&credit))
        ));
    }
    Ok(Email {
        to: tenant_mailbox(invoice)?,
        subject: if paid_in_full {
            format!(
                "Payment received – invoice {} is paid",
                payment.invoice_number
            )
        } else {
            format!("Payment received for invoice {}", payment.invoice_number)
        },
        body,
        attachment: None,
    })
}

/// An operator alert, to the operator's mailbox.
pub fn operator_alert(operator: &Mailbox, alert: &AlertV1) -> Email {
    let mut facts = vec![
        ("Kind".to_string(), alert.kind.clone()),
        ("Severity".to_string(), alert.severity.clone()),
        ("Raised by".to_string(), alert.source.clone()),
        ("Alert id".to_string(), alert.alert_id.clone()),
    ];
    if !alert.tenant_id.is_empty() {
        facts.push(("Tenant".to_string(), alert.tenant_id.clone()));
    }
    if let Some(at) = convert::datetime(alert.raised_at.as_ref()) {
        facts.push(("Raised at".to_string(), at.to_rfc3339()));
    }
    Email {
        to: operator.clone(),
        subject: format!("[{}] {}", alert.severity.to_uppercase(), alert.summary),
        body: Body {
            greeting: "Operator alert.".into(),
            paragraphs: vec![alert.summary.clone(), alert.details.clone()],
            facts,
            link: None,
            closing: vec!["Sent by the billing tracker's notifier.".into()],
        },
        attachment: None,
    }
}

/// "October 2026" from the invoice's "2026-10".
fn month(invoice: &Invoice) -> String {
    chrono::NaiveDate::parse_from_str(&format!("{}-01", invoice.period), "%Y-%m-%d")
        .map(|d| d.format("%B %Y").to_string())
        .unwrap_or_else(|_| invoice.period.clone())
}

pub async fn send(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    message: Message,
) -> Result<(), MailError> {
    match transport.send(message).await {
        Ok(_) => Ok(()),
        // A certificate we do not trust or that names another host, or a relay that offers no
        // mechanism for our credentials: our settings, not an outage, so counted and alerted
        // as a server refusal rather than deferred without end.
        Err(err) if err.is_tls() || err.is_client() || tls_refused(&err) => {
            Err(MailError::Server(format!(
                "our SMTP settings do not work with this server (TLS or authentication): {err}"
            )))
        }
        Err(err) => Err(classify(
            err.is_permanent(),
            err.status().map(u16::from),
            err.to_string(),
        )),
    }
}

/// Whether a TLS session failed (lettre reports an untrusted certificate as a connection
/// error): the rustls error sits inside an `io::Error` in the chain of sources.
fn tls_refused(err: &(dyn std::error::Error + 'static)) -> bool {
    let is_tls = |e: &(dyn std::error::Error + 'static)| {
        e.is::<rustls::Error>()
            || e.downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .is_some_and(|inner| inner.is::<rustls::Error>())
    };
    std::iter::successors(Some(err), |e| e.source()).any(is_tls)
}

/// 550–556 refuse the recipient or this message; other 5xx (530/535 authentication, 500–504
/// command errors) refuse the session, whatever the message.
fn classify(permanent: bool, code: Option<u16>, text: String) -> MailError {
    match code {
        Some(550..=556) if permanent => MailError::Permanent(text),
        _ if permanent => MailError::Server(text),
        _ => MailError::Transient(text),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {

    #[tokio::test]
    async fn credentials_are_never_sent_over_a_plain_connection() {
        let settings = |tls| SmtpSettings {
            host: "smtp.example.test".into(),
            port: 587,
            tls,
            username: Some("billing".into()),
            password: Some(Secret::new("fake-smtp-password".into())),
            tls_ca_file: None,
        };
        let err = transport(&settings(SmtpTls::None)).expect_err("plain with AUTH");
        assert!(err.to_string().contains("in clear"), "{err}");
        assert!(!err.to_string().contains("fake-smtp-password"));
        assert!(transport(&settings(SmtpTls::Starttls)).is_ok());
        assert!(transport(&settings(SmtpTls::Tls)).is_ok());
    }

    use billing_testkit::smtp::{MailSink, Options};

    use super::*;

    const SMTP_USER: &str = "billing";
    const SMTP_PASSWORD: &str = "fake-smtp-password";

    /// Settings for `sink` on loopback (its certificate names 127.0.0.1).
    fn loopback(
        sink: &MailSink,
        tls: SmtpTls,
        password: Option<&str>,
        ca_file: Option<&std::path::Path>,
    ) -> SmtpSettings {
        SmtpSettings {
            host: "127.0.0.1".into(),
            port: sink.addr().port(),
            tls,
            username: password.map(|_| SMTP_USER.to_string()),
            password: password.map(|p| Secret::new(p.to_string())),
            tls_ca_file: ca_file.map(std::path::Path::to_path_buf),
        }
    }

    /// A file of `contents` in a directory of the test's own.
    fn file(name: &str, contents: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("notifier-mail-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write");
        path
    }

    #[tokio::test]
    async fn the_smtp_ca_file_is_read_at_start_and_refused_when_it_cannot_be_used() {
        let sink = MailSink::start_with(Options::default().starttls())
            .await
            .expect("sink");
        let ca = file("ca.pem", sink.ca_pem().expect("CA"));
        let refusal = |tls, path: &std::path::Path| match transport(&loopback(
            &sink,
            tls,
            None,
            Some(path),
        )) {
            Ok(_) => String::new(),
            Err(err) => err.to_string(),
        };
        assert_eq!(refusal(SmtpTls::Starttls, &ca), "");
        assert_eq!(refusal(SmtpTls::Tls, &ca), "");
        let none = refusal(SmtpTls::None, &ca);
        assert!(none.contains("NOTIFIER_SMTP_TLS=none"), "{none}");
        let missing = ca.with_file_name("missing.pem");
        let err = refusal(SmtpTls::Starttls, &missing);
        assert!(err.contains(&missing.display().to_string()), "{err}");
        let err = refusal(SmtpTls::Starttls, &file("key.pem", "not a certificate\n"));
        assert!(err.contains("no PEM certificate"), "{err}");
        let garbage =
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
        let err = refusal(SmtpTls::Starttls, &file("garbage.pem", garbage));
        assert!(err.contains("NOTIFIER_SMTP_TLS_CA_FILE"), "{err}");
    }

    /// Over real loopback SMTP: STARTTLS to a server whose certificate only the CA file
    /// vouches for, AUTH, and what each refusal is taken for.
    #[tokio::test]
    async fn starttls_and_auth_to_a_relay_with_a_private_ca() {
        let sink = MailSink::start_with(Options::default().require_auth(SMTP_USER, SMTP_PASSWORD))
            .await
            .expect("sink");
        let ca = file("ca.pem", sink.ca_pem().expect("CA"));
        let attempt = |password: Option<&str>, ca: Option<&std::path::Path>| {
            let settings = loopback(&sink, SmtpTls::Starttls, password, ca);
            async move {
                let smtp = transport(&settings).expect("transport");
                let alert = AlertV1 {
                    alert_id: "a1".into(),
                    summary: "test".into(),
                    ..AlertV1::default()
                };
                let message = operator_alert(&from(), &alert)
                    .build(&from(), "<a1@example.test>")
                    .expect("message");
                send(&smtp, message).await
            }
        };

        let sent = attempt(Some(SMTP_PASSWORD), Some(&ca)).await;
        assert!(sent.is_ok(), "{sent:?}");
        let mails = sink.mails();
        assert_eq!(mails.len(), 1);
        assert!(mails[0].tls);
        assert_eq!(mails[0].authenticated_as.as_deref(), Some(SMTP_USER));

        // About the session, not the message: retried until the settings are fixed.
        match attempt(Some("wrong-password"), Some(&ca)).await {
            Err(MailError::Server(text)) => assert!(text.contains("535"), "{text}"),
            other => panic!("wrong password: {other:?}"),
        }
        match attempt(None, Some(&ca)).await {
            Err(MailError::Server(text)) => assert!(text.contains("530"), "{text}"),
            other => panic!("no credentials: {other:?}"),
        }
        // Without the CA the handshake fails before any password is sent.
        let refusals = sink.refusals().len();
        // That is our settings, not an outage: a server refusal, alerted on.
        match attempt(Some(SMTP_PASSWORD), None).await {
            Err(MailError::Server(text)) => assert!(text.contains("certificate"), "{text}"),
            other => panic!("untrusted certificate: {other:?}"),
        }
        assert_eq!(sink.refusals().len(), refusals);
        assert_eq!(sink.mails().len(), 1);
    }

    fn invoice() -> Invoice {
        let mut invoice = billing_testkit::invoices::sample_invoice(3, rust_decimal::Decimal::ZERO);
        invoice.tenant_name = "Smith & <Jones>".into();
        invoice
    }

    fn from() -> Mailbox {
        "Billing <billing@example.test>".parse().expect("mailbox")
    }

    #[test]
    fn an_invoice_email_has_both_parts_the_pdf_and_the_given_message_id() {
        let email = invoice_issued(&invoice(), b"%PDF-1.7 fake".to_vec()).expect("email");
        assert_eq!(email.to.email.to_string(), "accounts@claire.example");
        let raw = email
            .build(&from(), "<invoice_issued.x.2@example.test>")
            .expect("message")
            .formatted();
        let parsed = mail_parser::MessageParser::default()
            .parse(&raw)
            .expect("parses");
        assert_eq!(parsed.message_id(), Some("invoice_issued.x.2@example.test"));
        let plain = parsed.body_text(0).expect("plain part");
        let html = parsed.body_html(0).expect("html part");
        assert!(plain.contains("Hello Smith & <Jones>,"), "{plain}");
        assert!(
            html.contains("Smith &amp; &lt;Jones&gt;"),
            "escaped: {html}"
        );
        assert!(!html.contains("<Jones>"), "{html}");
        assert!(plain.contains("Please quote CLAIRE-2026-0010"), "{plain}");
        assert_eq!(parsed.attachment_count(), 1);
    }

    #[test]
    fn message_ids_are_stable_opaque_and_distinct() {
        let invoice = "0194f3c1-8b2e-7c4a-9d1e-3f5a6b7c8d9e";
        let id = message_id("invoice_issued", invoice, 0, "example.test");
        // Pinned (Python: sha256 over the tag and each part as a big-endian u32 length and
        // its bytes): changing the derivation would give every unsent email a new id.
        assert_eq!(id, "<ce705203f2d5704409dfc0b7233f3c28@example.test>");
        assert_eq!(id, message_id("invoice_issued", invoice, 0, "example.test"));
        assert!(!id.contains(invoice) && !id.contains("8b2e") && !id.contains("invoice"));
        let others = [
            message_id("invoice_issued", invoice, 1, "example.test"),
            message_id("payment_reminder", invoice, 0, "example.test"),
            message_id(
                "invoice_issued",
                "0194f3c1-8b2e-7c4a-9d1e-3f5a6b7c8d9f",
                0,
                "example.test",
            ),
            // The parts are length-prefixed: moving a character between them changes the id.
            message_id("invoice_issued0", invoice, 0, "example.test"),
        ];
        for other in &others {
            assert_ne!(&id, other);
        }
    }

    #[test]
    fn only_refusals_of_the_message_are_permanent() {
        let kind = |permanent, code| match classify(permanent, code, String::new()) {
            MailError::Permanent(_) => "permanent",
            MailError::Server(_) => "server",
            MailError::Transient(_) => "transient",
            _ => "other",
        };
        assert_eq!(kind(true, Some(550)), "permanent");
        assert_eq!(kind(true, Some(553)), "permanent");
        assert_eq!(kind(true, Some(535)), "server", "bad password");
        assert_eq!(kind(true, Some(530)), "server");
        assert_eq!(kind(true, Some(502)), "server");
        assert_eq!(kind(false, Some(451)), "transient");
        assert_eq!(kind(false, None), "transient", "connection refused");
    }

    #[test]
    fn a_bad_billing_address_is_refused_before_sending() {
        let mut bad = invoice();
        bad.billing_email = "not an address".into();
        assert!(matches!(
            invoice_issued(&bad, Vec::new()),
            Err(MailError::Address(_))
        ));
    }

    #[test]
    fn a_stripe_invoice_links_to_its_hosted_page_instead_of_bank_details() {
        let mut stripe = invoice();
        stripe.stripe_hosted_url = "https://invoice.stripe.test/in_1".into();
        let email = payment_reminder(&stripe, Vec::new()).expect("email");
        let plain = email.body.plain();
        assert!(
            plain.contains("Pay online: https://invoice.stripe.test/in_1"),
            "{plain}"
        );
        assert!(!plain.contains("bank transfer"), "{plain}");
    }
}
