//! Duplicate deliveries, waited out: each test publishes the duplicates, then waits until the
//! consumer has acknowledged everything up to the last of them (its ack floor in JetStream, with
//! nothing pending or awaiting an ack) before it counts the effects. Stronger than the tests it
//! follows up (`invoicing::stripe`'s Stripe retry after the dedup window, `notifier.rs`'s
//! redelivered `issued` event), which count as soon as the first effect shows and so would also
//! pass if a duplicate were still in flight, or never consumed at all.

use std::time::Duration;

use async_nats::HeaderMap;
use billing_domain::stripe_signature;
use billing_proto::invoicing::{PutTenantProfileRequest, TenantProfile};
use billing_testkit::MailSink;
use mail_parser::MessageParser;

use crate::harness::{CLAIRE_EMAIL, STRIPE_SECRET, System, eventually};
use crate::invoicing::{Publisher, client, issued, ledger_has};

const WAIT: Duration = Duration::from_secs(60);

/// Waits until durable `consumer` of stream `base` (e.g. `WEBHOOKS`) has acknowledged every
/// message up to stream sequence `through`: its ack floor is there, and no message is waiting
/// to be delivered or for its ack (a delayed retry counts as the latter).
async fn consumed(system: &System, base: &str, consumer: &str, through: u64) -> anyhow::Result<()> {
    let js = system.jetstream().await?;
    let stream = js.get_stream(system.subjects().stream_name(base)).await?;
    eventually(WAIT, || async {
        let info = stream.consumer_info(consumer).await?;
        Ok((info.ack_floor.stream_sequence >= through
            && info.num_pending == 0
            && info.num_ack_pending == 0)
            .then_some(()))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{consumer} never acknowledged through {through}: {e}"))
}

/// The last stream sequence of stream `base`.
async fn last_sequence(system: &System, base: &str) -> anyhow::Result<u64> {
    let js = system.jetstream().await?;
    let mut stream = js.get_stream(system.subjects().stream_name(base)).await?;
    Ok(stream.info().await?.state.last_sequence)
}

/// Publishes `payload` on `subject` under a fresh `Nats-Msg-Id`, as a redelivery after
/// JetStream's dedup window (or a publisher that sent twice) would arrive; its stream sequence.
async fn publish_again(
    system: &System,
    subject: String,
    msg_id: &str,
    payload: prost::bytes::Bytes,
) -> anyhow::Result<u64> {
    let js = system.jetstream().await?;
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
    let ack = js
        .publish_with_headers(subject, headers, payload)
        .await?
        .await?;
    anyhow::ensure!(!ack.duplicate, "{msg_id} must be stored, not deduplicated");
    Ok(ack.sequence)
}

/// `invoicing_stripe_events_total` of `invoice.paid` events with `outcome` since the system
/// started; 0 when there is none.
async fn paid_events_counted(system: &System, outcome: &str) -> anyhow::Result<f64> {
    let series =
        format!(r#"invoicing_stripe_events_total{{type="invoice.paid",outcome="{outcome}"}}"#);
    Ok(system
        .metrics(system.invoicing)
        .await?
        .since_start(&series)
        .unwrap_or(0.0))
}

fn subject_of(mail: &billing_testkit::ReceivedMail) -> String {
    MessageParser::default()
        .parse(&mail.data)
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stripe_paid_event_retried_after_the_dedup_window_is_consumed_and_pays_once()
-> anyhow::Result<()> {
    // Alone: it counts the paid events on the process's metrics.
    let system = System::builder().everything().alone().start().await?;
    let result = stripe_paid_retried(&system).await;
    system.finish(result).await
}

async fn stripe_paid_retried(system: &System) -> anyhow::Result<()> {
    let mut invoicing = client(system).await?;
    invoicing
        .put_tenant_profile(PutTenantProfileRequest {
            profile: Some(TenantProfile {
                tenant_id: "claire".into(),
                legal_name: "Claire Hamilton Therapies Pty Ltd".into(),
                billing_email: CLAIRE_EMAIL.into(),
                address: "1 Test Street\nSydney NSW 2000".into(),
                tax_id: "ABN 00 000 000 000".into(),
                currency: "AUD".into(),
                payment_terms_days: 14,
                tax_rate: "0.10".into(),
                invoicing_mode: "stripe".into(),
                ..Default::default()
            }),
        })
        .await?;
    Publisher::new(system)
        .await?
        .book(
            "claire",
            "D1",
            "150.00",
            "confirmed",
            "2026-07-10T10:00:00+10:00",
        )
        .await?;
    ledger_has(system, 1).await?;
    let invoice = issued(&mut invoicing, "claire", "2026-07").await?;
    assert!(!invoice.stripe_invoice_id.is_empty(), "{invoice:?}");
    let total = invoice.total.clone().unwrap_or_default().amount;
    // Fee 30.00, GST 10 % 3.00.
    assert_eq!(total, "33.00");

    let now = chrono::Utc::now().timestamp();
    let paid = serde_json::json!({
        "id": "evt_paid_retried", "object": "event", "type": "invoice.paid", "created": now,
        "data": {"object": {"id": invoice.stripe_invoice_id, "object": "invoice",
            "currency": "aud", "total": 3300, "amount_paid": 3300,
            "metadata": {"invoice_id": invoice.id}}}
    })
    .to_string();
    let signature = stripe_signature::sign(STRIPE_SECRET, now, paid.as_bytes());
    assert_eq!(system.post_stripe(&paid, &signature).await?.status(), 202);
    // Stripe's retry within the dedup window is answered without being stored again ...
    let retry = stripe_signature::sign(STRIPE_SECRET, now + 1, paid.as_bytes());
    assert_eq!(system.post_stripe(&paid, &retry).await?.status(), 200);
    // ... and its retries days later (past the window) are stored, and consumed.
    let subject = system.subjects().stripe();
    publish_again(
        system,
        subject.clone(),
        "stripe-retry-day-2",
        paid.clone().into(),
    )
    .await?;
    let last = publish_again(system, subject, "stripe-retry-day-3", paid.clone().into()).await?;
    consumed(system, "WEBHOOKS", "invoicing-stripe", last).await?;

    // Every delivery was handled: the event applied once, each retry seen as a duplicate.
    assert_eq!(paid_events_counted(system, "applied").await?, 1.0);
    assert_eq!(paid_events_counted(system, "duplicate").await?, 2.0);
    let db = system.db("invoicing").await?;
    let events: Vec<(String, String)> =
        sqlx::query_as("select event_id, outcome from stripe_events order by event_id")
            .fetch_all(&db)
            .await?;
    assert_eq!(
        events,
        [("evt_paid_retried".to_string(), "applied".to_string())]
    );

    // One effect: one payment, the invoice paid, one of each event announcing it.
    let now = invoicing
        .get_invoice(billing_proto::invoicing::GetInvoiceRequest {
            invoice_id: invoice.id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(now.status, "paid");
    assert_eq!(now.payments.len(), 1, "{:?}", now.payments);
    assert_eq!(now.payments[0].method, "stripe");
    assert_eq!(now.amount_paid.unwrap_or_default().amount, "33.00");
    let payments: i64 = sqlx::query_scalar("select count(*) from payments")
        .fetch_one(&db)
        .await?;
    assert_eq!(payments, 1);
    eventually(WAIT, || async {
        let unsent: i64 =
            sqlx::query_scalar("select count(*) from outbox where published_at is null")
                .fetch_one(&db)
                .await?;
        Ok((unsent == 0).then_some(()))
    })
    .await?;
    for status in ["payment_recorded", "paid"] {
        let subject = system.subjects().invoice(status);
        assert_eq!(
            system.count_in("INVOICING", &subject).await?,
            1,
            "{subject}"
        );
    }

    // And one receipt, once the notifier has handled everything invoicing published.
    let through = last_sequence(system, "INVOICING").await?;
    consumed(system, "INVOICING", "notifier-invoices", through).await?;
    let receipts: Vec<String> = system
        .mail
        .mails()
        .iter()
        .map(subject_of)
        .filter(|s| s.starts_with("Payment received"))
        .collect();
    assert_eq!(
        receipts,
        [format!(
            "Payment received – invoice {} is paid",
            invoice.number
        )]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redelivered_invoice_event_is_consumed_by_both_replicas_and_emailed_once()
-> anyhow::Result<()> {
    let system = System::start().await?;
    let result = redelivered_with_two_replicas(&system).await;
    system.finish(result).await
}

async fn redelivered_with_two_replicas(system: &System) -> anyhow::Result<()> {
    // A second notifier replica on the same database and durable consumers, with a mail server
    // of its own: an email in that server can only have been sent by this replica.
    let replica_mail = MailSink::start().await?;
    let port = replica_mail.addr().port();
    let (_, replica_stop, replica) = system
        .spawn_notifier_with(|c| {
            c.smtp_port = port;
            c.from.name = Some("Platform Billing (replica B)".into());
        })
        .await?;
    let result = redelivered(system, &replica_mail).await;
    replica_stop.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(15), replica)
        .await
        .map_err(|_| anyhow::anyhow!("the second notifier did not stop within 15 s"));
    result?;
    stopped??
}

async fn redelivered(system: &System, replica_mail: &MailSink) -> anyhow::Result<()> {
    // The first replica's mail server is down: it can only retry. Whatever it holds, the
    // invoice's email can go out only through the second replica.
    system.mail.stop();
    let publisher = Publisher::new(system).await?;
    for (id, price) in [("9501", "100.00"), ("9502", "50.00")] {
        publisher
            .book(
                "claire",
                id,
                price,
                "confirmed",
                "2026-10-14T10:00:00+11:00",
            )
            .await?;
    }
    ledger_has(system, 2).await?;
    let invoice = issued(&mut client(system).await?, "claire", "2026-10").await?;

    // The `issued` event, then two copies of it, as a redelivery or a relay that published
    // twice would; both replicas pull them.
    let subject = system.subjects().invoice("issued");
    let js = system.jetstream().await?;
    let stream = js
        .get_stream(system.subjects().stream_name("INVOICING"))
        .await?;
    let original = eventually(WAIT, || async {
        Ok(stream.get_last_raw_message_by_subject(&subject).await.ok())
    })
    .await?;
    publish_again(
        system,
        subject.clone(),
        "issued-copy-1",
        original.payload.clone(),
    )
    .await?;
    let last = publish_again(
        system,
        subject.clone(),
        "issued-copy-2",
        original.payload.clone(),
    )
    .await?;
    consumed(system, "INVOICING", "notifier-invoices", last).await?;

    // All three deliveries handled: one email, sent by the second replica.
    let sent = replica_mail.mails();
    assert_eq!(
        sent.len(),
        1,
        "{:?}",
        sent.iter().map(subject_of).collect::<Vec<_>>()
    );
    assert_eq!(sent[0].rcpt_to, [CLAIRE_EMAIL.to_string()]);
    assert!(subject_of(&sent[0]).starts_with(&format!("Invoice {}", invoice.number)));
    let from = MessageParser::default()
        .parse(&sent[0].data)
        .and_then(|m| {
            m.from()
                .and_then(|f| f.first())
                .and_then(|a| a.name().map(str::to_string))
        })
        .unwrap_or_default();
    assert_eq!(from, "Platform Billing (replica B)");
    let notifier_db = system.db("notifier").await?;
    let rows: Vec<(String, String)> =
        sqlx::query_as("select kind, state from emails where reference = $1")
            .bind(&invoice.id)
            .fetch_all(&notifier_db)
            .await?;
    assert_eq!(rows, [("invoice_issued".to_string(), "sent".to_string())]);

    // The first replica's server is back, and the event is delivered twice more to both
    // replicas: once everything is acknowledged, still the one email, in either server.
    system.mail.restart().await?;
    publish_again(
        system,
        subject.clone(),
        "issued-copy-3",
        original.payload.clone(),
    )
    .await?;
    let last = publish_again(system, subject, "issued-copy-4", original.payload).await?;
    consumed(system, "INVOICING", "notifier-invoices", last).await?;
    assert!(system.mail.mails().is_empty(), "{:?}", system.mail.mails());
    assert_eq!(replica_mail.mails().len(), 1);
    Ok(())
}
