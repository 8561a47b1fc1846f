//! billingctl as an operator runs it (a separate process over gRPC): tenants' billing profiles,
//! the month-end close, exports, payments from a bank statement, reconciliation with
//! SimplyBook, an unknown invoice's emails, and a reader that stops reading (`| head`).

use std::process::Stdio;
use std::time::Duration;

use billing_testkit::Details;
use mail_parser::MessageParser;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::harness::{ADMIN_TOKEN, CLAIRE_CALLBACK_TOKEN, OPERATOR_EMAIL, System, eventually};
use crate::invoicing::{Publisher, ledger_has};

fn json(out: &std::process::Output) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(out.status.success(), "billingctl failed: {out:?}");
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_are_listed_shown_created_and_changed_field_by_field() -> anyhow::Result<()> {
    let system = System::builder().invoicing().start().await?;
    let result = tenants(&system).await;
    system.finish(result).await
}

async fn tenants(system: &System) -> anyhow::Result<()> {
    let listed = json(&system.billingctl(&["tenants", "list", "--json"]).await?)?;
    let ids: Vec<&str> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["tenant"].as_str())
        .collect();
    assert_eq!(ids, ["claire", "kenji"]);

    // An unknown tenant is named in the error, with a failing exit status.
    let unknown = system.billingctl(&["tenants", "show", "nobody"]).await?;
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("unknown tenant \"nobody\""), "{stderr}");

    // Changing two fields keeps the others.
    let changed = json(
        &system
            .billingctl(&[
                "tenants",
                "set",
                "claire",
                "--tax-rate",
                "0.10",
                "--address",
                "2 Harbour Road;Manly NSW 2095",
                "--json",
            ])
            .await?,
    )?;
    // One profile is one object, as `invoices show` prints one invoice.
    let claire = &changed;
    assert_eq!(claire["tenant"], "claire");
    assert_eq!(claire["tax_rate"], "0.1");
    assert_eq!(claire["address"], "2 Harbour Road\nManly NSW 2095");
    assert_eq!(claire["legal_name"], "Claire Hamilton Therapies");
    assert_eq!(claire["time_zone"], "Australia/Sydney");
    let shown = json(
        &system
            .billingctl(&["tenants", "show", "claire", "--json"])
            .await?,
    )?;
    assert_eq!(shown["tax_rate"], "0.1");

    // A new tenant, then a bad value refused with the reason.
    let created = json(
        &system
            .billingctl(&[
                "tenants",
                "set",
                "newco",
                "--legal-name",
                "New Co Pty Ltd",
                "--billing-email",
                "accounts@newco.example.test",
                "--currency",
                "AUD",
                "--json",
            ])
            .await?,
    )?;
    assert_eq!(created["tenant"], "newco");
    assert_eq!(created["invoice_prefix"], "NEWCO");
    let bad = system
        .billingctl(&["tenants", "set", "newco", "--tax-rate", "ten percent"])
        .await?;
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("tax_rate"), "{stderr}");
    let table = system.billingctl(&["tenants", "list"]).await?;
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("New Co Pty Ltd"), "{text}");
    Ok(())
}

const FORMULA_SERVICE: &str = "=HYPERLINK(\"https://evil.example/x\",\"Massage\")";

/// The amount of a formatted money value, `AUD 54.02` → 54.02.
fn money(v: &Value) -> anyhow::Result<Decimal> {
    let text = v.as_str().unwrap_or_default();
    let amount = text.rsplit(' ').next().unwrap_or_default();
    Ok(amount.parse()?)
}

/// billingctl's JSON output, whatever its exit status.
fn output_json(out: &std::process::Output) -> anyhow::Result<Value> {
    serde_json::from_slice(&out.stdout).map_err(|e| {
        anyhow::anyhow!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

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

/// Claire's `ledger_reconciliation_missing_bookings` on the ledger's /metrics.
async fn missing_gauge(system: &System) -> anyhow::Result<Option<f64>> {
    Ok(system
        .metrics(system.ledger)
        .await?
        .value(r#"ledger_reconciliation_missing_bookings{tenant="claire"}"#))
}

/// SimplyBook's booking as `getBookingDetails` returns it.
fn details(start: &str, status: &str, price: &str) -> Details {
    // From the contract fixtures (tests/fixtures/simplybook/details/), priced through the
    // payments feature.
    Details::booking(start, status, price)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconciliation_finds_what_the_ledger_missed_and_repairs_it_through_ingest()
-> anyhow::Result<()> {
    // Alone: it reads Claire's gauge on the process's metrics, which another test's
    // reconciliation would set too.
    let system = System::builder().everything().alone().start().await?;
    let result = reconciliation(&system).await;
    system.finish(result).await
}

async fn reconciliation(system: &System) -> anyhow::Result<()> {
    let sb = &system.simplybook;
    // One booking reaches the ledger; SimplyBook later cancels it and that callback is lost.
    // Two more are never called back at all.
    sb.put_booking(
        "4001",
        "h4001",
        details("2026-10-05 10:00:00", "confirmed", "100.00"),
    );
    let body = json!({"booking_id": "4001", "booking_hash": "h4001",
        "company": crate::harness::CLAIRE_COMPANY, "notification_type": "create"});
    let response = system
        .post_callback("claire", CLAIRE_CALLBACK_TOKEN, &body.to_string())
        .await?;
    assert!(response.status().is_success());
    ledger_has(system, 1).await?;
    sb.put_booking(
        "4001",
        "h4001",
        details("2026-10-05 10:00:00", "canceled", "100.00"),
    );
    sb.put_booking(
        "4002",
        "h4002",
        details("2026-10-12 11:00:00", "confirmed", "150.10"),
    );
    sb.put_booking(
        "4003",
        "h4003",
        details("2026-10-31 23:30:00", "confirmed", "10.01"),
    );
    // Another month's booking is not this month's business.
    sb.put_booking(
        "4004",
        "h4004",
        details("2026-11-01 00:30:00", "confirmed", "70.00"),
    );
    // A free consultation: the ledger refuses zero prices by design, so it is no gap.
    sb.put_booking(
        "4005",
        "h4005",
        details("2026-10-20 09:00:00", "confirmed", "0.00"),
    );

    let reconcile = |extra: &'static [&'static str]| {
        let mut args = vec![
            "reconcile",
            "simplybook",
            "--tenant",
            "claire",
            "--period",
            "2026-10",
            "--json",
        ];
        args.extend_from_slice(extra);
        async move { system.billingctl(&args).await }
    };
    let report = reconcile(&["--alert"]).await?;
    assert_eq!(report.status.code(), Some(3), "{report:?}");
    let report = output_json(&report)?;
    let claire = &report[0];
    assert_eq!(claire["simplybook_bookings"], 4, "{claire}");
    assert_eq!(claire["not_billable"], 1);
    assert_eq!(claire["ledger_bookings"], 1);
    assert_eq!(claire["matched"], 0);
    let gaps: Vec<(String, String)> = claire["gaps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            (
                g["booking_ref"].as_str().unwrap_or_default().into(),
                g["kind"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    let expected = [
        ("4001", "status_mismatch"),
        ("4002", "missing_in_ledger"),
        ("4003", "missing_in_ledger"),
    ]
    .map(|(r, k)| (r.to_string(), k.to_string()));
    assert_eq!(gaps, expected);

    // Prometheus sees the gap (BookingsMissingFromLedger), from the recorded run.
    assert_eq!(missing_gauge(system).await?, Some(2.0));

    // The operator hears about the gap.
    let mails = system.mail.wait_for(1, Duration::from_secs(20)).await;
    let alert = mails
        .iter()
        .find(|m| m.rcpt_to == [OPERATOR_EMAIL.to_string()])
        .ok_or_else(|| anyhow::anyhow!("no alert email: {} mails", mails.len()))?;
    let parsed = MessageParser::default()
        .parse(&alert.data)
        .ok_or_else(|| anyhow::anyhow!("unparsable alert"))?;
    let subject = parsed.subject().unwrap_or_default();
    assert!(
        subject.contains("SimplyBook and the ledger differ"),
        "{subject}"
    );

    // Repair sends SimplyBook's callbacks through ingest; the ledger catches up on its own.
    let repaired = output_json(&reconcile(&["--repair"]).await?)?;
    let repairs: Vec<&str> = repaired[0]["gaps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["repair"].as_str())
        .collect();
    assert_eq!(repairs, ["sent", "sent", "sent"]);
    ledger_has(system, 3).await?;
    eventually(Duration::from_secs(30), || async {
        let shown = system
            .billingctl(&["bookings", "show", "4001", "--tenant", "claire", "--json"])
            .await?;
        let shown = output_json(&shown)?;
        Ok((shown["booking"]["status"] == "cancelled").then_some(()))
    })
    .await?;

    let clean = reconcile(&[]).await?;
    assert!(clean.status.success(), "{clean:?}");
    let clean = output_json(&clean)?;
    assert_eq!(clean[0]["matched"], 3);
    assert_eq!(clean[0]["not_billable"], 1);
    assert_eq!(clean[0]["gaps"], json!([]));
    assert_eq!(missing_gauge(system).await?, Some(0.0));

    // The audit log shows each callback and what it did.
    let events = json(
        &system
            .billingctl(&[
                "events",
                "list",
                "--tenant",
                "claire",
                "--source",
                "simplybook",
                "--json",
            ])
            .await?,
    )?;
    let outcomes: Vec<&str> = events
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "stored").count(),
        3,
        "{outcomes:?}"
    );
    assert!(outcomes.contains(&"status_changed"), "{outcomes:?}");
    Ok(())
}

/// An invoice id no service knows.
const UNKNOWN_INVOICE: &str = "0195f000-0000-7000-8000-00000000dead";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_invoice_s_emails_exit_with_the_not_found_status_as_its_show_does()
-> anyhow::Result<()> {
    let system = System::builder().invoicing().notifier().start().await?;
    let result = unknown_invoice(&system).await;
    system.finish(result).await
}

async fn unknown_invoice(system: &System) -> anyhow::Result<()> {
    let shown = system
        .billingctl(&["invoices", "show", UNKNOWN_INVOICE])
        .await?;
    assert_eq!(shown.status.code(), Some(1), "NotFound: {shown:?}");
    for args in [
        &["invoices", "emails", UNKNOWN_INVOICE][..],
        &["invoices", "emails", UNKNOWN_INVOICE, "--json"],
    ] {
        let emails = system.billingctl(args).await?;
        assert_eq!(emails.status.code(), shown.status.code(), "{emails:?}");
        assert!(emails.stdout.is_empty(), "no (empty) list: {emails:?}");
        let stderr = String::from_utf8_lossy(&emails.stderr);
        assert!(
            stderr.contains(UNKNOWN_INVOICE) && stderr.contains("(NotFound)"),
            "{stderr}"
        );
    }
    Ok(())
}

/// billingctl with its stdout a pipe nobody reads any more (`billingctl … | head -1`, the rest
/// of the output), and its stderr captured.
async fn with_stdout_closed(
    system: &System,
    args: &[&str],
) -> anyhow::Result<std::process::Output> {
    let mut child = system
        .billingctl_command(ADMIN_TOKEN, args)?
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // The pipe's only reader closes it before billingctl has written a byte (it calls a service
    // first), so its first write fails with EPIPE, however short the output.
    drop(child.stdout.take());
    Ok(child.wait_with_output().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_that_stops_reading_ends_billingctl_quietly_with_status_0() -> anyhow::Result<()> {
    let system = System::builder().invoicing().start().await?;
    let result = closed_stdout(&system).await;
    system.finish(result).await
}

async fn closed_stdout(system: &System) -> anyhow::Result<()> {
    for args in [
        // Printed line by line: a table, JSON.
        &["tenants", "list"][..],
        &["tenants", "list", "--json"],
        // Streamed through a buffered writer: an export.
        &[
            "export", "invoices", "--tenant", "claire", "--period", "2026-10", "--format", "json",
        ],
    ] {
        let out = with_stdout_closed(system, args).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Not 101 with "failed printing to stdout" (a panic), nor 1 with "Broken pipe".
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}: nothing on stderr");
    }
    Ok(())
}
