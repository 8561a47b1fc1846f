//! One month of bookings travels from signed webhooks to an emailed invoice PDF.

use std::time::Duration;

use billing_domain::BillingPeriod;
use billing_proto::invoicing::{GenerateMonthlyInvoicesRequest, GetInvoiceRequest, Outcome};
use chrono::{Days, NaiveDate, Utc};
use chrono_tz::Australia::Sydney;
use mail_parser::{MessageParser, MimeHeaders};
use rust_decimal::Decimal;

use crate::harness::{CLAIRE_EMAIL, CLAIRE_SECRET, System, eventually, pdf_text};

fn booking(id: &str, price: &str, status: &str, local: NaiveDate, hms: (u32, u32)) -> String {
    let at = local
        .and_hms_opt(hms.0, hms.1, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default();
    serde_json::json!({
        "booking_id": id,
        "booking_hash": format!("hash-{id}"),
        "status": status,
        "price": price,
        "currency": "AUD",
        "datetime": at,
        "service": {"id": "7", "name": "Remedial massage 60 min", "duration": 60},
        "client": {"name": "Test Client", "email": "client@example.test", "phone": "0400 000 000"},
        "provider": {"name": "Claire"}
    })
    .to_string()
}

fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_bookings_become_one_emailed_invoice() -> anyhow::Result<()> {
    // Alone: it counts refusals and duplicates on the process's metrics.
    let system = System::builder().everything().alone().start().await?;
    let result = scenario(&system).await;
    system.finish(result).await
}

async fn scenario(system: &System) -> anyhow::Result<()> {
    let period = BillingPeriod::previous_to(Utc::now(), Sydney);
    let first = period.first_day();
    let last = period.last_day();
    let this_month = period.next().first_day();

    // Three bookings in last month (one cancelled), one in this month.
    let b1 = booking("9001", "150.00", "confirmed", first + Days::new(4), (10, 0));
    // 23:30 on the last day: the seed's `<= last day 00:00` filter lost these.
    let b2 = booking("9002", "10.01", "confirmed", last, (23, 30));
    let b3 = booking(
        "9003",
        "99.99",
        "cancelled",
        first + Days::new(13),
        (15, 30),
    );
    let b4 = booking("9004", "80.00", "confirmed", this_month, (9, 0));
    for (id, body) in [
        ("msg_9001", &b1),
        ("msg_9002", &b2),
        ("msg_9003", &b3),
        ("msg_9004", &b4),
    ] {
        let response = system
            .post_signed("claire", id, body, CLAIRE_SECRET)
            .await?;
        anyhow::ensure!(response.status() == 202, "{id}: {}", response.status());
    }
    // The same delivery again (a sender retry): acknowledged, not republished.
    let again = system
        .post_signed("claire", "msg_9001", &b1, CLAIRE_SECRET)
        .await?;
    assert_eq!(again.status(), 200);
    assert_eq!(again.text().await?, r#"{"status":"duplicate"}"#);
    // A forgery: signed with another key.
    let forged_body = booking("6666", "5000.00", "confirmed", first, (12, 0));
    let forged = system
        .post_signed(
            "claire",
            "msg_forged",
            &forged_body,
            "whsec_bm90LXRoZS1yZWFsLXNlY3JldA==",
        )
        .await?;
    assert_eq!(forged.status(), 401);
    // Unknown tenants are refused the same way.
    let unknown = system
        .post_signed("mallory", "msg_x", &b1, CLAIRE_SECRET)
        .await?;
    assert_eq!(unknown.status(), 401);

    // The ledger records the four genuine bookings with exact amounts.
    let ledger_db = system.db("ledger").await?;
    let rows: Vec<(String, String, Decimal, Decimal, Decimal, Decimal)> =
        eventually(Duration::from_secs(20), || async {
            let rows: Vec<(String, String, Decimal, Decimal, Decimal, Decimal)> = sqlx::query_as(
            "select booking_ref, status, total_amount, deposit_amount, cash_amount, platform_fee
             from bookings order by booking_ref",
        )
        .fetch_all(&ledger_db)
        .await?;
            Ok((rows.len() >= 4).then_some(rows))
        })
        .await?;
    let expected = [
        ("9001", "confirmed", "150.00", "30.00", "120.00", "30.00"),
        ("9002", "confirmed", "10.01", "2.00", "8.01", "2.00"),
        ("9003", "cancelled", "99.99", "20.00", "79.99", "20.00"),
        ("9004", "confirmed", "80.00", "16.00", "64.00", "16.00"),
    ];
    assert_eq!(rows.len(), expected.len(), "{rows:?}");
    for (row, (id, status, total, deposit, cash, fee)) in rows.iter().zip(expected) {
        assert_eq!(
            row,
            &(
                id.to_string(),
                status.to_string(),
                d(total),
                d(deposit),
                d(cash),
                d(fee)
            ),
        );
    }
    // Each record is chained to the one before it.
    let chain: Vec<(i64, String, String)> =
        sqlx::query_as("select chain_seq, prev_hash, record_hash from bookings order by chain_seq")
            .fetch_all(&ledger_db)
            .await?;
    assert_eq!(
        chain.iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    for pair in chain.windows(2) {
        assert_eq!(
            pair[1].1, pair[0].2,
            "record {} must chain to {}",
            pair[1].0, pair[0].0
        );
    }
    // Financial fields are immutable, even to a direct UPDATE.
    let tamper = sqlx::query("update bookings set platform_fee = 0 where booking_ref = '9001'")
        .execute(&ledger_db)
        .await;
    assert!(
        tamper.is_err(),
        "the trigger must refuse to change a recorded fee"
    );

    // The forged webhook and the unknown tenant's left no trace but their rejections: not in
    // the stream, not in the ledger; counted by ingest and audited as rejected (by body hash).
    let audit: Vec<(String, String, Option<String>)> =
        eventually(Duration::from_secs(20), || async {
            let rows: Vec<(String, String, Option<String>)> =
                sqlx::query_as("select event_id, outcome, reason from audit_log order by id")
                    .fetch_all(&ledger_db)
                    .await?;
            Ok((rows.len() == 6).then_some(rows))
        })
        .await?;
    let outcomes = |outcome: &str| audit.iter().filter(|r| r.1 == outcome).count();
    assert_eq!(
        (outcomes("stored"), outcomes("rejected")),
        (4, 2),
        "{audit:?}"
    );
    let mut reasons: Vec<_> = audit.iter().filter_map(|r| r.2.as_deref()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["bad_signature", "unknown_tenant"]);
    assert!(!audit.iter().any(|(id, ..)| id.contains("forged")));
    assert_eq!(
        system
            .stream_count(&system.subjects().simplybook_all())
            .await?,
        4
    );
    let metrics = system.metrics(system.ingest).await?;
    assert_eq!(
        metrics.since_start(
            r#"ingest_webhooks_rejected_total{source="simplybook",reason="bad_signature"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metrics.since_start(r#"ingest_webhooks_duplicate_total{source="simplybook"}"#),
        Some(1.0),
        "{metrics}"
    );

    // The monthly close, twice: one invoice, the same one both times.
    let mut invoicing = system.invoicing_client()?;
    let request = GenerateMonthlyInvoicesRequest {
        period: period.to_string(),
        tenant_id: "claire".into(),
        dry_run: false,
    };
    let first_run = invoicing
        .generate_monthly_invoices(request.clone())
        .await?
        .into_inner();
    let second_run = invoicing
        .generate_monthly_invoices(request)
        .await?
        .into_inner();
    assert_eq!(first_run.outcomes.len(), 1);
    assert_eq!(
        first_run.outcomes[0].outcome(),
        Outcome::Issued,
        "{first_run:?}"
    );
    assert_eq!(second_run.outcomes[0].outcome(), Outcome::AlreadyIssued);
    let issued = first_run.outcomes[0].invoice.clone().unwrap_or_default();
    let repeated = second_run.outcomes[0].invoice.clone().unwrap_or_default();
    let number = format!("CLAIRE-{}-0001", period.year());
    assert_eq!(issued.number, number);
    assert_eq!(
        (repeated.id.as_str(), repeated.number.as_str()),
        (issued.id.as_str(), number.as_str())
    );
    let invoice = invoicing
        .get_invoice(GetInvoiceRequest {
            invoice_id: issued.id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(invoice.booking_count, 2);
    assert_eq!(
        invoice.total.as_ref().map(|m| m.amount.as_str()),
        Some("32.00")
    );
    assert_eq!(
        invoice
            .lines
            .iter()
            .map(|l| l.booking_ref.as_str())
            .collect::<Vec<_>>(),
        vec!["9001", "9002"]
    );
    let invoice_db = system.db("invoicing").await?;
    let count: i64 = sqlx::query_scalar("select count(*) from invoices")
        .fetch_one(&invoice_db)
        .await?;
    assert_eq!(count, 1);

    // Exactly one email, to Claire's billing address, with the PDF.
    system.mail.wait_for(1, Duration::from_secs(30)).await;
    // Leave time for a wrongly repeated email to arrive before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mails = system.mail.mails();
    assert_eq!(mails.len(), 1, "exactly one email");
    assert_eq!(mails[0].rcpt_to, vec![CLAIRE_EMAIL.to_string()]);
    let parsed = MessageParser::default()
        .parse(&mails[0].data)
        .ok_or_else(|| anyhow::anyhow!("unparseable email"))?;
    assert!(parsed.subject().unwrap_or_default().contains(&number));
    let attachment = parsed
        .attachments()
        .find(|a| a.is_content_type("application", "pdf"))
        .ok_or_else(|| anyhow::anyhow!("no PDF attached"))?;
    assert_eq!(
        attachment.attachment_name(),
        Some(format!("{number}.pdf").as_str())
    );
    let text = pdf_text(attachment.contents())?;
    assert!(text.contains(&number), "{text}");
    assert!(text.contains("AUD 32.00"), "{text}");
    assert!(text.contains("Claire Hamilton Therapies"), "{text}");
    Ok(())
}
