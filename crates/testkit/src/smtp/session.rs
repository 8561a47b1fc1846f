//! One SMTP session (RFC 5321), command by command: the greeting, EHLO and what it offers,
//! STARTTLS (RFC 3207), MAIL, RCPT (refused recipients get 550), DATA (dot-unstuffed), RSET,
//! NOOP and QUIT; 421 to every command while the sink is down.

use std::borrow::Cow;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::auth::auth;
use super::inbox::{Inbox, ReceivedMail, save};
use super::state::{Connection, NOT_IMPLEMENTED, Session};

/// Runs one session on `stream` until QUIT, the client leaves or the sink goes down.
pub(super) async fn session(
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
