//! Bank statements end to end, as the operator imports them (`billingctl reconcile bank`, docs/operations.md
//! "Month end with billingctl" step 4): what may not be recorded (more than the balance, a voided
//! invoice, another currency) is left for a person and records nothing, `--dry-run` records
//! nothing, and identical transfers are two payments in one statement but never twice across
//! imports. Each test checks what invoicing stored (payments, amounts, statuses), not only what
//! billingctl printed.

use billing_proto::invoicing::{GetInvoiceRequest, Invoice, VoidInvoiceRequest};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::harness::System;
use crate::invoicing::{Publisher, client, issued, ledger_has};

/// What billingctl exits with when something is left for a person.
const ATTENTION: i32 = 3;

/// Claire's October, issued: 20 % of 100.00 + 50.00, no tax, so AUD 30.00.
async fn claire_october(system: &System) -> anyhow::Result<Invoice> {
    let publisher = Publisher::new(system).await?;
    for (id, price) in [("9301", "100.00"), ("9302", "50.00")] {
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
    assert_eq!(amount(invoice.total.as_ref()), dec("30.00"));
    Ok(invoice)
}

fn dec(s: &str) -> Decimal {
    s.parse().expect("a decimal")
}

fn amount(m: Option<&billing_proto::Money>) -> Decimal {
    m.and_then(|m| m.amount.parse().ok())
        .unwrap_or(Decimal::MIN)
}

/// Imports `statement` (CSV text) with billingctl: its exit status and its JSON rows.
async fn import(
    system: &System,
    name: &str,
    statement: &str,
    options: &[&str],
) -> anyhow::Result<(Option<i32>, Vec<Value>)> {
    let dir = std::env::temp_dir().join(format!("billing-e2e-bank-{}", system.namespace));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    std::fs::write(&path, statement)?;
    let path = path.display().to_string();
    let mut args = vec!["reconcile", "bank", path.as_str(), "--json"];
    args.extend_from_slice(options);
    let out = system.billingctl(&args).await?;
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).map_err(|e| {
        anyhow::anyhow!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out.status.code(), rows))
}

/// The (outcome, detail) billingctl reported for statement line `line`.
fn outcome(rows: &[Value], line: u64) -> (String, String) {
    rows.iter()
        .find(|r| r["line"] == line)
        .map(|r| {
            (
                r["outcome"].as_str().unwrap_or_default().to_string(),
                r["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .unwrap_or_default()
}

/// The invoice as invoicing holds it now.
async fn stored(system: &System, invoice_id: &str) -> anyhow::Result<Invoice> {
    Ok(client(system)
        .await?
        .get_invoice(GetInvoiceRequest {
            invoice_id: invoice_id.to_string(),
        })
        .await?
        .into_inner())
}

/// Every payment invoicing has recorded, for any invoice.
async fn payments_recorded(system: &System) -> anyhow::Result<i64> {
    let db = system.db("invoicing").await?;
    Ok(sqlx::query_scalar("select count(*) from payments")
        .fetch_one(&db)
        .await?)
}

/// The payments of `invoice`: (amount, reference), oldest first.
fn payments(invoice: &Invoice) -> Vec<(Decimal, String)> {
    invoice
        .payments
        .iter()
        .map(|p| (amount(p.amount.as_ref()), p.reference.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_above_the_balance_due_records_nothing() -> anyhow::Result<()> {
    let system = System::start().await?;
    let result = over_balance(&system).await;
    system.finish(result).await
}

async fn over_balance(system: &System) -> anyhow::Result<()> {
    let invoice = claire_october(system).await?;
    let number = &invoice.number;
    // 40.00 for a 30.00 invoice; then 10.00 (recorded), then 25.00, more than the 20.00 left.
    let statement = format!(
        "Date,Description,Amount,Reference\n\
         2026-11-03,TRANSFER FROM C HAMILTON,40.00,{number}\n\
         2026-11-04,TRANSFER FROM C HAMILTON,10.00,{number}\n\
         2026-11-05,TRANSFER FROM C HAMILTON,25.00,{number}\n"
    );
    let (code, rows) = import(system, "over.csv", &statement, &[]).await?;
    assert_eq!(code, Some(ATTENTION), "{rows:?}");
    let (first, why) = outcome(&rows, 2);
    assert_eq!(first, "unmatched");
    assert!(
        why.contains("40.00 is more than the balance due of 30.00"),
        "{why}"
    );
    assert_eq!(
        outcome(&rows, 3),
        ("recorded".into(), "partially_paid".into())
    );
    let (third, why) = outcome(&rows, 4);
    assert_eq!(third, "unmatched");
    assert!(
        why.contains("25.00 is more than the balance due of 20.00"),
        "{why}"
    );

    let now = stored(system, &invoice.id).await?;
    assert_eq!(now.status, "partially_paid");
    assert_eq!(amount(now.amount_paid.as_ref()), dec("10.00"));
    assert_eq!(amount(now.balance.as_ref()), dec("20.00"));
    assert_eq!(payments(&now), [(dec("10.00"), number.clone())]);
    assert_eq!(payments_recorded(system).await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_for_a_voided_invoice_records_nothing() -> anyhow::Result<()> {
    let system = System::start().await?;
    let result = voided(&system).await;
    system.finish(result).await
}

/// Claire's October invoice voided and issued again under the next number; a transfer naming
/// the voided number. Returns (voided, reissued, the import's exit status and rows).
async fn pay_a_voided_invoice(
    system: &System,
) -> anyhow::Result<(Invoice, Invoice, Option<i32>, Vec<Value>)> {
    let first = claire_october(system).await?;
    let mut invoicing = client(system).await?;
    invoicing
        .void_invoice(VoidInvoiceRequest {
            invoice_id: first.id.clone(),
            reason: "wrong billing address".into(),
        })
        .await?;
    let reissued = issued(&mut invoicing, "claire", "2026-10").await?;
    assert_ne!(reissued.number, first.number);
    let statement = format!(
        "Date,Description,Amount,Reference\n\
         2026-11-03,TRANSFER FROM C HAMILTON,30.00,{}\n",
        first.number
    );
    let (code, rows) = import(system, "voided.csv", &statement, &[]).await?;
    Ok((first, reissued, code, rows))
}

async fn voided(system: &System) -> anyhow::Result<()> {
    let (first, reissued, code, rows) = pay_a_voided_invoice(system).await?;
    assert_eq!(code, Some(ATTENTION), "{rows:?}");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(outcome(&rows, 2).0, "unmatched", "{rows:?}");

    // Neither the voided invoice nor the one that replaced it was paid.
    let voided = stored(system, &first.id).await?;
    assert_eq!(voided.status, "void");
    assert!(voided.payments.is_empty(), "{:?}", voided.payments);
    assert_eq!(amount(voided.amount_paid.as_ref()), Decimal::ZERO);
    let open = stored(system, &reissued.id).await?;
    assert_eq!(open.status, "issued");
    assert!(open.payments.is_empty(), "{:?}", open.payments);
    assert_eq!(payments_recorded(system).await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_for_a_voided_invoice_is_reported_as_such() -> anyhow::Result<()> {
    let system = System::start().await?;
    let result = voided_reason(&system).await;
    system.finish(result).await
}

async fn voided_reason(system: &System) -> anyhow::Result<()> {
    // docs/operations.md: "one that cannot be recorded (a voided invoice, more than the balance) is
    // reported unmatched with the reason". The person reading the report must learn that the
    // invoice the transfer names is void, not that it names none.
    let (first, _, _, rows) = pay_a_voided_invoice(system).await?;
    let (_, why) = outcome(&rows, 2);
    assert!(
        why.contains(&first.number) && why.contains("void"),
        "the reason names the voided invoice: {why:?}"
    );
    assert!(!why.contains("no invoice number"), "{why:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_run_reports_what_would_be_recorded_and_records_nothing() -> anyhow::Result<()> {
    let system = System::start().await?;
    let result = dry_run(&system).await;
    system.finish(result).await
}

async fn dry_run(system: &System) -> anyhow::Result<()> {
    let invoice = claire_october(system).await?;
    let number = &invoice.number;
    let statement = format!(
        "Date,Description,Amount,Reference\n\
         2026-11-03,TRANSFER FROM C HAMILTON,12.00,{number}\n\
         2026-11-04,TRANSFER FROM C HAMILTON,18.00,{number}\n"
    );
    let (code, rows) = import(system, "dry.csv", &statement, &["--dry-run"]).await?;
    assert_eq!(code, Some(0), "{rows:?}");
    // Later lines see earlier ones as paid, as they would for real.
    assert_eq!(
        outcome(&rows, 2),
        ("would_record".into(), "partially_paid".into())
    );
    assert_eq!(outcome(&rows, 3), ("would_record".into(), "paid".into()));
    let now = stored(system, &invoice.id).await?;
    assert_eq!(now.status, "issued");
    assert_eq!(amount(now.amount_paid.as_ref()), Decimal::ZERO);
    assert!(now.payments.is_empty(), "{:?}", now.payments);
    assert_eq!(payments_recorded(system).await?, 0);

    // The same statement for real: recorded now, so the dry run kept nothing back either.
    let (code, rows) = import(system, "dry.csv", &statement, &[]).await?;
    assert_eq!(code, Some(0), "{rows:?}");
    assert_eq!(
        outcome(&rows, 2),
        ("recorded".into(), "partially_paid".into())
    );
    assert_eq!(outcome(&rows, 3), ("recorded".into(), "paid".into()));
    let now = stored(system, &invoice.id).await?;
    assert_eq!(now.status, "paid");
    assert_eq!(
        payments(&now),
        [
            (dec("12.00"), number.clone()),
            (dec("18.00"), number.clone())
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_in_another_currency_records_nothing() -> anyhow::Result<()> {
    let system = System::start().await?;
    let result = currency(&system).await;
    system.finish(result).await
}

async fn currency(system: &System) -> anyhow::Result<()> {
    let invoice = claire_october(system).await?;
    let number = &invoice.number;
    // A multi-currency account: the same figure in NZD is not AUD 30.00; the AUD one is.
    let statement = format!(
        "Date,Description,Amount,Currency,Reference\n\
         2026-11-03,TRANSFER FROM C HAMILTON,30.00,NZD,{number}\n\
         2026-11-04,TRANSFER FROM C HAMILTON,30.00,aud,{number}\n"
    );
    let (code, rows) = import(
        system,
        "currency.csv",
        &statement,
        &["--currency-column", "Currency"],
    )
    .await?;
    assert_eq!(code, Some(ATTENTION), "{rows:?}");
    let (nzd, why) = outcome(&rows, 2);
    assert_eq!(nzd, "unmatched");
    assert!(
        why.contains(&format!("transfer in NZD, invoice {number} in AUD")),
        "{why}"
    );
    assert_eq!(outcome(&rows, 3), ("recorded".into(), "paid".into()));

    let now = stored(system, &invoice.id).await?;
    assert_eq!(now.status, "paid");
    assert_eq!(payments(&now), [(dec("30.00"), number.clone())]);
    assert_eq!(payments_recorded(system).await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_transfers_are_two_payments_and_a_second_import_records_neither_again()
-> anyhow::Result<()> {
    let system = System::start().await?;
    let result = duplicates(&system).await;
    system.finish(result).await
}

async fn duplicates(system: &System) -> anyhow::Result<()> {
    let invoice = claire_october(system).await?;
    let number = &invoice.number;
    // Claire pays 10.00 twice on the same day with the same reference: two transfers.
    let statement = format!(
        "Date,Description,Amount,Reference\n\
         2026-11-03,TRANSFER FROM C HAMILTON,10.00,{number}\n\
         2026-11-03,TRANSFER FROM C HAMILTON,10.00,{number}\n"
    );
    let (code, rows) = import(system, "twice.csv", &statement, &[]).await?;
    assert_eq!(code, Some(0), "{rows:?}");
    assert_eq!(
        outcome(&rows, 2),
        ("recorded".into(), "partially_paid".into())
    );
    assert_eq!(
        outcome(&rows, 3),
        ("recorded".into(), "partially_paid".into())
    );
    let two = [
        (dec("10.00"), number.clone()),
        (dec("10.00"), number.clone()),
    ];
    let now = stored(system, &invoice.id).await?;
    assert_eq!(payments(&now), two);
    assert_eq!(amount(now.amount_paid.as_ref()), dec("20.00"));
    assert_eq!(now.status, "partially_paid");

    // The same statement imported again (a rerun, an overlapping download): nothing new.
    let (code, rows) = import(system, "twice.csv", &statement, &[]).await?;
    assert_eq!(code, Some(0), "{rows:?}");
    assert_eq!(outcome(&rows, 2).0, "already_recorded");
    assert_eq!(outcome(&rows, 3).0, "already_recorded");
    let now = stored(system, &invoice.id).await?;
    assert_eq!(payments(&now), two);
    assert_eq!(amount(now.amount_paid.as_ref()), dec("20.00"));
    assert_eq!(amount(now.balance.as_ref()), dec("10.00"));
    assert_eq!(payments_recorded(system).await?, 2);
    Ok(())
}
