//! After the close: gapless numbers across a void, payments, the overdue sweep, and adjustments
//! for changes after an invoice.

use std::time::Duration;

use billing_proto::invoicing::{
    GetInvoiceRequest, Outcome, RecordPaymentRequest, SweepOverdueRequest, VoidInvoiceRequest,
};

use crate::harness::{System, eventually};

use super::support::{Publisher, client, close, issued, ledger_has, money, pdf_text_of, total};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn voids_payments_overdue_and_changes_after_invoicing() -> anyhow::Result<()> {
    let system = System::builder()
        .ledger()
        .invoicing()
        .notifier()
        .start()
        .await?;
    let result = lifecycle(&system).await;
    system.finish(result).await
}

async fn lifecycle(system: &System) -> anyhow::Result<()> {
    let pb = Publisher::new(system).await?;
    pb.book(
        "claire",
        "L1",
        "100.00",
        "confirmed",
        "2026-08-10T10:00:00+10:00",
    )
    .await?;
    pb.book(
        "claire",
        "L2",
        "50.00",
        "confirmed",
        "2026-08-11T10:00:00+10:00",
    )
    .await?;
    ledger_has(system, 2).await?;
    let mut invoicing = client(system).await?;
    let first = issued(&mut invoicing, "claire", "2026-08").await?;
    assert_eq!(
        (first.number.as_str(), total(&first).as_str()),
        ("CLAIRE-2026-0001", "30.00")
    );
    assert!(
        first.payment_instructions.contains("BSB 000-000"),
        "{}",
        first.payment_instructions
    );
    assert!(first.payment_instructions.contains("CLAIRE-2026-0001"));

    // Void, then the month is issued again under the next number; the void keeps its number.
    let voided = invoicing
        .void_invoice(VoidInvoiceRequest {
            invoice_id: first.id.clone(),
            reason: "wrong billing email".into(),
        })
        .await?
        .into_inner();
    assert_eq!(voided.status, "void");
    assert_eq!(voided.void_reason, "wrong billing email");
    let august = issued(&mut invoicing, "claire", "2026-08").await?;
    assert_eq!(
        (august.number.as_str(), total(&august).as_str()),
        ("CLAIRE-2026-0002", "30.00")
    );

    // After August was invoiced: L2 is cancelled, L1 re-priced, and L3 (an August session)
    // reaches the ledger late. September also has its own booking.
    pb.book(
        "claire",
        "L2",
        "50.00",
        "cancelled",
        "2026-08-11T10:00:00+10:00",
    )
    .await?;
    pb.book(
        "claire",
        "L1",
        "120.00",
        "confirmed",
        "2026-08-10T10:00:00+10:00",
    )
    .await?;
    pb.book(
        "claire",
        "L3",
        "10.00",
        "confirmed",
        "2026-08-30T10:00:00+10:00",
    )
    .await?;
    pb.book(
        "claire",
        "S1",
        "200.00",
        "confirmed",
        "2026-09-05T10:00:00+10:00",
    )
    .await?;
    ledger_has(system, 4).await?;
    // The ledger's change events reach invoicing asynchronously; a dry run shows when.
    let would = eventually(Duration::from_secs(20), || {
        let mut invoicing = invoicing.clone();
        async move {
            let dry = close(&mut invoicing, "claire", "2026-09", true).await?;
            let invoice = dry.invoice.unwrap_or_default();
            Ok((invoice.lines.len() == 4).then_some(invoice))
        }
    })
    .await?;
    assert_eq!(total(&would), "36.00");
    let september = issued(&mut invoicing, "claire", "2026-09").await?;
    assert_eq!(september.number, "CLAIRE-2026-0003");
    let lines: Vec<(&str, &str, String, &str)> = september
        .lines
        .iter()
        .map(|l| {
            (
                l.booking_ref.as_str(),
                l.kind.as_str(),
                money(l.platform_fee.as_ref()),
                l.description.as_str(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("S1", "booking", "40.00".to_string(), ""),
            (
                "L1",
                "adjustment",
                "4.00".to_string(),
                "booking now 120.00; 100.00 billed up to invoice CLAIRE-2026-0002"
            ),
            (
                "L2",
                "adjustment",
                "-10.00".to_string(),
                "cancelled; 50.00 billed up to invoice CLAIRE-2026-0002"
            ),
            (
                "L3",
                "adjustment",
                "2.00".to_string(),
                "session in 2026-08, recorded after 2026-08 was closed"
            ),
        ]
    );
    // 40.00 + 4.00 − 10.00 + 2.00; the August invoice itself is unchanged.
    assert_eq!(total(&september), "36.00");
    // Its PDF prints each adjustment with what changed.
    let text = pdf_text_of(system, &september.id).await?;
    for line in september.lines.iter().filter(|l| l.kind == "adjustment") {
        assert!(
            text.contains(&line.description),
            "{:?}: {text}",
            line.description
        );
    }
    assert!(
        text.contains("1 billable booking (confirmed or completed) and 3 adjustments"),
        "{text}"
    );
    let august_again = invoicing
        .get_invoice(GetInvoiceRequest {
            invoice_id: august.id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(total(&august_again), "30.00");
    assert_eq!(august_again.lines.len(), 2);
    // Voiding August now, after September adjusted two of its bookings: August's new invoice
    // bills each booking's worth minus what September already billed for it.
    invoicing
        .void_invoice(VoidInvoiceRequest {
            invoice_id: august.id.clone(),
            reason: "tenant asked for a corrected address".into(),
        })
        .await?;
    let august = issued(&mut invoicing, "claire", "2026-08").await?;
    assert_eq!(august.number, "CLAIRE-2026-0004");
    let lines: Vec<(&str, String, String)> = august
        .lines
        .iter()
        .map(|l| {
            (
                l.booking_ref.as_str(),
                money(l.platform_fee.as_ref()),
                l.description.clone(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (
                "L1",
                "20.00".to_string(),
                "booking now 120.00; 20.00 billed up to invoice CLAIRE-2026-0003".to_string()
            ),
            (
                "L2",
                "10.00".to_string(),
                "cancelled; -50.00 billed up to invoice CLAIRE-2026-0003".to_string()
            ),
        ]
    );
    // L1 24.00 + L3 2.00 in all, across August and September.
    assert_eq!(total(&august), "30.00");
    // Nothing is billed twice: closing October finds no adjustment left.
    let october = close(&mut invoicing, "claire", "2026-10", false).await?;
    assert_eq!(
        october.outcome(),
        Outcome::NoBillableBookings,
        "{october:?}"
    );

    // A partial payment, the same transfer recorded twice, then an overpayment.
    let pay = |amount: &str, key: &str| RecordPaymentRequest {
        invoice_id: august.id.clone(),
        amount: amount.into(),
        received_on: "2026-09-03".into(),
        reference: "CLAIRE-2026-0004".into(),
        idempotency_key: key.into(),
    };
    let partial = invoicing
        .record_payment(pay("10.00", "t-1"))
        .await?
        .into_inner();
    assert!(partial.recorded && !partial.overpaid);
    let partial = partial.invoice.unwrap_or_default();
    assert_eq!(partial.status, "partially_paid");
    assert_eq!(money(partial.balance.as_ref()), "20.00");
    let again = invoicing
        .record_payment(pay("10.00", "t-1"))
        .await?
        .into_inner();
    assert!(!again.recorded);
    // The same key for a different transfer is refused, not silently dropped.
    let reused = invoicing.record_payment(pay("12.00", "t-1")).await;
    assert_eq!(
        reused.err().map(|s| s.code()),
        Some(tonic::Code::InvalidArgument)
    );
    let over = invoicing
        .record_payment(pay("25.00", "t-2"))
        .await?
        .into_inner();
    assert!(over.recorded && over.overpaid);
    let over = over.invoice.unwrap_or_default();
    assert_eq!(over.status, "paid");
    assert_eq!(money(over.amount_paid.as_ref()), "35.00");
    assert_eq!(money(over.balance.as_ref()), "-5.00");
    assert_eq!(over.payments.len(), 2);
    let bad = invoicing.record_payment(pay("-1.00", "t-3")).await;
    assert_eq!(
        bad.err().map(|s| s.code()),
        Some(tonic::Code::InvalidArgument)
    );
    // A paid invoice cannot be voided.
    let refused = invoicing
        .void_invoice(VoidInvoiceRequest {
            invoice_id: august.id.clone(),
            reason: "oops".into(),
        })
        .await;
    assert_eq!(
        refused.err().map(|s| s.code()),
        Some(tonic::Code::FailedPrecondition)
    );

    // The daily sweep, as the CronJob runs it: September's invoice is overdue after its due date.
    let after_due = chrono::NaiveDate::parse_from_str(&september.due_date, "%Y-%m-%d")?
        .succ_opt()
        .map(|d| d.to_string())
        .unwrap_or_default();
    let output = system
        .billingctl(&["invoices", "sweep-overdue", "--as-of", &after_due])
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 invoice(s) marked overdue"), "{stdout}");
    assert!(stdout.contains("CLAIRE-2026-0003"), "{stdout}");
    let swept = invoicing
        .sweep_overdue(SweepOverdueRequest {
            as_of: after_due.clone(),
        })
        .await?
        .into_inner();
    assert!(swept.marked.is_empty(), "a second sweep marks nothing new");
    let paid = invoicing
        .record_payment(RecordPaymentRequest {
            invoice_id: september.id.clone(),
            amount: "36.00".into(),
            received_on: after_due,
            reference: "CLAIRE-2026-0003 late".into(),
            idempotency_key: String::new(),
        })
        .await?
        .into_inner()
        .invoice
        .unwrap_or_default();
    assert_eq!(paid.status, "paid");
    let path: Vec<(&str, &str)> = paid
        .history
        .iter()
        .map(|h| (h.from_status.as_str(), h.to_status.as_str()))
        .collect();
    assert_eq!(
        path,
        [
            ("", "draft"),
            ("draft", "issued"),
            ("issued", "overdue"),
            ("overdue", "paid")
        ]
    );
    // Every transition was announced on invoicing.invoice.<status>.
    for (status, n) in [
        ("issued", 4),
        ("void", 2),
        ("partially_paid", 1),
        ("paid", 2),
        ("overdue", 1),
    ] {
        let subject = system.subjects().invoice(status);
        let count = eventually(Duration::from_secs(10), || async {
            let count = system.count_in("INVOICING", &subject).await?;
            Ok((count >= n).then_some(count))
        })
        .await?;
        assert_eq!(count, n, "{subject}");
    }
    Ok(())
}
