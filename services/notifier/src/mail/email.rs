//! An email's parts (recipient, subject, words, attachment), its words rendered once as plain
//! text and once as escaped HTML, the RFC 5322 message built from them, and the stable, opaque
//! Message-ID of each logical email.

use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use sha2::{Digest, Sha256};

use super::error::MailError;

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
    pub(super) fn plain(&self) -> String {
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

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
#[cfg(test)]
mod tests {
    use super::*;

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
}
