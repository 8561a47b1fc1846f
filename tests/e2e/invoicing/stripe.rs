//! Stripe mode against a fake Stripe: one Stripe invoice through an outage, its events applied
//! once, and events not bound to it refused.

use std::time::Duration;

use async_nats::HeaderMap;
use billing_domain::stripe_signature;
use billing_proto::invoicing::{
    GetInvoiceRequest, Invoice, Outcome, PutTenantProfileRequest, TenantProfile,
};

use crate::harness::{OPERATOR_EMAIL, STRIPE_SECRET, System, eventually};

use super::support::{
    Client, Publisher, client, close, issued, ledger_has, money, pdf_text_of, total,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stripe_mode_makes_one_stripe_invoice_through_an_outage_applies_its_events_once_and_refuses_others()
-> anyhow::Result<()> {
    let system = System::start().await?;
    let result = stripe_mode(&system).await;
    system.finish(result).await
}

async fn stripe_mode(system: &System) -> anyhow::Result<()> {
    let pb = Publisher::new(system).await?;
    let mut invoicing = client(system).await?;
    let profile = invoicing
        .put_tenant_profile(PutTenantProfileRequest {
            profile: Some(TenantProfile {
                tenant_id: "claire".into(),
                legal_name: "Claire Hamilton Therapies Pty Ltd".into(),
                billing_email: "accounts@claire.example.test".into(),
                address: "1 Test Street\nSydney NSW 2000".into(),
                tax_id: "ABN 00 000 000 000".into(),
                currency: "AUD".into(),
                payment_terms_days: 14,
                tax_rate: "0.10".into(),
                invoicing_mode: "stripe".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    assert_eq!(profile.time_zone, "Australia/Sydney");
    assert_eq!(profile.invoice_prefix, "CLAIRE");
    pb.book(
        "claire",
        "P1",
        "150.00",
        "confirmed",
        "2026-07-10T10:00:00+10:00",
    )
    .await?;
    pb.book(
        "claire",
        "P2",
        "10.01",
        "confirmed",
        "2026-07-31T23:30:00+10:00",
    )
    .await?;
    // Kenji is invoiced by bank transfer: Stripe events can never touch his invoices.
    pb.book(
        "kenji",
        "K1",
        "12000",
        "confirmed",
        "2026-07-10T10:00:00+09:00",
    )
    .await?;
    ledger_has(system, 3).await?;

    // Stripe answers the customer, the invoice and its first item (each after a look-up for
    // one an earlier attempt made), then goes down: the invoice stays a draft.
    system.stripe.set_unavailable_after(6);
    let failed = close(&mut invoicing, "claire", "2026-07", false).await?;
    assert_eq!(failed.outcome(), Outcome::Failed, "{failed:?}");
    assert!(failed.error.contains("draft"), "{}", failed.error);
    let draft = failed.invoice.unwrap_or_default();
    assert_eq!(
        (draft.number.as_str(), draft.status.as_str()),
        ("CLAIRE-2026-0001", "draft")
    );
    // Still down: a retry fails the same way and makes nothing new.
    let failed_again = close(&mut invoicing, "claire", "2026-07", false).await?;
    assert_eq!(failed_again.outcome(), Outcome::Failed);
    // The operator is alerted once, however often the run is retried that day.
    let alert = system.subjects().alert("invoice_generation_failed");
    let alert_mail = eventually(Duration::from_secs(30), || async {
        let mails = system.mail.mails();
        Ok(mails
            .into_iter()
            .find(|m| m.rcpt_to.iter().any(|r| r == OPERATOR_EMAIL)))
    })
    .await?;
    let subject = mail_parser::MessageParser::default()
        .parse(&alert_mail.data)
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_default();
    assert_eq!(
        subject,
        "[CRITICAL] The 2026-07 invoice for tenant claire could not be generated"
    );
    assert_eq!(system.count_in("ALERTS", &alert).await?, 1);

    system.stripe.set_unavailable(false);
    let done = close(&mut invoicing, "claire", "2026-07", false).await?;
    assert_eq!(done.outcome(), Outcome::Issued, "{done:?}");
    let invoice = invoicing
        .get_invoice(GetInvoiceRequest {
            invoice_id: draft.id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(invoice.status, "issued");
    // Fees 30.00 + 2.00, GST 10 % 3.20.
    assert_eq!(money(invoice.subtotal.as_ref()), "32.00");
    assert_eq!(money(invoice.tax.as_ref()), "3.20");
    assert_eq!(total(&invoice), "35.20");
    assert!(
        invoice.stripe_hosted_url.starts_with("https://"),
        "{invoice:?}"
    );
    assert!(
        invoice
            .payment_instructions
            .contains(&invoice.stripe_hosted_url)
    );
    // 10 % tax makes it a tax invoice, paid through Stripe's page.
    let text = pdf_text_of(system, &invoice.id).await?;
    for expected in [
        "TAX INVOICE".to_string(),
        "Tax (10%)".to_string(),
        "AUD 35.20".to_string(),
        format!("Pay online: {}", invoice.stripe_hosted_url),
    ] {
        assert!(text.contains(&expected), "{expected:?} missing: {text}");
    }
    let again = close(&mut invoicing, "claire", "2026-07", false).await?;
    assert_eq!(again.outcome(), Outcome::AlreadyIssued);

    let stripe_invoices = system.stripe.invoices();
    assert_eq!(stripe_invoices.len(), 1, "{stripe_invoices:?}");
    let si = &stripe_invoices[0];
    assert_eq!(si["id"].as_str(), Some(invoice.stripe_invoice_id.as_str()));
    assert_eq!(si["total"], 3520);
    assert_eq!(si["status"], "open");
    assert_eq!(si["collection_method"], "send_invoice");
    assert_eq!(si["number"], "CLAIRE-2026-0001");
    assert!(system.stripe.sent(&invoice.stripe_invoice_id));
    assert_eq!(
        si["metadata"]["invoice_id"].as_str(),
        Some(invoice.id.as_str())
    );
    assert_eq!(system.stripe.customers().len(), 1);
    let calls = system.stripe.calls();
    let posts: Vec<_> = calls.iter().filter(|c| c.method == "POST").collect();
    assert!(
        posts.iter().all(|c| c.idempotency_key.is_some()),
        "{posts:?}"
    );
    let created: Vec<_> = posts
        .iter()
        .filter(|c| c.path == "/v1/invoices" && c.executed)
        .collect();
    assert_eq!(
        created.len(),
        1,
        "one Stripe invoice however often the close ran"
    );
    // Each step's progress was saved: the retries resumed at the second item, and never asked
    // Stripe for the customer, the invoice or the first item again.
    let asked = |suffix: &str| {
        posts
            .iter()
            .filter(|c| {
                c.idempotency_key
                    .as_deref()
                    .is_some_and(|k| k.ends_with(suffix))
            })
            .collect::<Vec<_>>()
    };
    assert_eq!((asked("-create").len(), asked("-item-0").len()), (1, 1));
    let second = asked("-item-1");
    assert_eq!(
        second.iter().filter(|c| c.executed).count(),
        1,
        "{second:?}"
    );
    assert!(
        second.len() > 1,
        "tried during the outage, then done: {second:?}"
    );
    assert!(asked("-item-2").is_empty(), "fees and tax only: two items");
    assert_eq!(system.stripe.items().len(), 2);

    let kenji = issued(&mut invoicing, "kenji", "2026-07").await?;
    let now = chrono::Utc::now().timestamp();
    forged_stripe_events_change_nothing(system, &mut invoicing, &invoice, &kenji, now).await?;

    // Stripe's events, through ingest: paid (twice, once past JetStream's dedup), a late
    // payment_failed and finalized, and a type invoicing does not act on.
    let stripe_event = |id: &str, kind: &str, created: i64| {
        serde_json::json!({
            "id": id, "object": "event", "type": kind, "created": created,
            "data": {"object": {"id": invoice.stripe_invoice_id, "object": "invoice",
                "currency": "aud", "total": 3520,
                "amount_paid": if kind == "invoice.paid" { 3520 } else { 0 },
                "metadata": {"invoice_id": invoice.id}}}
        })
        .to_string()
    };
    let events = [
        stripe_event("evt_paid", "invoice.paid", now),
        stripe_event("evt_failed", "invoice.payment_failed", now - 60),
        stripe_event("evt_finalized", "invoice.finalized", now - 120),
        stripe_event("evt_other", "customer.updated", now),
    ];
    for body in &events {
        let signature = stripe_signature::sign(STRIPE_SECRET, now, body.as_bytes());
        let response = system.post_stripe(body, &signature).await?;
        assert_eq!(response.status(), 202);
    }
    // The paid event again, as Stripe retries it days later (past JetStream's dedup window).
    let js = system.jetstream().await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        "stripe-retry-after-window",
    );
    js.publish_with_headers(
        system.subjects().stripe(),
        headers,
        events[0].clone().into(),
    )
    .await?
    .await?;

    let db = system.db("invoicing").await?;
    let outcomes: Vec<(String, String)> = eventually(Duration::from_secs(20), || async {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "select event_id, outcome from stripe_events where outcome <> 'refused'
             order by event_id",
        )
        .fetch_all(&db)
        .await?;
        Ok((rows.len() == 4).then_some(rows))
    })
    .await?;
    let outcomes: Vec<(&str, &str)> = outcomes
        .iter()
        .map(|(e, o)| (e.as_str(), o.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("evt_failed", "stale"),
            ("evt_finalized", "stale"),
            ("evt_other", "ignored"),
            ("evt_paid", "applied"),
        ]
    );
    let paid = invoicing
        .get_invoice(GetInvoiceRequest {
            invoice_id: invoice.id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(paid.status, "paid");
    assert_eq!(paid.payments.len(), 1, "{:?}", paid.payments);
    assert_eq!(paid.payments[0].method, "stripe");
    assert_eq!(money(paid.amount_paid.as_ref()), "35.20");
    Ok(())
}

/// Signed Stripe events that are not bound to Claire's Stripe invoice: each is refused with its
/// reason, changes nothing, and raises one alert per invoice named (or one for none).
async fn forged_stripe_events_change_nothing(
    system: &System,
    invoicing: &mut Client,
    claire: &Invoice,
    kenji: &Invoice,
    now: i64,
) -> anyhow::Result<()> {
    let event = |id: &str, kind: &str, object: serde_json::Value| {
        let mut invoice = serde_json::json!({
            "id": claire.stripe_invoice_id, "object": "invoice", "currency": "aud",
            "total": 3520, "amount_paid": 3520, "metadata": {"invoice_id": claire.id}});
        for (key, value) in object.as_object().into_iter().flatten() {
            invoice[key] = value.clone();
        }
        serde_json::json!({"id": id, "object": "event", "type": kind, "created": now,
            "data": {"object": invoice}})
        .to_string()
    };
    let forged = [
        (
            event(
                "evt_forged_other_stripe_invoice",
                "invoice.paid",
                serde_json::json!({"id": "in_forged_elsewhere"}),
            ),
            "the event is about Stripe invoice \"in_forged_elsewhere\"",
        ),
        (
            event(
                "evt_forged_void",
                "invoice.voided",
                serde_json::json!({"id": "in_forged_elsewhere", "amount_paid": 0}),
            ),
            "the event is about Stripe invoice \"in_forged_elsewhere\"",
        ),
        (
            event(
                "evt_forged_other_tenant",
                "invoice.paid",
                serde_json::json!({"metadata": {"invoice_id": kenji.id}}),
            ),
            "tenant kenji is in manual mode",
        ),
        (
            event(
                "evt_forged_unknown_invoice",
                "invoice.paid",
                serde_json::json!({"metadata": {"invoice_id": "0194f3c1-8b2e-7c4a-9d1e-3f5a6b7c8d9e"}}),
            ),
            "names no invoice of ours",
        ),
        (
            event(
                "evt_forged_overpaid",
                "invoice.paid",
                serde_json::json!({"amount_paid": 999_999}),
            ),
            "amount paid AUD 9999.99 is more than invoice",
        ),
        (
            event(
                "evt_forged_currency",
                "invoice.paid",
                serde_json::json!({"currency": "jpy"}),
            ),
            "the event's currency \"jpy\" is not the invoice's AUD",
        ),
    ];
    for (body, _) in &forged {
        let signature = stripe_signature::sign(STRIPE_SECRET, now, body.as_bytes());
        assert_eq!(system.post_stripe(body, &signature).await?.status(), 202);
    }
    let db = system.db("invoicing").await?;
    let refused: Vec<(String, String)> = eventually(Duration::from_secs(20), || async {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "select event_id, reason from stripe_events
                 where outcome = 'refused' order by event_id",
        )
        .fetch_all(&db)
        .await?;
        Ok((rows.len() == forged.len()).then_some(rows))
    })
    .await?;
    for (body, expected) in &forged {
        let id = serde_json::from_str::<serde_json::Value>(body)?["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (_, reason) = refused
            .iter()
            .find(|(event, _)| *event == id)
            .ok_or_else(|| anyhow::anyhow!("{id} not refused: {refused:?}"))?;
        assert!(reason.contains(expected), "{id}: {reason:?}");
    }
    // Nothing changed: both invoices are as issued, with no payment.
    for issued in [claire, kenji] {
        let now = invoicing
            .get_invoice(GetInvoiceRequest {
                invoice_id: issued.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(now.status, "issued", "{}", issued.number);
        assert!(now.payments.is_empty(), "{:?}", now.payments);
        assert_eq!(
            money(now.amount_paid.as_ref()),
            money(issued.amount_paid.as_ref())
        );
        assert_eq!(now.history.len(), issued.history.len(), "{:?}", now.history);
    }
    // One alert for Claire's invoice, one for Kenji's, one for the invoice that does not exist.
    let alert = system.subjects().alert("stripe_event_refused");
    eventually(Duration::from_secs(20), || async {
        Ok((system.count_in("ALERTS", &alert).await? == 3).then_some(()))
    })
    .await?;
    Ok(())
}
