//! [`MailSink`]: the server running on loopback, and what a test does with it: start it with
//! [`Options`], take it down and bring it back, refuse a recipient, change the password, and read
//! what arrived and what was refused.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

use super::inbox::{Inbox, ReceivedMail};
use super::options::{Options, test_ca};
use super::session::session;

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::RootCertStore;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

    use super::*;
    use crate::smtp::state::{Connection, INVALID_CREDENTIALS, NOT_IMPLEMENTED};

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
