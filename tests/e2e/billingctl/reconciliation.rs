//! Reconciliation with SimplyBook: what the ledger missed found, the operator alerted, the gaps
//! repaired through ingest, the audit log showing each callback.

use std::time::Duration;

use billing_testkit::Details;
use mail_parser::MessageParser;
use serde_json::json;

use super::support::{json, output_json};
use crate::harness::{CLAIRE_CALLBACK_TOKEN, OPERATOR_EMAIL, System, eventually};
use crate::invoicing::ledger_has;

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
