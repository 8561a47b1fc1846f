//! `billingctl reconcile deposits`: each line matched by the booking id it names (mangled or
//! not, never a longer id's prefix), the unknown line offered candidates and left unmatched,
//! two identical lines two receipts, a second import changing nothing.

use serde_json::Value;

use super::{EXPORT, claire_october, import, receipts};
use crate::harness::System;

/// What billingctl exits with when something is left for a person.
const ATTENTION: i32 = 3;

fn row(rows: &[Value], line: u64) -> &Value {
    rows.iter()
        .find(|r| r["line"] == line)
        .unwrap_or(&Value::Null)
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deposits_are_matched_by_the_booking_they_name_and_imported_once() -> anyhow::Result<()> {
    let system = System::start().await?;
    let result = deposits(&system).await;
    system.finish(result).await
}

async fn deposits(system: &System) -> anyhow::Result<()> {
    claire_october(system).await?;

    // A dry run stores nothing.
    let (_, rows) = import(system, "dry.csv", EXPORT, &["--dry-run"]).await?;
    assert_eq!(text(&row(&rows, 2)["outcome"]), "would_match", "{rows:?}");
    assert!(receipts(system).await?.is_empty());

    let (code, rows) = import(system, "october.csv", EXPORT, &[]).await?;
    assert_eq!(code, Some(ATTENTION), "{rows:?}");
    assert_eq!(rows.len(), 6, "the debit is skipped: {rows:?}");
    for (line, booking) in [
        (2, "9401"),
        (3, "9402"),
        (4, "9403"),
        (5, "9403"),
        (6, "9404"),
    ] {
        let r = row(&rows, line);
        assert_eq!(text(&r["outcome"]), "matched", "line {line}: {r}");
        assert_eq!(text(&r["booking_ref"]), booking, "line {line}: {r}");
        assert_eq!(text(&r["period"]), "2026-10", "line {line}: {r}");
    }
    // 94051 is not 9405: the line names no booking. 9405's deposit is 24.00 and its session
    // two days later: offered, never applied.
    let unknown = row(&rows, 8);
    assert_eq!(text(&unknown["outcome"]), "unmatched", "{unknown}");
    assert_eq!(text(&unknown["booking_ref"]), "");
    let candidates: Vec<&str> = unknown["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| text(&c["booking_ref"]))
        .collect();
    assert_eq!(candidates, ["9405"], "{unknown}");

    let stored = receipts(system).await?;
    let expected: Vec<(i32, String, Option<String>)> = [
        (2, "20.00", Some("9401")),
        (3, "15.00", Some("9402")),
        (4, "20.00", Some("9403")),
        (5, "20.00", Some("9403")),
        (6, "10.00", Some("9404")),
        (8, "24.00", None),
    ]
    .into_iter()
    .map(|(l, a, b)| (l, a.to_string(), b.map(str::to_string)))
    .collect();
    assert_eq!(stored, expected);

    // The same export again: nothing new.
    let (code, rows) = import(system, "again.csv", EXPORT, &[]).await?;
    assert_eq!(code, Some(ATTENTION), "{rows:?}");
    for line in 2..=6 {
        assert_eq!(
            text(&row(&rows, line)["outcome"]),
            "already_imported",
            "{rows:?}"
        );
    }
    assert_eq!(text(&row(&rows, 8)["outcome"]), "unmatched");
    assert_eq!(receipts(system).await?, expected);
    booking_deposits(system).await
}

/// `bookings show` and `export bookings` carry each booking's deposit as received.
async fn booking_deposits(system: &System) -> anyhow::Result<()> {
    let out = system
        .billingctl(&["bookings", "show", "9402", "--tenant", "claire", "--json"])
        .await?;
    let shown: Value = serde_json::from_slice(&out.stdout)?;
    let deposit = &shown["deposit"];
    assert_eq!(text(&deposit["expected"]), "AUD 30.00", "{shown}");
    assert_eq!(text(&deposit["received"]), "AUD 15.00", "{shown}");
    assert_eq!(text(&deposit["received_on"]), "2026-09-30", "{shown}");
    assert_eq!(text(&deposit["outcome"]), "short", "{shown}");
    let lines = deposit["lines"].as_array().cloned().unwrap_or_default();
    assert_eq!(lines.len(), 1, "{shown}");
    assert!(
        text(&lines[0]).starts_with("line 3 of the import of "),
        "{shown}"
    );

    let out = system
        .billingctl(&[
            "export", "bookings", "--tenant", "claire", "--period", "2026-10",
        ])
        .await?;
    assert!(out.status.success(), "{out:?}");
    let mut csv = csv::Reader::from_reader(out.stdout.as_slice());
    let header: Vec<String> = csv.headers()?.iter().map(str::to_string).collect();
    // The deposit's columns come after every column the export had before.
    assert_eq!(header[15], "record_hash");
    assert_eq!(
        header[16..],
        [
            "deposit_received",
            "deposit_received_on",
            "deposit_outcome",
            "deposit_lines"
        ]
    );
    let mut outcomes = Vec::new();
    for row in csv.records() {
        let row = row?;
        outcomes.push((row[1].to_string(), row[16].to_string(), row[18].to_string()));
    }
    let expected = [
        ("9401", "20.00", "received"),
        ("9402", "15.00", "short"),
        ("9403", "40.00", "overpaid"),
        ("9404", "10.00", "refund_due"),
        ("9405", "0.00", "missing"),
    ]
    .map(|(b, r, o)| (b.to_string(), r.to_string(), o.to_string()));
    assert_eq!(outcomes, expected);
    Ok(())
}

/// A signed booking of Claire's for `client`, as a forwarder sends it.
fn signed_booking(id: &str, at: &str, client: Value) -> String {
    serde_json::json!({
        "booking_id": id, "price": "100.00", "currency": "AUD", "datetime": at,
        "service": {"name": "Remedial massage 60 min"}, "client": client,
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_line_naming_no_booking_offers_the_clients_own_booking_first() -> anyhow::Result<()> {
    let system = System::start().await?;
    let result = same_client(&system).await;
    system.finish(result).await
}

async fn same_client(system: &System) -> anyhow::Result<()> {
    use crate::harness::CLAIRE_SECRET;
    // Two bookings with the same deposit (20.00) a day apart: Jo's and Sam's.
    let jo = serde_json::json!({"name": "Jo Bloggs", "email": "jo.bloggs@example.test"});
    let sam = serde_json::json!({"name": "Sam Citizen", "email": "sam.citizen@example.test"});
    for (id, at, client) in [
        ("9502", "2026-10-10 10:00:00", sam),
        ("9501", "2026-10-11 10:00:00", jo),
    ] {
        let body = signed_booking(id, at, client);
        let response = system
            .post_signed("claire", &format!("msg_deposit_{id}"), &body, CLAIRE_SECRET)
            .await?;
        anyhow::ensure!(response.status() == 202, "{id}: {}", response.status());
    }
    crate::invoicing::ledger_has(system, 2).await?;
    // The payer's email, in another case, and no booking id: Jo's booking first, by her
    // email's keyed digest (nothing is decrypted); Sam's still offered; neither applied.
    let export = "Date,Description,Amount,Reference\n\
                  2026-10-01,PAYMENT FROM Jo.Bloggs@Example.test,20.00,\n";
    let (code, rows) = import(system, "jo.csv", export, &[]).await?;
    assert_eq!(code, Some(ATTENTION), "{rows:?}");
    let line = row(&rows, 2);
    assert_eq!(text(&line["outcome"]), "unmatched", "{line}");
    let candidates: Vec<(&str, bool)> = line["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (text(&c["booking_ref"]), c["same_client"] == true))
        .collect();
    assert_eq!(candidates, [("9501", true), ("9502", false)], "{line}");
    assert_eq!(
        receipts(system).await?,
        [(2, "20.00".to_string(), None)],
        "stored unmatched"
    );
    Ok(())
}
