//! The notifier against a mail server as production has one: STARTTLS (RFC 3207) with a
//! certificate from a private CA that only `NOTIFIER_SMTP_TLS_CA_FILE` vouches for, and AUTH
//! (RFC 4954) required before MAIL. The invoice goes out over TLS as the notifier's user; a
//! wrong password (535) or missing credentials (530) keep the email pending and retried, never
//! dead-lettered, until the settings are right, and then it goes out once.

use std::time::Duration;

use billing_proto::invoicing::Invoice;
use billing_testkit::ReceivedMail;
use billing_testkit::smtp::Options;
use notifier::mail::SmtpTls;

use crate::harness::{CLAIRE_EMAIL, Mail, System, eventually};
use crate::invoicing::{Publisher, client, issued, ledger_has};

/// The notifier's SMTP user and (obviously fake) passwords.
const SMTP_USER: &str = "billing-notifier";
const SMTP_PASSWORD: &str = "fake-smtp-password-for-tests";
const ROTATED_PASSWORD: &str = "fake-rotated-smtp-password";
/// Time for a wrongly repeated email to arrive before counting.
const SETTLE: Duration = Duration::from_secs(3);

/// A relay that requires STARTTLS and AUTH as [`SMTP_USER`] with `relay_password`; the
/// notifier uses STARTTLS, trusts the relay's CA and logs in with `login`.
fn relay(relay_password: &str, login: Option<&str>) -> Mail {
    Mail {
        sink: Options::default().require_auth(SMTP_USER, relay_password),
        tls: SmtpTls::Starttls,
        login: login.map(|password| (SMTP_USER.to_string(), password.to_string())),
        trust_sink_ca: true,
    }
}

/// Claire's October with one booking, closed: the invoice whose email the tests follow.
async fn claire_invoice(system: &System) -> anyhow::Result<Invoice> {
    Publisher::new(system)
        .await?
        .book(
            "claire",
            "9201",
            "120.00",
            "confirmed",
            "2026-10-02T10:00:00+10:00",
        )
        .await?;
    ledger_has(system, 1).await?;
    issued(&mut client(system).await?, "claire", "2026-10").await
}

/// Waits for exactly one email: it arrives, and no second one within [`SETTLE`].
async fn exactly_one(system: &System) -> anyhow::Result<ReceivedMail> {
    system.mail.wait_for(1, Duration::from_secs(60)).await;
    tokio::time::sleep(SETTLE).await;
    let mut mails = system.mail.mails();
    anyhow::ensure!(mails.len() == 1, "expected one email, got {}", mails.len());
    Ok(mails.remove(0))
}

/// The invoice email's record: state, attempts, last error.
async fn record(system: &System, invoice: &Invoice) -> anyhow::Result<(String, i32, String)> {
    let db = system.db("notifier").await?;
    let (state, attempts, error): (String, i32, Option<String>) = sqlx::query_as(
        "select state, attempts, last_error from emails
         where kind = 'invoice_issued' and reference = $1",
    )
    .bind(&invoice.id)
    .fetch_one(&db)
    .await?;
    Ok((state, attempts, error.unwrap_or_default()))
}

/// Waits until the email was refused at least twice with `code` (so it was retried): its
/// record is still pending with the server's answer, nothing arrived, and nothing was
/// dead-lettered or alerted.
async fn refused_and_retried(
    system: &System,
    invoice: &Invoice,
    code: &str,
) -> anyhow::Result<i32> {
    let db = system.db("notifier").await?;
    let (attempts, error): (i32, String) = eventually(Duration::from_secs(30), || async {
        let row: Option<(i32, Option<String>)> = sqlx::query_as(
            "select attempts, last_error from emails
             where kind = 'invoice_issued' and reference = $1 and state = 'pending'",
        )
        .bind(&invoice.id)
        .fetch_optional(&db)
        .await?;
        Ok(row.and_then(|(attempts, error)| {
            (attempts >= 2).then(|| (attempts, error.unwrap_or_default()))
        }))
    })
    .await?;
    assert!(error.contains(code), "{error}");
    assert!(error.contains("check the SMTP settings"), "{error}");
    let refused = system
        .mail
        .refusals()
        .iter()
        .filter(|r| r.starts_with(code))
        .count();
    assert!(refused >= 2, "{:?}", system.mail.refusals());
    assert!(system.mail.mails().is_empty());
    let dlq = system
        .subjects()
        .dead_letter("invoicing", "notifier-invoices");
    assert_eq!(system.count_in("DLQ", &dlq).await?, 0);
    assert_eq!(
        system
            .count_in("ALERTS", &system.subjects().alert("email_rejected"))
            .await?,
        0
    );
    // What the EmailsNotDelivered alert rule reads (deploy/prometheus/alerts.yml).
    let metrics = system.metrics(system.notifier).await?;
    let refusals = metrics
        .since_start(r#"notifier_emails_total{kind="invoice_issued",result="server_refused"}"#)
        .unwrap_or_default();
    assert!(refusals >= 2.0, "{metrics}");
    Ok(attempts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_invoice_goes_out_over_starttls_as_the_notifiers_smtp_user() -> anyhow::Result<()> {
    let system = System::builder()
        .ledger()
        .invoicing()
        .notifier()
        .mail(relay(SMTP_PASSWORD, Some(SMTP_PASSWORD)))
        .start()
        .await?;
    let result = over_tls(&system).await;
    system.finish(result).await
}

async fn over_tls(system: &System) -> anyhow::Result<()> {
    let invoice = claire_invoice(system).await?;
    let mail = exactly_one(system).await?;
    assert_eq!(mail.rcpt_to, vec![CLAIRE_EMAIL.to_string()]);
    assert!(mail.tls, "sent after STARTTLS");
    assert_eq!(mail.authenticated_as.as_deref(), Some(SMTP_USER));
    let text = String::from_utf8_lossy(&mail.data);
    assert!(text.contains(&invoice.number), "{text}");
    assert!(text.contains("application/pdf"), "the PDF is attached");
    assert_eq!(system.mail.refusals(), Vec::<String>::new());
    let (state, attempts, _) = record(system, &invoice).await?;
    assert_eq!((state.as_str(), attempts), ("sent", 1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_smtp_password_keeps_the_email_until_the_password_matches() -> anyhow::Result<()> {
    // The relay's password was rotated; the notifier still has the old one.
    // Alone: it counts the refusals on the process's metrics.
    let system = System::builder()
        .ledger()
        .invoicing()
        .notifier()
        .mail(relay(ROTATED_PASSWORD, Some(SMTP_PASSWORD)))
        .alone()
        .start()
        .await?;
    let result = wrong_password(&system).await;
    system.finish(result).await
}

async fn wrong_password(system: &System) -> anyhow::Result<()> {
    let invoice = claire_invoice(system).await?;
    let refused = refused_and_retried(system, &invoice, "535").await?;

    // The relay takes the notifier's password again: the next retry delivers, once.
    system.mail.set_password(SMTP_PASSWORD);
    let mail = exactly_one(system).await?;
    assert_eq!(mail.rcpt_to, vec![CLAIRE_EMAIL.to_string()]);
    assert!(mail.tls);
    assert_eq!(mail.authenticated_as.as_deref(), Some(SMTP_USER));
    let (state, attempts, _) = record(system, &invoice).await?;
    assert_eq!(state, "sent");
    assert!(attempts > refused, "{attempts} attempts, {refused} refused");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notifier_without_smtp_credentials_keeps_the_email_until_it_has_them()
-> anyhow::Result<()> {
    // Alone: it counts the refusals on the process's metrics.
    let system = System::builder()
        .ledger()
        .invoicing()
        .notifier()
        .mail(relay(SMTP_PASSWORD, None))
        .alone()
        .start()
        .await?;
    let result = no_credentials(&system).await;
    system.finish(result).await
}

async fn no_credentials(system: &System) -> anyhow::Result<()> {
    let invoice = claire_invoice(system).await?;
    // TLS is fine; MAIL without AUTH is answered 530.
    refused_and_retried(system, &invoice, "530").await?;
    assert!(
        system
            .mail
            .refusals()
            .iter()
            .all(|r| r == "530 5.7.0 Authentication required"),
        "{:?}",
        system.mail.refusals()
    );

    // The corrected configuration rolls out next to the old replica, on the same consumers:
    // whichever gets the retry, the email goes out once, from the replica with credentials.
    let (_, stop, replica) = system
        .spawn_notifier_with(|config| {
            config.smtp_username = Some(SMTP_USER.into());
            config.smtp_password = Some(billing_domain::Secret::new(SMTP_PASSWORD.into()));
        })
        .await?;
    let mail = exactly_one(system).await?;
    assert!(mail.tls);
    assert_eq!(mail.authenticated_as.as_deref(), Some(SMTP_USER));
    let (state, _, _) = record(system, &invoice).await?;
    assert_eq!(state, "sent");
    stop.cancel();
    replica.await??;
    Ok(())
}
