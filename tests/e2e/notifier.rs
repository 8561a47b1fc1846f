//! Emails against a real SMTP server on loopback: the invoice with its PDF exactly once (also
//! when its event is delivered three times), receipts and reminders as the invoice is paid and
//! falls overdue, an SMTP outage that only delays the email, a permanent refusal that
//! dead-letters the event and alerts the operator, and the PDF on demand over gRPC and
//! billingctl.

use std::time::Duration;

use async_nats::HeaderMap;
use billing_proto::invoicing::{Invoice, RecordPaymentRequest, SweepOverdueRequest};
use billing_proto::notifier::RenderInvoicePdfRequest;
use billing_testkit::ReceivedMail;
use mail_parser::{Message, MessageParser, MimeHeaders};

use crate::harness::{CLAIRE_EMAIL, OPERATOR_EMAIL, System, eventually, pdf_text};
use crate::invoicing::{Publisher, client, issued, ledger_has};

const KENJI_EMAIL: &str = "kenji.billing@example.test";
/// Time for a wrongly repeated email to arrive before counting.
const SETTLE: Duration = Duration::from_secs(3);

/// Claire's October: three billable bookings and one cancelled before the close.
async fn claire_october(system: &System) -> anyhow::Result<Invoice> {
    let publisher = Publisher::new(system).await?;
    publisher
        .book(
            "claire",
            "9101",
            "120.00",
            "confirmed",
            "2026-10-02T10:00:00+10:00",
        )
        .await?;
    publisher
        .book(
            "claire",
            "9102",
            "95.50",
            "completed",
            "2026-10-15T18:30:00+11:00",
        )
        .await?;
    publisher
        .book(
            "claire",
            "9103",
            "80.05",
            "confirmed",
            "2026-10-31T23:30:00+11:00",
        )
        .await?;
    publisher
        .book(
            "claire",
            "9104",
            "60.00",
            "cancelled",
            "2026-10-20T09:00:00+11:00",
        )
        .await?;
    ledger_has(system, 4).await?;
    issued(&mut client(system).await?, "claire", "2026-10").await
}

fn parse(mail: &ReceivedMail) -> anyhow::Result<Message<'_>> {
    MessageParser::default()
        .parse(&mail.data)
        .ok_or_else(|| anyhow::anyhow!("unparseable email"))
}

fn message_id(mail: &ReceivedMail) -> anyhow::Result<String> {
    Ok(parse(mail)?.message_id().unwrap_or_default().to_string())
}

fn pdf_of(mail: &ReceivedMail) -> anyhow::Result<Option<Vec<u8>>> {
    Ok(parse(mail)?
        .attachments()
        .find(|a| a.is_content_type("application", "pdf"))
        .map(|a| a.contents().to_vec()))
}

/// Waits for exactly `n` emails: `n` arrive, and no more within [`SETTLE`].
async fn exactly(system: &System, n: usize) -> anyhow::Result<Vec<ReceivedMail>> {
    system.mail.wait_for(n, Duration::from_secs(30)).await;
    tokio::time::sleep(SETTLE).await;
    let mails = system.mail.mails();
    anyhow::ensure!(
        mails.len() == n,
        "expected {n} emails, got {}: {:?}",
        mails.len(),
        mails
            .iter()
            .map(|m| parse(m).map(|p| p.subject().unwrap_or_default().to_string()))
            .collect::<Vec<_>>()
    );
    Ok(mails)
}

fn day_after(date: &str) -> anyhow::Result<String> {
    let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")?;
    Ok((day + chrono::Days::new(1)).to_string())
}

/// Publishes the stored `invoicing.invoice.issued` event again under a new message id, as a
/// redelivery or a relay that published twice would.
async fn redeliver_issued(system: &System, copy: u32) -> anyhow::Result<()> {
    let js = system.jetstream().await?;
    let subject = system.subjects().invoice("issued");
    let stream = js
        .get_stream(system.subjects().stream_name("INVOICING"))
        .await?;
    let original = stream.get_last_raw_message_by_subject(&subject).await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("redelivery-{copy}").as_str(),
    );
    js.publish_with_headers(subject, headers, original.payload)
        .await?
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invoice_is_emailed_once_then_receipts_and_a_reminder_follow() -> anyhow::Result<()> {
    let system = System::builder()
        .ledger()
        .invoicing()
        .notifier()
        .start()
        .await?;
    let result = emailed_once(&system).await;
    system.finish(result).await
}

async fn emailed_once(system: &System) -> anyhow::Result<()> {
    let invoice = claire_october(system).await?;
    assert_eq!(invoice.lines.len(), 3);

    // One email to Claire with the PDF, whose text reads back.
    let mails = exactly(system, 1).await?;
    assert_eq!(mails[0].rcpt_to, vec![CLAIRE_EMAIL.to_string()]);
    let parsed = parse(&mails[0])?;
    assert_eq!(
        parsed.subject(),
        Some(format!("Invoice {} – platform fees October 2026", invoice.number).as_str())
    );
    // Stable per email, and opaque: the invoice's id is not in it.
    let expected_id =
        notifier::mail::message_id("invoice_issued", &invoice.id, 0, "platform.example.test");
    assert_eq!(
        parsed.message_id().map(|id| format!("<{id}>")),
        Some(expected_id)
    );
    assert!(
        !parsed
            .message_id()
            .unwrap_or_default()
            .contains(&invoice.id)
    );
    let plain = parsed.body_text(0).unwrap_or_default().to_string();
    let html = parsed.body_html(0).unwrap_or_default().to_string();
    for body in [&plain, &html] {
        assert!(body.contains("Claire Hamilton Therapies"), "{body}");
        assert!(body.contains(&invoice.number), "{body}");
        assert!(body.contains("AUD 59.11"), "{body}");
    }
    assert!(
        plain.contains("BSB 000-000"),
        "bank details in the email: {plain}"
    );
    let pdf = pdf_of(&mails[0])?.ok_or_else(|| anyhow::anyhow!("no PDF attached"))?;
    let text = pdf_text(&pdf)?;
    for expected in [
        "INVOICE",
        invoice.number.as_str(),
        "October 2026",
        "9101",
        "9102",
        "9103",
        "AUD 59.11",
        "Platform Operator Pty Ltd",
        "ABN 00 000 000 000 (fake)",
        "Claire Hamilton Therapies",
        "BSB 000-000",
        "Page 1 of 1",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(
        !text.contains("9104"),
        "the cancelled booking is not billed"
    );
    assert!(
        !text.contains("TAX INVOICE"),
        "no tax, so not a tax invoice"
    );
    // The session on the last day at 23:30 Sydney time is printed in Sydney time.
    assert!(text.contains("31 Oct 2026 23:30"), "{text}");

    // The same event delivered twice more, with a second notifier replica sharing the
    // consumers: still one email.
    let (_, replica_stop, replica) = system.spawn_notifier().await?;
    redeliver_issued(system, 1).await?;
    redeliver_issued(system, 2).await?;
    exactly(system, 1).await?;
    replica_stop.cancel();
    replica.await??;
    let notifier_db = system.db("notifier").await?;
    let (state, attempts): (String, i32) = sqlx::query_as(
        "select state, attempts from emails where kind = 'invoice_issued' and reference = $1",
    )
    .bind(&invoice.id)
    .fetch_one(&notifier_db)
    .await?;
    assert_eq!((state.as_str(), attempts), ("sent", 1));

    // A crash after the server accepted the email but before it was recorded: the redelivery
    // sends it again, under the same Message-ID, so the recipient's client shows one message.
    sqlx::query("delete from emails where reference = $1")
        .bind(&invoice.id)
        .execute(&notifier_db)
        .await?;
    redeliver_issued(system, 3).await?;
    let mails = exactly(system, 2).await?;
    assert_eq!(message_id(&mails[0])?, message_id(&mails[1])?);

    // A part payment: a receipt with the balance, no attachment.
    let mut invoicing = client(system).await?;
    invoicing
        .record_payment(RecordPaymentRequest {
            invoice_id: invoice.id.clone(),
            amount: "20.00".into(),
            received_on: "2026-11-03".into(),
            reference: invoice.number.clone(),
            idempotency_key: "claire-part-1".into(),
        })
        .await?;
    let mails = exactly(system, 3).await?;
    let receipt = parse(&mails[2])?;
    assert_eq!(
        receipt.subject(),
        Some(format!("Payment received for invoice {}", invoice.number).as_str())
    );
    let receipt_text = receipt.body_text(0).unwrap_or_default().to_string();
    assert!(
        receipt_text.contains("AUD 39.11"),
        "balance: {receipt_text}"
    );
    assert!(pdf_of(&mails[2])?.is_none());

    // Overdue: a reminder with the current PDF.
    invoicing
        .sweep_overdue(SweepOverdueRequest {
            as_of: day_after(&invoice.due_date)?,
        })
        .await?;
    let mails = exactly(system, 4).await?;
    let reminder = parse(&mails[3])?;
    assert_eq!(
        reminder.subject(),
        Some(format!("Payment reminder: invoice {} is overdue", invoice.number).as_str())
    );
    let reminder_pdf = pdf_text(&pdf_of(&mails[3])?.unwrap_or_default())?;
    assert!(reminder_pdf.contains("Overdue"), "{reminder_pdf}");
    assert!(reminder_pdf.contains("AUD 39.11"), "{reminder_pdf}");

    // A second part payment changes no status (overdue until paid in full) and still gets its
    // receipt; then the rest settles it.
    for (n, amount) in [(2, "10.00"), (3, "29.11")] {
        invoicing
            .record_payment(RecordPaymentRequest {
                invoice_id: invoice.id.clone(),
                amount: amount.into(),
                received_on: "2026-12-02".into(),
                reference: format!("{} part {n}", invoice.number),
                idempotency_key: format!("claire-part-{n}"),
            })
            .await?;
        exactly(system, 3 + n).await?;
    }
    let mails = system.mail.mails();
    let second = parse(&mails[4])?;
    assert_eq!(
        second.subject(),
        Some(format!("Payment received for invoice {}", invoice.number).as_str())
    );
    let second_text = second.body_text(0).unwrap_or_default().to_string();
    assert!(second_text.contains("AUD 10.00"), "{second_text}");
    assert!(second_text.contains("AUD 29.11"), "balance: {second_text}");
    let last = parse(&mails[5])?;
    assert_eq!(
        last.subject(),
        Some(format!("Payment received – invoice {} is paid", invoice.number).as_str())
    );
    assert!(
        last.body_text(0)
            .unwrap_or_default()
            .contains("paid in full"),
        "the receipt says so"
    );

    // The PDF on demand shows it paid, over gRPC and through billingctl.
    let mut notifier = system.notifier_client()?;
    let on_demand = notifier
        .render_invoice_pdf(RenderInvoicePdfRequest {
            invoice_id: invoice.id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(on_demand.file_name, format!("{}.pdf", invoice.number));
    assert_eq!(on_demand.page_count, 1);
    let text = pdf_text(&on_demand.pdf)?;
    assert!(text.contains("Paid in full"), "{text}");
    assert!(text.contains("AUD 0.00"), "balance 0: {text}");
    let missing = notifier
        .render_invoice_pdf(RenderInvoicePdfRequest {
            invoice_id: "0195f000-0000-7000-8000-00000000dead".into(),
        })
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(missing, Some(tonic::Code::NotFound));

    let file = std::env::temp_dir().join(format!("billing-test-{}.pdf", invoice.id));
    let out = system
        .billingctl(&[
            "invoices",
            "pdf",
            &invoice.id,
            "--out",
            file.to_str().unwrap_or_default(),
        ])
        .await?;
    assert!(out.status.success(), "{out:?}");
    let saved = std::fs::read(&file)?;
    std::fs::remove_file(&file)?;
    assert!(pdf_text(&saved)?.contains(&invoice.number));
    let out = system
        .billingctl(&["invoices", "emails", &invoice.id, "--json"])
        .await?;
    assert!(out.status.success(), "{out:?}");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
    let kinds: Vec<&str> = rows.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "invoice_issued",
            "payment_received",
            "payment_reminder",
            "payment_received",
            "payment_received"
        ]
    );
    assert!(rows.iter().all(|r| r["state"] == "sent"), "{rows:?}");
    // Times in RFC 3339, as everywhere in billingctl's JSON.
    assert!(
        rows.iter().all(|r| r["sent_at"]
            .as_str()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())),
        "{rows:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_smtp_outage_delays_the_email_which_then_arrives_once() -> anyhow::Result<()> {
    let system = System::builder()
        .ledger()
        .invoicing()
        .notifier()
        .start()
        .await?;
    let result = smtp_outage(&system).await;
    system.finish(result).await
}

async fn smtp_outage(system: &System) -> anyhow::Result<()> {
    system.mail.stop();
    let invoice = claire_october(system).await?;

    // The notifier tries, fails, and keeps the event for later.
    let notifier_db = system.db("notifier").await?;
    let last_error: String = eventually(Duration::from_secs(30), || async {
        let row: Option<(i32, Option<String>)> = sqlx::query_as(
            "select attempts, last_error from emails where reference = $1 and state = 'pending'",
        )
        .bind(&invoice.id)
        .fetch_optional(&notifier_db)
        .await?;
        Ok(row.and_then(|(attempts, error)| (attempts >= 2).then_some(error.unwrap_or_default())))
    })
    .await?;
    assert!(last_error.contains("smtp unavailable"), "{last_error}");
    assert!(system.mail.mails().is_empty());

    // The server returns: the email goes out once.
    system.mail.restart().await?;
    let mails = exactly(system, 1).await?;
    assert_eq!(mails[0].rcpt_to, vec![CLAIRE_EMAIL.to_string()]);
    assert!(pdf_of(&mails[0])?.is_some());
    let state: String = sqlx::query_scalar("select state from emails where reference = $1")
        .bind(&invoice.id)
        .fetch_one(&notifier_db)
        .await?;
    assert_eq!(state, "sent");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_recipient_is_dead_lettered_and_the_operator_alerted() -> anyhow::Result<()> {
    let system = System::builder()
        .ledger()
        .invoicing()
        .notifier()
        .start()
        .await?;
    let result = refused(&system).await;
    system.finish(result).await
}

async fn refused(system: &System) -> anyhow::Result<()> {
    system.mail.reject(KENJI_EMAIL);

    // A poison event first: dead-lettered, and the stream keeps flowing.
    let js = system.jetstream().await?;
    js.publish(system.subjects().invoice("issued"), "not protobuf".into())
        .await?
        .await?;

    let publisher = Publisher::new(system).await?;
    publisher
        .book(
            "kenji",
            "7001",
            "5000",
            "confirmed",
            "2026-10-05T10:00:00+09:00",
        )
        .await?;
    ledger_has(system, 1).await?;
    let invoice = issued(&mut client(system).await?, "kenji", "2026-10").await?;

    // The only email is the operator's alert; Kenji's was refused.
    let mails = exactly(system, 1).await?;
    assert_eq!(mails[0].rcpt_to, vec![OPERATOR_EMAIL.to_string()]);
    let alert = parse(&mails[0])?;
    let subject = alert.subject().unwrap_or_default().to_string();
    assert!(subject.starts_with("[CRITICAL]"), "{subject}");
    assert!(subject.contains(&invoice.number), "{subject}");
    let body = alert.body_text(0).unwrap_or_default().to_string();
    assert!(body.contains("550"), "the server's answer: {body}");

    // The event and the poison one are in the dead-letter stream with their reasons; the alert
    // is on `alerts.email_rejected`.
    let dlq = system
        .subjects()
        .dead_letter("invoicing", "notifier-invoices");
    assert_eq!(system.count_in("DLQ", &dlq).await?, 2);
    // billingctl lists the notifier's dead letters with their reasons, and replays one.
    let listed = system
        .billingctl(&["dlq", "list", "--consumer", "notifier-invoices", "--json"])
        .await?;
    assert!(listed.status.success(), "{listed:?}");
    let letters: serde_json::Value = serde_json::from_slice(&listed.stdout)?;
    let letters = letters.as_array().cloned().unwrap_or_default();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(letters.iter().all(|l| l["consumer"] == "notifier-invoices"));
    let reason = |l: &serde_json::Value| l["reason"].as_str().unwrap_or_default().to_string();
    assert!(
        letters.iter().any(|l| reason(l).contains("550")),
        "{letters:?}"
    );
    // Replaying the poison event dead-letters it again (replaying the refused email would
    // only be refused again); the point is that it goes back to where it came from.
    let poison = letters
        .iter()
        .find(|l| !reason(l).contains("550") && !reason(l).is_empty())
        .ok_or_else(|| anyhow::anyhow!("no poison dead letter: {letters:?}"))?;
    let sequence = poison["sequence"].to_string();
    let replayed = system
        .billingctl(&["dlq", "replay", &sequence, "--json"])
        .await?;
    assert!(replayed.status.success(), "{replayed:?}");
    let replayed: serde_json::Value = serde_json::from_slice(&replayed.stdout)?;
    assert_eq!(replayed["replayed"], true);
    assert!(
        replayed["dead_letter"]["original_subject"]
            .as_str()
            .unwrap_or_default()
            .ends_with("invoice.issued"),
        "{replayed}"
    );
    assert_eq!(
        system
            .count_in("ALERTS", &system.subjects().alert("email_rejected"))
            .await?,
        1
    );
    let notifier_db = system.db("notifier").await?;
    let (state, error): (String, String) = sqlx::query_as(
        "select state, last_error from emails where kind = 'invoice_issued' and reference = $1",
    )
    .bind(&invoice.id)
    .fetch_one(&notifier_db)
    .await?;
    assert_eq!(state, "rejected");
    assert!(error.contains("550"), "{error}");

    // Other tenants' emails still go out.
    let claire = claire_october(system).await?;
    let mails = exactly(system, 2).await?;
    assert_eq!(mails[1].rcpt_to, vec![CLAIRE_EMAIL.to_string()]);
    assert!(
        parse(&mails[1])?
            .subject()
            .unwrap_or_default()
            .contains(&claire.number)
    );
    Ok(())
}
