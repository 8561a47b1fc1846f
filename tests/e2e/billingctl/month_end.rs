//! The month end as an operator runs it: the close, the exports, a bank statement's payments,
//! a payment by hand, a void.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::support::{json, money, output_json};
use crate::harness::System;
use crate::invoicing::{Publisher, ledger_has};

const FORMULA_SERVICE: &str = "=HYPERLINK(\"https://evil.example/x\",\"Massage\")";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn month_end_with_billingctl_close_export_bank_statement_pay_and_void() -> anyhow::Result<()>
{
    let system = System::builder().ledger().invoicing().start().await?;
    let result = month_end(&system).await;
    system.finish(result).await
}

async fn month_end(system: &System) -> anyhow::Result<()> {
    let publisher = Publisher::new(system).await?;
    for (id, price, status, at) in [
        ("5001", "100.00", "confirmed", "2026-10-05T10:00:00+11:00"),
        ("5002", "150.10", "confirmed", "2026-10-14T15:30:00+11:00"),
        ("5004", "10.01", "completed", "2026-10-31T23:30:00+11:00"),
        ("5005", "60.00", "confirmed", "2026-09-20T10:00:00+10:00"),
    ] {
        publisher.book("claire", id, price, status, at).await?;
    }
    // A service named like a spreadsheet formula (SimplyBook takes any name).
    publisher
        .book_service(
            "claire",
            "5003",
            "80.00",
            "cancelled",
            "2026-10-20T09:00:00+11:00",
            FORMULA_SERVICE,
        )
        .await?;
    publisher
        .book(
            "kenji",
            "6001",
            "12000",
            "confirmed",
            "2026-10-10T10:00:00+09:00",
        )
        .await?;
    ledger_has(system, 6).await?;

    // The close, as the CronJob runs it: one outcome a tenant, in an array as every list.
    let generated = json(
        &system
            .billingctl(&["invoices", "generate", "--period", "2026-10", "--json"])
            .await?,
    )?;
    let outcomes = generated.as_array().cloned().unwrap_or_default();
    assert_eq!(outcomes.len(), 2, "{generated}");
    assert!(
        outcomes.iter().all(|o| o["outcome"] == "issued"),
        "{generated}"
    );
    let invoice_of = |tenant: &str| {
        outcomes
            .iter()
            .find(|o| o["tenant"] == tenant)
            .map(|o| o["invoice"].clone())
            .unwrap_or_default()
    };
    let claire = invoice_of("claire");
    let kenji = invoice_of("kenji");
    assert_eq!(claire["booking_count"], 3, "{claire}");
    let claire_number = claire["number"].as_str().unwrap_or_default().to_string();
    let claire_id = claire["id"].as_str().unwrap_or_default().to_string();
    let claire_total = money(&claire["total"])?;
    let kenji_total = money(&kenji["total"])?;
    // 20% of 100.00 + 150.10 + 10.01, before tax.
    assert_eq!(money(&claire["subtotal"])?, Decimal::new(5202, 2));

    let listed = json(
        &system
            .billingctl(&["invoices", "list", "--tenant", "claire", "--json"])
            .await?,
    )?;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["status"], "issued");

    // Exports an accountant imports: bookings as CSV (to a file), invoices as JSON.
    let dir = std::env::temp_dir().join(format!("billingctl-export-{}", system.namespace));
    std::fs::create_dir_all(&dir)?;
    let csv_path = dir.join("claire-2026-10-bookings.csv");
    let csv_arg = csv_path.display().to_string();
    let exported = system
        .billingctl(&[
            "export", "bookings", "--tenant", "claire", "--period", "2026-10", "--out", &csv_arg,
        ])
        .await?;
    assert!(exported.status.success(), "{exported:?}");
    let mut reader = csv::Reader::from_path(&csv_path)?;
    let header: Vec<String> = reader.headers()?.iter().map(str::to_string).collect();
    assert_eq!(
        header[..8],
        [
            "tenant_id",
            "booking_ref",
            "status",
            "session_at_utc",
            "session_at_local",
            "service",
            "currency",
            "total"
        ]
    );
    let column = |name: &str| header.iter().position(|h| h == name).unwrap_or(usize::MAX);
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>()?;
    let refs: Vec<&str> = rows.iter().map(|r| &r[column("booking_ref")]).collect();
    // October in Sydney: not 5005 (September), and 5004 on the 31st at 23:30 local is in.
    assert_eq!(refs, ["5001", "5002", "5003", "5004"]);
    assert_eq!(&rows[3][column("session_at_local")], "2026-10-31 23:30");
    // Opened in a spreadsheet, the formula is text; the amounts are still numbers.
    assert_eq!(&rows[2][column("service")], format!("'{FORMULA_SERVICE}"));
    assert_eq!(&rows[2][column("total")], "80.00");
    assert_eq!(&rows[0][column("service")], "Remedial massage 60 min");
    assert_eq!(&rows[3][column("session_at_utc")], "2026-10-31T12:30:00Z");
    let billable_fees: Decimal = rows
        .iter()
        .filter(|r| &r[column("status")] != "cancelled")
        .map(|r| r[column("platform_fee")].parse::<Decimal>())
        .sum::<Result<Decimal, _>>()?;
    assert_eq!(billable_fees, money(&claire["subtotal"])?);

    let invoices = json(
        &system
            .billingctl(&[
                "export", "invoices", "--tenant", "claire", "--period", "2026-10", "--format",
                "json",
            ])
            .await?,
    )?;
    assert_eq!(invoices.as_array().map(Vec::len), Some(1));
    assert_eq!(invoices[0]["number"], claire_number.as_str());
    assert_eq!(invoices[0]["lines"].as_array().map(Vec::len), Some(3));
    let bad_period = system
        .billingctl(&[
            "export", "invoices", "--tenant", "claire", "--period", "October",
        ])
        .await?;
    assert_eq!(bad_period.status.code(), Some(65), "{bad_period:?}");
    assert!(String::from_utf8_lossy(&bad_period.stderr).contains("YYYY-MM"));

    // The bank statement: part of Claire's invoice (the reference as a bank mangles it),
    // Kenji's in full, a transfer nobody can place, and a debit.
    let partial = (claire_total / Decimal::TWO).round_dp(2);
    let mangled = claire_number.to_lowercase().replace('-', " ");
    let kenji_number = kenji["number"].as_str().unwrap_or_default();
    let statement = dir.join("statement.csv");
    std::fs::write(
        &statement,
        format!(
            "Date,Description,Amount,Reference\n\
             2026-11-03,TRANSFER FROM C HAMILTON,{partial},{mangled}\n\
             2026-11-04,TRANSFER FROM K SATO,\"{kenji_total}\",{kenji_number}\n\
             2026-11-04,TRANSFER FROM A STRANGER,33.33,DONATION\n\
             2026-11-05,ACCOUNT FEE,-2.00,\n"
        ),
    )?;
    let statement_arg = statement.display().to_string();
    let import_args = ["reconcile", "bank", statement_arg.as_str(), "--json"];
    let import = || system.billingctl(&import_args);
    let first = import().await?;
    // Something is left for a person: exit status 3.
    assert_eq!(first.status.code(), Some(3), "{first:?}");
    let matches = output_json(&first)?;
    let outcome = |m: &Value, line: u64| {
        m.as_array()
            .into_iter()
            .flatten()
            .find(|r| r["line"] == line)
            .map(|r| (r["outcome"].clone(), r["detail"].clone()))
            .unwrap_or_default()
    };
    assert_eq!(
        outcome(&matches, 2),
        (json!("recorded"), json!("partially_paid"))
    );
    assert_eq!(outcome(&matches, 3), (json!("recorded"), json!("paid")));
    let (unknown, why) = outcome(&matches, 4);
    assert_eq!(unknown, "unmatched");
    assert!(
        why.as_str()
            .unwrap_or_default()
            .contains("no invoice number"),
        "{why}"
    );
    assert_eq!(
        matches.as_array().map(Vec::len),
        Some(3),
        "the debit is skipped"
    );

    // The same statement again records nothing twice.
    let again = output_json(&import().await?)?;
    assert_eq!(outcome(&again, 2).0, "already_recorded");
    assert_eq!(outcome(&again, 3).0, "already_recorded");
    let shown = json(
        &system
            .billingctl(&["invoices", "show", &claire_id, "--json"])
            .await?,
    )?;
    assert_eq!(shown["status"], "partially_paid");
    assert_eq!(money(&shown["amount_paid"])?, partial);
    assert_eq!(shown["payments"].as_array().map(Vec::len), Some(1));

    // The rest by hand, then the invoice is paid.
    let rest = (claire_total - partial).to_string();
    let paid = json(
        &system
            .billingctl(&[
                "invoices",
                "pay",
                &claire_id,
                "--amount",
                &rest,
                "--date",
                "2026-11-12",
                "--reference",
                &claire_number,
                "--json",
            ])
            .await?,
    )?;
    assert_eq!(paid["invoice"]["status"], "paid");
    assert_eq!(money(&paid["invoice"]["balance"])?, Decimal::ZERO);

    // September's invoice, voided: listed as void, its month open to invoice again.
    let september = json(
        &system
            .billingctl(&[
                "invoices", "generate", "--period", "2026-09", "--tenant", "claire", "--json",
            ])
            .await?,
    )?;
    assert_eq!(september.as_array().map(Vec::len), Some(1), "{september}");
    let september_id = september[0]["invoice"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let voided = system
        .billingctl(&[
            "invoices",
            "void",
            &september_id,
            "--reason",
            "issued by mistake",
        ])
        .await?;
    assert!(voided.status.success(), "{voided:?}");
    let void = json(
        &system
            .billingctl(&[
                "invoices", "list", "--tenant", "claire", "--status", "void", "--json",
            ])
            .await?,
    )?;
    assert_eq!(void.as_array().map(Vec::len), Some(1));
    assert_eq!(void[0]["id"], september_id.as_str());
    Ok(())
}
