//! What an SMTP session runs over (TCP, then TLS after STARTTLS), where it stands (TLS, the
//! authenticated user, the envelope), and the replies more than one command gives.

use tokio::io::{AsyncRead, AsyncWrite, BufReader};

/// What a session runs over: TCP, then TLS after STARTTLS.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub(super) type Connection = BufReader<Box<dyn Io>>;

/// Where a session stands. TLS and the authenticated user last for the session; the envelope
/// for one mail transaction (RFC 5321 section 3.3), from MAIL to the end of DATA or RSET.
#[derive(Default)]
pub(super) struct Session {
    pub(super) tls: bool,
    pub(super) user: Option<String>,
    pub(super) mail_from: Option<String>,
    pub(super) rcpt_to: Vec<String>,
}

impl Session {
    pub(super) fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
    }
}

pub(super) const NOT_IMPLEMENTED: &str = "502 command not implemented";
pub(super) const CANNOT_DECODE: &str = "501 5.5.2 Cannot decode response";
pub(super) const INVALID_CREDENTIALS: &str = "535 5.7.8 Authentication credentials invalid";
