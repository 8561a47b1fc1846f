//! What a sink keeps, shared by its sessions: the messages it accepted, the recipients it
//! refuses, every refusal it sent, whether it is down, its TLS and its login; and each message
//! written to a directory (for the local demo).

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

use super::options::Login;

/// One accepted message, with its envelope.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The raw RFC 5322 message, dot-unstuffed, CRLF line endings.
    pub data: Vec<u8>,
    /// Whether the session had switched to TLS (STARTTLS, RFC 3207) before the message.
    pub tls: bool,
    /// The user the session authenticated as (AUTH, RFC 4954), if it did.
    pub authenticated_as: Option<String>,
}

/// The state of a sink; its sessions hold it too.
#[derive(Default)]
pub(super) struct Inbox {
    pub(super) mails: Mutex<Vec<ReceivedMail>>,
    pub(super) arrived: Notify,
    /// While set, sessions still open answer 421 and close.
    pub(super) down: AtomicBool,
    /// Recipients refused with 550.
    pub(super) rejected: Mutex<HashSet<String>>,
    /// Every 5xx reply sent, oldest first.
    pub(super) refusals: Mutex<Vec<String>>,
    /// With STARTTLS: the server side of the handshake.
    pub(super) tls: Option<TlsAcceptor>,
    /// With AUTH: the only login accepted.
    pub(super) login: Mutex<Option<Login>>,
}

impl Inbox {
    pub(super) fn login(&self) -> Option<Login> {
        self.login.lock().ok().and_then(|login| login.clone())
    }
}

/// Writes `mail` to `<dir>/<n>.eml`, and each of its attachments beside it.
pub(super) fn save(
    dir: &std::path::Path,
    inbox: &Inbox,
    mail: &ReceivedMail,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let n = inbox.mails.lock().map(|m| m.len() + 1).unwrap_or(0);
    let eml = dir.join(format!("{n:04}.eml"));
    std::fs::write(&eml, &mail.data)?;
    if let Some(parsed) = mail_parser::MessageParser::default().parse(&mail.data) {
        use mail_parser::MimeHeaders;
        for (i, part) in parsed.attachments().enumerate() {
            let name = part
                .attachment_name()
                .map(sanitize)
                .unwrap_or_else(|| format!("attachment-{i}"));
            std::fs::write(dir.join(format!("{n:04}-{name}")), part.contents())?;
        }
    }
    tracing::info!(path = %eml.display(), to = ?mail.rcpt_to, "mail received");
    Ok(())
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
