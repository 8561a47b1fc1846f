//! A small but real SMTP server (RFC 5321: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) that
//! keeps every message it accepts, for tests and for the local demo. Tests can take it down
//! (connections refused, open sessions answered 421) and bring it back on the same port, and
//! make it refuse chosen recipients for good (550).
//!
//! Opt-in ([`Options`]), it is a submission server as production has: STARTTLS (RFC 3207) with
//! a certificate for `localhost` and 127.0.0.1 signed by a CA made when it starts
//! ([`MailSink::ca_pem`]), and AUTH PLAIN (RFC 4616) or LOGIN (RFC 4954), offered only inside
//! TLS and required before MAIL, with a password a test can change while the sink runs
//! ([`MailSink::set_password`]).

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

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

/// What a [`MailSink`] offers and requires beyond plain RFC 5321. The default is a plain
/// server that takes mail from anyone, like a relay on localhost.
#[derive(Debug, Clone, Default)]
pub struct Options {
    starttls: bool,
    login: Option<Login>,
}

impl Options {
    /// Offers STARTTLS (RFC 3207) with a certificate for `localhost` and 127.0.0.1, signed by a
    /// CA made when the sink starts ([`MailSink::ca_pem`]). Mail is still taken in clear.
    pub fn starttls(mut self) -> Self {
        self.starttls = true;
        self
    }

    /// Requires AUTH (RFC 4954) as `user` with `password` before MAIL. AUTH is offered only
    /// inside TLS, so this offers STARTTLS as well.
    pub fn require_auth(mut self, user: &str, password: &str) -> Self {
        self.starttls = true;
        self.login = Some(Login {
            user: user.to_string(),
            password: password.to_string(),
        });
        self
    }
}

#[derive(Debug, Clone)]
struct Login {
    user: String,
    password: String,
}

#[derive(Default)]
struct Inbox {
    mails: Mutex<Vec<ReceivedMail>>,
    arrived: Notify,
    /// While set, sessions still open answer 421 and close.
    down: AtomicBool,
    /// Recipients refused with 550.
    rejected: Mutex<HashSet<String>>,
    /// Every 5xx reply sent, oldest first.
    refusals: Mutex<Vec<String>>,
    /// With STARTTLS: the server side of the handshake.
    tls: Option<TlsAcceptor>,
    /// With AUTH: the only login accepted.
    login: Mutex<Option<Login>>,
}

impl Inbox {
    fn login(&self) -> Option<Login> {
        self.login.lock().ok().and_then(|login| login.clone())
    }
}

/// A running SMTP server on loopback; it stops when dropped.
pub struct MailSink {
    addr: SocketAddr,
    inbox: Arc<Inbox>,
    save_to: Option<PathBuf>,
    /// With STARTTLS: the certificate of the CA that signed the sink's.
    ca_pem: Option<String>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl MailSink {
    /// Listens on an ephemeral loopback port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(Options::default()).await
    }

    /// Listens on an ephemeral loopback port, with STARTTLS and AUTH as `options` say.
    pub async fn start_with(options: Options) -> std::io::Result<Self> {
        Self::listen(SocketAddr::from(([127, 0, 0, 1], 0)), None, options).await
    }

    /// Listens on `addr`; with `save_to`, also writes each message to `<dir>/<n>.eml`.
    pub async fn start_on(addr: SocketAddr, save_to: Option<PathBuf>) -> std::io::Result<Self> {
        Self::listen(addr, save_to, Options::default()).await
    }

    async fn listen(
        addr: SocketAddr,
        save_to: Option<PathBuf>,
        options: Options,
    ) -> std::io::Result<Self> {
        let (tls, ca_pem) = if options.starttls {
            let (acceptor, ca_pem) = test_ca()?;
            (Some(acceptor), Some(ca_pem))
        } else {
            (None, None)
        };
        let listener = TcpListener::bind(addr).await?;
        let sink = MailSink {
            addr: listener.local_addr()?,
            inbox: Arc::new(Inbox {
                tls,
                login: Mutex::new(options.login),
                ..Inbox::default()
            }),
            save_to,
            ca_pem,
            task: Mutex::new(None),
        };
        sink.accept(listener);
        Ok(sink)
    }

    fn accept(&self, listener: TcpListener) {
        let inbox = self.inbox.clone();
        let save_to = self.save_to.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let inbox = inbox.clone();
                let save_to = save_to.clone();
                tokio::spawn(async move {
                    if let Err(err) = session(stream, &inbox, save_to.as_deref()).await {
                        tracing::debug!(error = %err, "smtp session ended with an error");
                    }
                });
            }
        });
        if let Ok(mut slot) = self.task.lock()
            && let Some(old) = slot.replace(task)
        {
            old.abort();
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// With STARTTLS, the PEM certificate of the CA that signed the sink's certificate, for a
    /// client to trust; `None` without.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// From now on AUTH accepts `password` (a rotated or corrected secret) and no other. Does
    /// nothing unless the sink requires AUTH ([`Options::require_auth`]).
    pub fn set_password(&self, password: &str) {
        if let Ok(mut login) = self.inbox.login.lock()
            && let Some(login) = login.as_mut()
        {
            login.password = password.to_string();
        }
    }

    /// Takes the server down: new connections are refused, open ones get 421.
    pub fn stop(&self) {
        self.inbox.down.store(true, Ordering::SeqCst);
        if let Ok(mut slot) = self.task.lock()
            && let Some(task) = slot.take()
        {
            task.abort();
        }
    }

    /// Brings the server back on the same port.
    pub async fn restart(&self) -> std::io::Result<()> {
        let listener = TcpListener::bind(self.addr).await?;
        self.inbox.down.store(false, Ordering::SeqCst);
        self.accept(listener);
        Ok(())
    }

    /// Refuses mail for `address` from now on with a permanent 550.
    pub fn reject(&self, address: &str) {
        if let Ok(mut rejected) = self.inbox.rejected.lock() {
            rejected.insert(address.to_ascii_lowercase());
        }
    }

    /// Every message accepted so far.
    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.inbox
            .mails
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// Every 5xx reply sent so far, oldest first, e.g.
    /// `535 5.7.8 Authentication credentials invalid`.
    pub fn refusals(&self) -> Vec<String> {
        self.inbox
            .refusals
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Waits until at least `count` messages arrived or `timeout` passed; returns what arrived.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.inbox.arrived.notified();
            let mails = self.mails();
            if mails.len() >= count {
                return mails;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.mails();
            }
        }
    }
}

impl Drop for MailSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA made for one sink, and the acceptor of a server certificate it signed for
/// `localhost` and 127.0.0.1; with the CA's certificate in PEM.
fn test_ca() -> std::io::Result<(TlsAcceptor, String)> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(std::io::Error::other)?;
    ca.distinguished_name
        .push(DnType::CommonName, "mailsink test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(std::io::Error::other)?;
    let ca = CertifiedIssuer::self_signed(ca, ca_key).map_err(std::io::Error::other)?;

    let mut server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(std::io::Error::other)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().map_err(std::io::Error::other)?;
    let certificate = server
        .signed_by(&server_key, &ca)
        .map_err(std::io::Error::other)?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_no_client_auth()
    .with_single_cert(vec![certificate.der().clone()], key)
    .map_err(std::io::Error::other)?;
    Ok((TlsAcceptor::from(Arc::new(config)), ca.pem()))
}

/// What a session runs over: TCP, then TLS after STARTTLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Connection = BufReader<Box<dyn Io>>;

/// Where a session stands. TLS and the authenticated user last for the session; the envelope
/// for one mail transaction (RFC 5321 section 3.3), from MAIL to the end of DATA or RSET.
#[derive(Default)]
struct Session {
    tls: bool,
    user: Option<String>,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

impl Session {
    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
    }
}

const NOT_IMPLEMENTED: &str = "502 command not implemented";
const CANNOT_DECODE: &str = "501 5.5.2 Cannot decode response";
const INVALID_CREDENTIALS: &str = "535 5.7.8 Authentication credentials invalid";

async fn session(
    stream: TcpStream,
    inbox: &Inbox,
    save_to: Option<&std::path::Path>,
) -> std::io::Result<()> {
    let mut conn: Connection = BufReader::new(Box::new(stream));
    conn.write_all(b"220 mailsink ESMTP ready\r\n").await?;
    let mut state = Session::default();
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if inbox.down.load(Ordering::SeqCst) {
            conn.write_all(b"421 4.3.2 mailsink shutting down\r\n")
                .await?;
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let (verb, args) = command.split_once(' ').unwrap_or((&command, ""));
        let reply: Cow<'static, str> = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                state.reset_transaction();
                ehlo(inbox, &state).into()
            }
            "HELO" | "NOOP" => "250 ok".into(),
            "STARTTLS" => match &inbox.tls {
                Some(acceptor) if !state.tls && args.is_empty() => {
                    conn.write_all(b"220 2.0.0 Ready to start TLS\r\n").await?;
                    // The handshake runs on the bare connection: whatever the client sent in
                    // clear after STARTTLS goes with the read buffer and is never taken for a
                    // command inside TLS (STARTTLS command injection, CVE-2011-0411).
                    let plain = conn.into_inner();
                    conn = BufReader::new(Box::new(acceptor.accept(plain).await?));
                    // The server forgets what the client said before (RFC 3207 section 4.2).
                    state = Session {
                        tls: true,
                        ..Session::default()
                    };
                    continue;
                }
                Some(_) if state.tls => "503 5.5.1 TLS already active".into(),
                Some(_) => "501 5.5.4 Syntax error (no parameters allowed)".into(),
                None => NOT_IMPLEMENTED.into(),
            },
            "AUTH" => auth(&mut conn, inbox, &mut state, args).await?,
            // A server that requires AUTH refuses mail without it (RFC 4954 section 6).
            "MAIL" if inbox.login().is_some() && state.user.is_none() => {
                "530 5.7.0 Authentication required".into()
            }
            "MAIL" => {
                state.mail_from = Some(address_of(&command));
                state.rcpt_to.clear();
                "250 ok".into()
            }
            "RCPT" => {
                let address = address_of(&command);
                let refused = inbox
                    .rejected
                    .lock()
                    .map(|r| r.contains(&address.to_ascii_lowercase()))
                    .unwrap_or(false);
                if refused {
                    "550 5.1.1 mailbox unavailable".into()
                } else {
                    state.rcpt_to.push(address);
                    "250 ok".into()
                }
            }
            "RSET" => {
                state.reset_transaction();
                "250 ok".into()
            }
            "DATA" => {
                conn.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let data = read_data(&mut conn).await?;
                let mail = ReceivedMail {
                    mail_from: state.mail_from.take().unwrap_or_default(),
                    rcpt_to: std::mem::take(&mut state.rcpt_to),
                    data,
                    tls: state.tls,
                    authenticated_as: state.user.clone(),
                };
                if let Some(dir) = save_to {
                    save(dir, inbox, &mail)?;
                }
                if let Ok(mut mails) = inbox.mails.lock() {
                    mails.push(mail);
                }
                inbox.arrived.notify_waiters();
                "250 ok: queued".into()
            }
            "QUIT" => {
                conn.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => NOT_IMPLEMENTED.into(),
        };
        if reply.starts_with('5')
            && let Ok(mut refusals) = inbox.refusals.lock()
        {
            refusals.push(reply.to_string());
        }
        conn.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
}

/// The EHLO reply (RFC 5321 section 4.1.1.1): STARTTLS until the session is in TLS, AUTH only
/// inside it (RFC 4954 section 4: no plaintext password mechanism, as PLAIN and LOGIN are,
/// before STARTTLS).
fn ehlo(inbox: &Inbox, state: &Session) -> String {
    let mut keywords = vec!["mailsink", "8BITMIME", "SMTPUTF8"];
    if inbox.tls.is_some() && !state.tls {
        keywords.push("STARTTLS");
    }
    if state.tls && inbox.login().is_some() {
        keywords.push("AUTH PLAIN LOGIN");
    }
    let last = keywords.len() - 1;
    keywords
        .iter()
        .enumerate()
        .map(|(i, keyword)| format!("250{}{keyword}", if i == last { ' ' } else { '-' }))
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// AUTH (RFC 4954) with PLAIN or LOGIN; returns the reply that ends the exchange, with the
/// codes of RFC 4954 section 6 (530 5.7.0, 535 5.7.8) and RFC 3207 section 4.
async fn auth(
    conn: &mut Connection,
    inbox: &Inbox,
    state: &mut Session,
    args: &str,
) -> std::io::Result<Cow<'static, str>> {
    let Some(login) = inbox.login() else {
        return Ok(NOT_IMPLEMENTED.into());
    };
    if !state.tls {
        return Ok("530 5.7.0 Must issue a STARTTLS command first".into());
    }
    // RFC 4954 section 4: once per session, and never inside a mail transaction.
    if state.user.is_some() {
        return Ok("503 5.5.1 Already authenticated".into());
    }
    if state.mail_from.is_some() {
        return Ok("503 5.5.1 AUTH not permitted during a mail transaction".into());
    }
    let mut words = args.split_whitespace();
    let mechanism = words.next().unwrap_or_default().to_ascii_uppercase();
    let initial_response = words.next();
    let given = match mechanism.as_str() {
        "PLAIN" => sasl_plain(conn, initial_response).await?,
        "LOGIN" => sasl_login(conn, initial_response).await?,
        _ => return Ok("504 5.5.4 Unrecognized authentication type".into()),
    };
    Ok(match given {
        Ok((user, password)) if user == login.user && password == login.password => {
            state.user = Some(user);
            "235 2.7.0 Authentication successful".into()
        }
        Ok(_) => INVALID_CREDENTIALS.into(),
        Err(reply) => reply.into(),
    })
}

/// The user and password a SASL exchange gave, or the reply that ended it early.
type Given = Result<(String, String), &'static str>;

/// PLAIN (RFC 4616): `authzid NUL authcid NUL passwd`, as the initial response or after an
/// empty challenge. Acting for another user (an authzid other than the authcid) is refused.
async fn sasl_plain(
    conn: &mut Connection,
    initial_response: Option<&str>,
) -> std::io::Result<Given> {
    let response = match initial_response {
        // An empty initial response (RFC 4954 section 4).
        Some("=") => Ok(Vec::new()),
        Some(encoded) => decode(encoded),
        None => challenge(conn, "").await?,
    };
    Ok(response.and_then(utf8).and_then(|text| {
        let mut fields = text.splitn(3, '\0');
        match (fields.next(), fields.next(), fields.next()) {
            (Some(authzid), Some(user), Some(password))
                if authzid.is_empty() || authzid == user =>
            {
                Ok((user.to_string(), password.to_string()))
            }
            (Some(_), Some(_), Some(_)) => Err(INVALID_CREDENTIALS),
            _ => Err(CANNOT_DECODE),
        }
    }))
}

/// LOGIN (draft-murchison-sasl-login): the user name, then the password, each answering its
/// challenge (`Username:`, `Password:`); the user name may come as the initial response.
async fn sasl_login(
    conn: &mut Connection,
    initial_response: Option<&str>,
) -> std::io::Result<Given> {
    let user = match initial_response {
        Some(encoded) => decode(encoded),
        None => challenge(conn, "Username:").await?,
    };
    let user = match user.and_then(utf8) {
        Ok(user) => user,
        Err(reply) => return Ok(Err(reply)),
    };
    let password = challenge(conn, "Password:").await?.and_then(utf8);
    Ok(password.map(|password| (user, password)))
}

/// Sends a `334` challenge (RFC 4954 section 4) and reads the client's answer; `*` cancels.
async fn challenge(
    conn: &mut Connection,
    prompt: &str,
) -> std::io::Result<Result<Vec<u8>, &'static str>> {
    conn.write_all(format!("334 {}\r\n", BASE64.encode(prompt)).as_bytes())
        .await?;
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(match line.trim_end() {
        "*" => Err("501 5.0.0 Authentication cancelled"),
        answer => decode(answer),
    })
}

fn decode(encoded: &str) -> Result<Vec<u8>, &'static str> {
    BASE64.decode(encoded).map_err(|_| CANNOT_DECODE)
}

fn utf8(bytes: Vec<u8>) -> Result<String, &'static str> {
    String::from_utf8(bytes).map_err(|_| CANNOT_DECODE)
}

/// Reads DATA lines up to the lone dot, undoing dot-stuffing.
async fn read_data(conn: &mut Connection) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if conn.read_until(b'\n', &mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(data);
        }
        let content = line.strip_prefix(b".").unwrap_or(&line);
        data.extend_from_slice(content);
    }
}

fn address_of(command: &str) -> String {
    command
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(addr, _)| addr.to_string())
        .unwrap_or_default()
}

fn save(dir: &std::path::Path, inbox: &Inbox, mail: &ReceivedMail) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls::RootCertStore;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

    use super::*;

    const USER: &str = "billing";
    const PASSWORD: &str = "fake-smtp-password";

    /// A client that speaks SMTP line by line, as a test writes it.
    struct Client {
        conn: Connection,
    }

    impl Client {
        async fn connect(sink: &MailSink) -> Self {
            let stream = TcpStream::connect(sink.addr()).await.expect("connect");
            let mut client = Client {
                conn: BufReader::new(Box::new(stream)),
            };
            assert!(client.reply().await.starts_with("220 "));
            client
        }

        /// A reply, its lines joined by `\n`.
        async fn reply(&mut self) -> String {
            let mut lines = Vec::new();
            loop {
                let mut line = String::new();
                self.conn.read_line(&mut line).await.expect("read");
                let line = line.trim_end().to_string();
                let last = line.as_bytes().get(3) != Some(&b'-');
                lines.push(line);
                if last {
                    return lines.join("\n");
                }
            }
        }

        async fn send(&mut self, line: &str) -> String {
            self.conn
                .write_all(format!("{line}\r\n").as_bytes())
                .await
                .expect("write");
            self.reply().await
        }

        /// STARTTLS and the handshake, trusting only the sink's CA, checking `name`.
        async fn starttls(mut self, sink: &MailSink, name: &str) -> Self {
            assert_eq!(self.send("STARTTLS").await, "220 2.0.0 Ready to start TLS");
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(sink.ca_pem().expect("CA").as_bytes()) {
                roots.add(cert.expect("PEM")).expect("CA certificate");
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name = ServerName::try_from(name.to_string()).expect("server name");
            let tls = TlsConnector::from(Arc::new(config))
                .connect(name, self.conn.into_inner())
                .await
                .expect("TLS handshake");
            self.conn = BufReader::new(Box::new(tls));
            self
        }

        async fn deliver(&mut self) -> String {
            assert_eq!(
                self.send("MAIL FROM:<billing@example.test>").await,
                "250 ok"
            );
            assert_eq!(self.send("RCPT TO:<claire@example.test>").await, "250 ok");
            assert!(self.send("DATA").await.starts_with("354 "));
            self.send("Subject: test\r\n\r\nhello\r\n.").await
        }
    }

    /// AUTH LOGIN as [`USER`] with `password`: the final reply.
    async fn login(client: &mut Client, password: &str) -> String {
        assert_eq!(client.send("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
        assert_eq!(client.send(&BASE64.encode(USER)).await, "334 UGFzc3dvcmQ6");
        client.send(&BASE64.encode(password)).await
    }

    fn plain(authzid: &str, user: &str, password: &str) -> String {
        BASE64.encode(format!("{authzid}\0{user}\0{password}"))
    }

    #[tokio::test]
    async fn a_plain_sink_offers_neither_starttls_nor_auth() {
        let sink = MailSink::start().await.expect("sink");
        assert!(sink.ca_pem().is_none());
        let mut client = Client::connect(&sink).await;
        let ehlo = client.send("EHLO client.test").await;
        assert!(
            !ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
            "{ehlo}"
        );
        assert_eq!(client.send("STARTTLS").await, NOT_IMPLEMENTED);
        assert_eq!(client.send("AUTH PLAIN").await, NOT_IMPLEMENTED);
        assert_eq!(client.deliver().await, "250 ok: queued");
        let mails = sink.mails();
        assert_eq!(mails.len(), 1);
        assert!(!mails[0].tls && mails[0].authenticated_as.is_none());
    }

    #[tokio::test]
    async fn auth_needs_tls_first_and_mail_needs_auth() {
        let sink = MailSink::start_with(Options::default().require_auth(USER, PASSWORD))
            .await
            .expect("sink");
        let mut client = Client::connect(&sink).await;
        let ehlo = client.send("EHLO client.test").await;
        assert!(
            ehlo.contains("250 STARTTLS") && !ehlo.contains("AUTH"),
            "{ehlo}"
        );
        let credentials = plain("", USER, PASSWORD);
        assert_eq!(
            client.send(&format!("AUTH PLAIN {credentials}")).await,
            "530 5.7.0 Must issue a STARTTLS command first"
        );
        assert_eq!(
            client.send("MAIL FROM:<billing@example.test>").await,
            "530 5.7.0 Authentication required"
        );
        assert_eq!(
            client.send("STARTTLS now").await,
            "501 5.5.4 Syntax error (no parameters allowed)"
        );

        // The certificate names `localhost`; the CA is the only root trusted.
        let mut client = client.starttls(&sink, "localhost").await;
        let ehlo = client.send("EHLO client.test").await;
        assert!(
            ehlo.contains("AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"),
            "{ehlo}"
        );
        assert_eq!(
            client.send("STARTTLS").await,
            "503 5.5.1 TLS already active"
        );
        assert_eq!(
            client.send("MAIL FROM:<billing@example.test>").await,
            "530 5.7.0 Authentication required"
        );
        assert_eq!(
            client
                .send(&format!("AUTH PLAIN {}", plain("", USER, "wrong")))
                .await,
            INVALID_CREDENTIALS
        );
        assert_eq!(
            client
                .send(&format!("AUTH PLAIN {}", plain("admin", USER, PASSWORD)))
                .await,
            INVALID_CREDENTIALS,
            "acting as another user"
        );
        assert_eq!(
            client.send("AUTH CRAM-MD5").await,
            "504 5.5.4 Unrecognized authentication type"
        );
        // Without an initial response, an empty challenge (`334 `) asks for it.
        assert_eq!(client.send("AUTH PLAIN").await, "334");
        assert_eq!(
            client.send(&credentials).await,
            "235 2.7.0 Authentication successful"
        );
        assert_eq!(
            client.send(&format!("AUTH PLAIN {credentials}")).await,
            "503 5.5.1 Already authenticated"
        );
        assert_eq!(client.deliver().await, "250 ok: queued");

        let mails = sink.mails();
        assert_eq!(mails.len(), 1);
        assert!(mails[0].tls);
        assert_eq!(mails[0].authenticated_as.as_deref(), Some(USER));
        assert_eq!(mails[0].data, b"Subject: test\r\n\r\nhello\r\n");
        assert_eq!(
            sink.refusals(),
            [
                "530 5.7.0 Must issue a STARTTLS command first",
                "530 5.7.0 Authentication required",
                "501 5.5.4 Syntax error (no parameters allowed)",
                "503 5.5.1 TLS already active",
                "530 5.7.0 Authentication required",
                INVALID_CREDENTIALS,
                INVALID_CREDENTIALS,
                "504 5.5.4 Unrecognized authentication type",
                "503 5.5.1 Already authenticated",
            ]
        );
    }

    #[tokio::test]
    async fn auth_login_takes_the_password_set_while_running() {
        let sink = MailSink::start_with(Options::default().require_auth(USER, "old-password"))
            .await
            .expect("sink");
        // The certificate names 127.0.0.1 too.
        let mut client = Client::connect(&sink)
            .await
            .starttls(&sink, "127.0.0.1")
            .await;
        client.send("EHLO client.test").await;
        assert_eq!(client.send("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
        assert_eq!(client.send("*").await, "501 5.0.0 Authentication cancelled");
        assert_eq!(
            client.send("AUTH LOGIN not-base64!").await,
            "501 5.5.2 Cannot decode response"
        );

        sink.set_password(PASSWORD);
        assert_eq!(
            login(&mut client, "old-password").await,
            INVALID_CREDENTIALS
        );
        assert_eq!(
            login(&mut client, PASSWORD).await,
            "235 2.7.0 Authentication successful"
        );
        assert_eq!(client.deliver().await, "250 ok: queued");
        assert_eq!(sink.mails()[0].authenticated_as.as_deref(), Some(USER));
    }

    #[tokio::test]
    async fn starttls_without_auth_still_takes_mail_in_clear() {
        let sink = MailSink::start_with(Options::default().starttls())
            .await
            .expect("sink");
        let mut client = Client::connect(&sink).await;
        assert!(client.send("EHLO client.test").await.contains("STARTTLS"));
        assert_eq!(client.deliver().await, "250 ok: queued");
        let mut client = Client::connect(&sink)
            .await
            .starttls(&sink, "localhost")
            .await;
        let ehlo = client.send("EHLO client.test").await;
        assert!(!ehlo.contains("AUTH"), "{ehlo}");
        assert_eq!(client.send("AUTH PLAIN").await, NOT_IMPLEMENTED);
        assert_eq!(client.deliver().await, "250 ok: queued");
        let tls: Vec<bool> = sink.mails().iter().map(|m| m.tls).collect();
        assert_eq!(tls, [false, true]);
    }
}
