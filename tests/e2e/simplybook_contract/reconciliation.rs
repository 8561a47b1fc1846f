//! Reconciliation from admin lists that carry no booking hash: lists compared first, repairs
//! through the stream.

use std::time::Duration;

use billing_proto::ledger::{ReconcileSimplyBookRequest, TenantReconciliation};
use billing_testkit::Details;
use serde_json::json;

use crate::harness::{CLAIRE_CALLBACK_TOKEN, CLAIRE_COMPANY, System, eventually};

use super::support::{aud, booking, notify, sydney};

async fn reconcile(system: &System, repair: bool) -> anyhow::Result<TenantReconciliation> {
    let mut response = system
        .ledger_client()?
        .reconcile_simply_book(ReconcileSimplyBookRequest {
            tenant_id: "claire".into(),
            period: "2026-10".into(),
            repair,
            alert: false,
        })
        .await?
        .into_inner();
    response
        .tenants
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no report"))
}

fn gaps(report: &TenantReconciliation) -> Vec<(String, String)> {
    report
        .gaps
        .iter()
        .map(|g| (g.booking_ref.clone(), g.kind.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconciliation_without_hashes_compares_lists_first_and_repairs_through_the_stream()
-> anyhow::Result<()> {
    let system = System::builder().ingest().ledger().start().await?;
    let result = reconciliation(&system).await;
    system.finish(result).await
}

async fn reconciliation(system: &System) -> anyhow::Result<()> {
    let sb = &system.simplybook;
    let db = system.db("ledger").await?;
    // Thirty bookings at the service's own price reach the ledger by callback.
    for n in 0..30u32 {
        let id = format!("{}", 8100 + n);
        let start = format!("2026-10-{:02} 10:00:00", 1 + n);
        sb.put_booking(
            &id,
            &format!("h{id}"),
            Details::fixture("confirmed_plain").with("start_date_time", start.as_str()),
        );
        notify(
            system,
            "claire",
            CLAIRE_CALLBACK_TOKEN,
            CLAIRE_COMPANY,
            &id,
            &format!("h{id}"),
        )
        .await?;
    }
    // One with a special price through the payments feature.
    sb.put_booking(
        "8200",
        "h8200",
        Details::booking("2026-10-20 12:00:00", "confirmed", "120.00"),
    );
    notify(
        system,
        "claire",
        CLAIRE_CALLBACK_TOKEN,
        CLAIRE_COMPANY,
        "8200",
        "h8200",
    )
    .await?;
    crate::invoicing::ledger_has(system, 31).await?;

    // A clean month: one list, the company's zone and token, no booking fetched one by one.
    let details_before = sb.calls("getBookingDetails");
    let clean = reconcile(system, false).await?;
    assert_eq!(clean.outcome, "clean", "{:?}", clean.gaps);
    assert_eq!((clean.simplybook_bookings, clean.matched), (31, 31));
    assert_eq!(clean.simplybook_time_zone, "Australia/Sydney");
    assert_eq!(
        sb.calls("getBookingDetails") - details_before,
        1,
        "only the specially priced booking is fetched to compare its amount"
    );
    assert!(
        clean.simplybook_calls <= 6,
        "a clean month of 31 bookings cost {} calls",
        clean.simplybook_calls
    );

    // Then callbacks are lost: a cancellation, a price change and two new bookings.
    sb.put_booking(
        "8105",
        "h8105",
        Details::fixture("cancelled").with("start_date_time", "2026-10-06 10:00:00"),
    );
    sb.put_booking(
        "8200",
        "h8200",
        Details::booking("2026-10-20 12:00:00", "confirmed", "150.00"),
    );
    sb.put_booking(
        "8300",
        "h8300",
        Details::fixture("confirmed_plain").with("start_date_time", "2026-10-31 23:30:00"),
    );
    sb.put_booking(
        "8301",
        "h8301",
        Details::fixture("approval_pending").with("start_date_time", "2026-10-02 09:00:00"),
    );
    // And one the ledger has is deleted in SimplyBook.
    sb.remove_booking("8110");

    let found = reconcile(system, false).await?;
    assert_eq!(found.outcome, "gaps");
    assert_eq!(
        gaps(&found),
        [
            ("8105", "status_mismatch"),
            ("8110", "missing_in_simplybook"),
            ("8200", "amount_mismatch"),
            ("8300", "missing_in_ledger"),
            ("8301", "missing_in_ledger"),
        ]
        .map(|(r, k)| (r.to_string(), k.to_string()))
    );

    let repaired = reconcile(system, true).await?;
    let repairs: Vec<(&str, &str)> = repaired
        .gaps
        .iter()
        .map(|g| (g.booking_ref.as_str(), g.repair.as_str()))
        .collect();
    assert_eq!(
        repairs,
        [
            ("8105", "sent"),
            (
                "8110",
                "not repaired: SimplyBook does not have it; check the booking by hand"
            ),
            ("8200", "sent"),
            ("8300", "sent"),
            ("8301", "sent"),
        ]
    );
    // Through the webhook stream, confirmed with the admin API, audited as repairs.
    eventually(Duration::from_secs(30), || async {
        Ok((booking(&db, "8301").await?.map(|r| r.0).as_deref() == Some("pending")).then_some(()))
    })
    .await?;
    eventually(Duration::from_secs(30), || async {
        Ok((booking(&db, "8200").await?.map(|r| r.3) == Some(aud("150.00"))).then_some(()))
    })
    .await?;
    assert_eq!(
        booking(&db, "8105").await?.map(|r| r.0).as_deref(),
        Some("cancelled")
    );
    assert_eq!(
        booking(&db, "8300").await?.map(|r| r.2),
        Some(sydney(2026, 10, 31, 23, 30))
    );
    let repairs: i64 = sqlx::query_scalar(
        "select count(*) from audit_log where event_id like 'repair:claire:%'
         and reason like 'repair:%'",
    )
    .fetch_one(&db)
    .await?;
    assert_eq!(repairs, 4);

    // Afterwards only the booking SimplyBook no longer has remains.
    let after = reconcile(system, false).await?;
    assert_eq!(
        gaps(&after),
        [("8110".to_string(), "missing_in_simplybook".to_string())]
    );

    // What the list alone gives away: a Status label changed (its row names the status by
    // id), and a booking moved to another service that SimplyBook now prices at nothing.
    sb.put_booking(
        "8120",
        "h8120",
        Details::fixture("status_label_no_show").with("start_date_time", "2026-10-21 10:00:00"),
    );
    sb.put_booking(
        "8121",
        "h8121",
        Details::booking("2026-10-22 10:00:00", "confirmed", "0.0000").with("event_id", "8"),
    );
    let listed = reconcile(system, false).await?;
    assert_eq!(
        gaps(&listed),
        [
            ("8110", "missing_in_simplybook"),
            ("8120", "status_mismatch"),
            ("8121", "amount_mismatch"),
        ]
        .map(|(r, k)| (r.to_string(), k.to_string()))
    );
    assert_eq!(
        listed.not_billable, 0,
        "a booking the ledger bills is a gap, not 'not billable'"
    );

    // A service's new list price values new bookings, never recorded ones: a change callback
    // for a booking priced from the list keeps its amount, and reconciliation sees no gap.
    sb.set_event_price("7", "160.0000");
    let change = json!({"booking_id": "8101", "booking_hash": "h8101",
        "company": CLAIRE_COMPANY, "notification_type": "change"});
    let response = system
        .post_callback("claire", CLAIRE_CALLBACK_TOKEN, &change.to_string())
        .await?;
    assert!(response.status().is_success());
    eventually(Duration::from_secs(30), || async {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from audit_log where event_id like 'simplybook:claire:8101:change:%'",
        )
        .fetch_one(&db)
        .await?;
        Ok((n > 0).then_some(()))
    })
    .await?;
    assert_eq!(
        booking(&db, "8101").await?.map(|r| r.3),
        Some(aud("150.00"))
    );
    let repriced = reconcile(system, false).await?;
    assert!(
        !repriced
            .gaps
            .iter()
            .any(|g| g.kind == "amount_mismatch" && g.booking_ref != "8121"),
        "{:?}",
        repriced.gaps
    );

    // A different company zone shifts sessions across month ends: a gap of its own.
    sb.set_time_zone("Australia/Perth");
    let zone = reconcile(system, false).await?;
    assert!(
        zone.gaps.iter().any(|g| g.kind == "time_zone_mismatch"
            && g.simplybook == "Australia/Perth"
            && g.ledger == "Australia/Sydney"),
        "{:?}",
        zone.gaps
    );

    // A company whose admin login SimplyBook refuses (its HIPAA feature): not possible, said so.
    sb.expire_tokens();
    sb.set_hipaa(true);
    let refused = reconcile(system, false).await?;
    assert_eq!(refused.outcome, "not_possible");
    assert!(refused.error.contains("-33005"), "{}", refused.error);
    Ok(())
}
