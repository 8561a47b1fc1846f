//! AUTH (RFC 4954) with PLAIN (RFC 4616) or LOGIN: offered only inside TLS, once per session and
//! outside a mail transaction, against the one login the sink accepts (which a test may change).

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use super::inbox::Inbox;
use super::state::{CANNOT_DECODE, Connection, INVALID_CREDENTIALS, NOT_IMPLEMENTED, Session};

/// AUTH (RFC 4954) with PLAIN or LOGIN; returns the reply that ends the exchange, with the
/// codes of RFC 4954 section 6 (530 5.7.0, 535 5.7.8) and RFC 3207 section 4.
pub(super) async fn auth(
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
