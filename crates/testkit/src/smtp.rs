//! A small but real SMTP server (RFC 5321: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) that
//! keeps every message it accepts, for tests and for the local demo. Tests can take it down
//! (connections refused, open sessions answered 421) and bring it back on the same port, and
//! make it refuse chosen recipients for good (550).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// One accepted message, with its envelope.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The raw RFC 5322 message, dot-unstuffed, CRLF line endings.
    pub data: Vec<u8>,
}

#[derive(Default)]
struct Inbox {
    mails: Mutex<Vec<ReceivedMail>>,
    arrived: Notify,
    /// While set, sessions still open answer 421 and close.
    down: AtomicBool,
    /// Recipients refused with 550.
    rejected: Mutex<HashSet<String>>,
}

/// A running SMTP server on loopback; it stops when dropped.
pub struct MailSink {
    addr: SocketAddr,
    inbox: Arc<Inbox>,
    save_to: Option<PathBuf>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl MailSink {
    /// Listens on an ephemeral loopback port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), None).await
    }

    /// Listens on `addr`; with `save_to`, also writes each message to `<dir>/<n>.eml`.
    pub async fn start_on(addr: SocketAddr, save_to: Option<PathBuf>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let sink = MailSink {
            addr: listener.local_addr()?,
            inbox: Arc::new(Inbox::default()),
            save_to,
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

async fn session(
    stream: TcpStream,
    inbox: &Inbox,
    save_to: Option<&std::path::Path>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 mailsink ESMTP ready\r\n").await?;
    let mut mail_from = String::new();
    let mut rcpt_to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if inbox.down.load(Ordering::SeqCst) {
            write
                .write_all(b"421 4.3.2 mailsink shutting down\r\n")
                .await?;
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-mailsink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" | "NOOP" => b"250 ok\r\n",
            "MAIL" => {
                mail_from = address_of(&command);
                rcpt_to.clear();
                b"250 ok\r\n"
            }
            "RCPT" => {
                let address = address_of(&command);
                let refused = inbox
                    .rejected
                    .lock()
                    .map(|r| r.contains(&address.to_ascii_lowercase()))
                    .unwrap_or(false);
                if refused {
                    b"550 5.1.1 mailbox unavailable\r\n"
                } else {
                    rcpt_to.push(address);
                    b"250 ok\r\n"
                }
            }
            "RSET" => {
                mail_from.clear();
                rcpt_to.clear();
                b"250 ok\r\n"
            }
            "DATA" => {
                write
                    .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let data = read_data(&mut lines).await?;
                let mail = ReceivedMail {
                    mail_from: std::mem::take(&mut mail_from),
                    rcpt_to: std::mem::take(&mut rcpt_to),
                    data,
                };
                if let Some(dir) = save_to {
                    save(dir, inbox, &mail)?;
                }
                if let Ok(mut mails) = inbox.mails.lock() {
                    mails.push(mail);
                }
                inbox.arrived.notify_waiters();
                b"250 ok: queued\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 command not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// Reads DATA lines up to the lone dot, undoing dot-stuffing.
async fn read_data(
    lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line).await? == 0 {
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
