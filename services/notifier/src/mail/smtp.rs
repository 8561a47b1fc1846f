//! The SMTP transport (plain, STARTTLS or implicit TLS, a private CA, AUTH never in clear) and
//! each failure classified: a refusal of the message, of our session, or an outage.

use std::time::Duration;

use billing_domain::Secret;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::error::MailError;

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
#[cfg(test)]
mod tests {
    use billing_proto::events::AlertV1;
    use billing_testkit::smtp::{MailSink, Options};
    use lettre::message::Mailbox;

    use super::*;
    use crate::mail::compose::operator_alert;

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

    fn from() -> Mailbox {
        "Billing <billing@example.test>".parse().expect("mailbox")
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
}
