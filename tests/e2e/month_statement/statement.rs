//! The acceptance of issue 21: Claire's October — a deposit missing, one short, one paid twice,
//! one cancelled after its deposit, a mangled reference, an unknown line, and a booking
//! SimplyBook has that the ledger missed — and its month statement: exactly those differences,
//! each leg's count and sum, unchanged by a second import; explained and fixed differences
//! shown as such, and in invoicing's gauges; the CSV one row per booking; `pdftotext` of the
//! PDF showing every figure.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{EXPORT, claire_october, import, receipts};
use crate::harness::{System, pdf_text};
use crate::invoicing::{client, issued};

/// What billingctl exits with when something is left for a person.
const ATTENTION: i32 = 3;

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// The statement as `report month --format json` prints it, with billingctl's exit status.
async fn statement(system: &System) -> anyhow::Result<(Option<i32>, Value)> {
    let out = system
        .billingctl(&[
            "report", "month", "--tenant", "claire", "--period", "2026-10", "--format", "json",
        ])
        .await?;
    let value = serde_json::from_slice(&out.stdout).map_err(|e| {
        anyhow::anyhow!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out.status.code(), value))
}

/// (subject, kind, status) of every difference.
fn differences(s: &Value) -> BTreeSet<(String, String, String)> {
    s["differences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                text(&d["subject"]).to_string(),
                text(&d["kind"]).to_string(),
                text(&d["status"]).to_string(),
            )
        })
        .collect()
}

/// (count, amount) of the leg `name`.
fn leg(s: &Value, name: &str) -> (u64, String) {
    s["booking_legs"]
        .as_array()
        .into_iter()
        .chain(s["fee_legs"].as_array())
        .flatten()
        .find(|l| l["name"] == name)
        .map(|l| {
            (
                l["count"].as_u64().unwrap_or(u64::MAX),
                text(&l["amount"]).to_string(),
            )
        })
        .unwrap_or_default()
}

/// Claire's statement gauges on invoicing's /metrics: (missing deposits, open differences).
async fn gauges(system: &System) -> anyhow::Result<(Option<f64>, Option<f64>)> {
    let metrics = system.metrics(system.invoicing).await?;
    Ok((
        metrics.value(r#"invoicing_statement_missing_deposits{tenant="claire"}"#),
        metrics.value(r#"invoicing_statement_open_differences{tenant="claire"}"#),
    ))
}

fn expected(status_of: impl Fn(&str) -> &'static str) -> BTreeSet<(String, String, String)> {
    [
        ("9402", "deposit_short"),
        ("9403", "deposit_overpaid"),
        ("9404", "deposit_refund_due"),
        ("9405", "deposit_missing"),
        ("9407", "missing_in_ledger"),
        ("line 8 (2026-10-18, 24.00)", "deposit_unmatched"),
    ]
    .into_iter()
    .map(|(s, k)| (s.to_string(), k.to_string(), status_of(s).to_string()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_month_statement_lists_exactly_the_months_differences() -> anyhow::Result<()> {
    // Alone: it reads Claire's statement gauges on the process's metrics, which another test's
    // monthly close (it composes her statement) would set too.
    let system = System::builder().everything().alone().start().await?;
    let result = month(&system).await;
    system.finish(result).await
}

async fn month(system: &System) -> anyhow::Result<()> {
    claire_october(system).await?;
    let out = system
        .billingctl(&[
            "reconcile",
            "simplybook",
            "--tenant",
            "claire",
            "--period",
            "2026-10",
            "--json",
        ])
        .await?;
    assert_eq!(out.status.code(), Some(ATTENTION), "{out:?}");
    let (code, _) = import(system, "october.csv", EXPORT, &[]).await?;
    assert_eq!(code, Some(ATTENTION));
    // Fees: 20 % of 100.00, 150.00, 100.00 and 120.00 (9404 was cancelled before the close).
    let invoice = issued(&mut client(system).await?, "claire", "2026-10").await?;
    assert_eq!(
        invoice.total.as_ref().map(|m| m.amount.as_str()),
        Some("94.00")
    );

    // The close composes the month's statement by itself (kept up to date).
    let db = system.db("invoicing").await?;
    crate::harness::eventually(std::time::Duration::from_secs(20), || async {
        let open: Option<i32> = sqlx::query_scalar(
            "select open_differences from month_statements
             where tenant_id = 'claire' and period = '2026-10'",
        )
        .fetch_optional(&db)
        .await?;
        Ok(open.filter(|n| *n == 6))
    })
    .await?;

    let (code, s) = statement(system).await?;
    assert_eq!(code, Some(ATTENTION), "{s}");
    assert_eq!(differences(&s), expected(|_| "open"), "{s}");
    assert_eq!(s["open_differences"], 6);
    assert_eq!(gauges(system).await?, (Some(1.0), Some(6.0)));
    assert_eq!(leg(&s, "simplybook"), (6, String::new()));
    assert_eq!(leg(&s, "ledger"), (5, "AUD 520.00".into()));
    assert_eq!(leg(&s, "ledger_confirmed"), (4, "AUD 470.00".into()));
    assert_eq!(leg(&s, "ledger_cancelled"), (1, "AUD 50.00".into()));
    assert_eq!(leg(&s, "invoice_billable"), (4, "AUD 470.00".into()));
    assert_eq!(leg(&s, "deposits_expected"), (4, "AUD 94.00".into()));
    assert_eq!(leg(&s, "deposits_received"), (4, "AUD 85.00".into()));
    assert_eq!(leg(&s, "deposits_unmatched"), (1, "AUD 24.00".into()));
    assert_eq!(leg(&s, "fees_billable"), (4, "AUD 94.00".into()));
    assert_eq!(leg(&s, "invoice_total").1, "AUD 94.00");
    assert_eq!(leg(&s, "payments_received").1, "AUD 0.00");
    let bookings: Vec<(&str, &str, &str)> = s["bookings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            (
                text(&b["booking_ref"]),
                text(&b["simplybook"]),
                text(&b["deposit_outcome"]),
            )
        })
        .collect();
    assert_eq!(
        bookings,
        [
            ("9401", "matched", "received"),
            ("9402", "matched", "short"),
            ("9403", "matched", "overpaid"),
            ("9404", "matched", "refund_due"),
            ("9405", "matched", "missing"),
            ("9407", "missing_in_ledger", ""),
        ]
    );

    // Importing the export again changes nothing: no receipt, no difference.
    let before = receipts(system).await?;
    import(system, "again.csv", EXPORT, &[]).await?;
    assert_eq!(receipts(system).await?, before);
    let (_, again) = statement(system).await?;
    assert_eq!(differences(&again), expected(|_| "open"));
    assert_eq!(again["booking_legs"], s["booking_legs"]);

    // A person explains the refund; the rest of 9402's deposit arrives: explained, fixed.
    let out = system
        .billingctl(&[
            "report",
            "explain",
            "--tenant",
            "claire",
            "--period",
            "2026-10",
            "--subject",
            "9404",
            "--kind",
            "deposit_refund_due",
            "--note",
            "refunded by bank transfer on 3 Nov",
        ])
        .await?;
    assert!(out.status.success(), "{out:?}");
    let rest = "Date,Description,Amount,Reference\n2026-10-06,DEPOSIT ONLINE,15.00,BK 9402\n";
    import(system, "rest.csv", rest, &[]).await?;
    let (code, s) = statement(system).await?;
    assert_eq!(code, Some(ATTENTION));
    let status = |subject: &str| match subject {
        "9404" => "explained",
        "9402" => "fixed",
        _ => "open",
    };
    assert_eq!(differences(&s), expected(status), "{s}");
    assert_eq!(s["open_differences"], 4);
    assert_eq!(gauges(system).await?, (Some(1.0), Some(4.0)));
    // The nightly refresh composes every tenant's month; Claire's is as above.
    let out = system
        .billingctl(&["report", "refresh", "--period", "2026-10", "--json"])
        .await?;
    assert_eq!(out.status.code(), Some(ATTENTION), "{out:?}");
    let rows: Value = serde_json::from_slice(&out.stdout)?;
    let claire = rows
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["tenant"] == "claire")
        .cloned()
        .unwrap_or_default();
    assert_eq!(claire["open_differences"], 4, "{rows}");
    assert_eq!(claire["missing_deposits"], 1, "{rows}");

    // The CSV: one row per booking with every leg's value.
    let out = system
        .billingctl(&[
            "report", "month", "--tenant", "claire", "--period", "2026-10", "--format", "csv",
        ])
        .await?;
    let mut csv = csv::Reader::from_reader(out.stdout.as_slice());
    let rows: Vec<csv::StringRecord> = csv.records().collect::<Result<_, _>>()?;
    assert_eq!(rows.len(), 6);
    let row = |r: &str| {
        rows.iter()
            .find(|row| &row[2] == r)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        row("9402").iter().collect::<Vec<_>>()[4..15],
        [
            "matched",
            "confirmed",
            "150.00",
            "30.00",
            "yes",
            "30.00",
            "30.00",
            "30.00",
            "2026-10-06",
            "received",
            ""
        ]
    );
    assert_eq!(&row("9407")[4], "missing_in_ledger");
    assert_eq!(&row("9407")[5], "");

    // The PDF shows every figure.
    let dir = std::env::temp_dir().join(format!("billing-e2e-statement-{}", system.namespace));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("statement.pdf");
    let out = system
        .billingctl(&[
            "report",
            "month",
            "--tenant",
            "claire",
            "--period",
            "2026-10",
            "--format",
            "pdf",
            "--out",
            &path.display().to_string(),
        ])
        .await?;
    assert_eq!(out.status.code(), Some(ATTENTION), "{out:?}");
    let pdf = pdf_text(&std::fs::read(&path)?)?;
    for figure in [
        "Month statement",
        "Claire Hamilton Therapies",
        "2026-10",
        "520.00",
        "470.00",
        "94.00",
        "24.00",
        "0.00",
        "9401",
        "9402",
        "9403",
        "9404",
        "9405",
        "9407",
        "20.00",
        "30.00",
        "40.00",
        "10.00",
        "missing_in_ledger",
        "deposit_missing",
        "deposit_overpaid",
        "deposit_refund_due",
        "deposit_unmatched",
        "refunded by bank transfer",
        "Page 1 of",
        &invoice.number,
    ] {
        assert!(pdf.contains(figure), "{figure:?} not in:\n{pdf}");
    }
    // Every leg's count and amount, as the JSON has them.
    for l in s["booking_legs"]
        .as_array()
        .into_iter()
        .chain(s["fee_legs"].as_array())
        .flatten()
    {
        let amount = text(&l["amount"]).trim_start_matches("AUD ");
        assert!(pdf.contains(amount), "{l} not in:\n{pdf}");
    }
    Ok(())
}
