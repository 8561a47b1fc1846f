//! Month end for an accountant (issue 21): Claire's October with every kind of deposit a month
//! has (received, short, paid twice, cancelled after its deposit, missing, a mangled reference,
//! an unknown line) and a booking SimplyBook has that the ledger missed; her deposits export
//! imported (`billingctl reconcile deposits`), again (nothing changes), and what the ledger then
//! holds of each booking.

mod deposits;
mod statement;

use std::time::Duration;

use billing_testkit::Details;
use serde_json::{Value, json};

use crate::harness::{CLAIRE_CALLBACK_TOKEN, CLAIRE_COMPANY, System};
use crate::invoicing::ledger_has;

/// Claire's October bookings: (id, SimplyBook's session in her time zone, price). Deposits are
/// 20 %.
pub(crate) const OCTOBER: [(&str, &str, &str); 5] = [
    // Received in full: 20.00.
    ("9401", "2026-10-05 10:00:00", "100.00"),
    // Paid short: 15.00 of 30.00.
    ("9402", "2026-10-08 10:00:00", "150.00"),
    // Paid twice: 2 × 20.00.
    ("9403", "2026-10-12 10:00:00", "100.00"),
    // Its 10.00 came with a mangled reference; then cancelled: a refund due.
    ("9404", "2026-10-15 10:00:00", "50.00"),
    // Nothing received: missing.
    ("9405", "2026-10-20 10:00:00", "120.00"),
];

/// In SimplyBook only: its callback never reached the ledger.
pub(crate) const MISSED: (&str, &str, &str) = ("9407", "2026-10-27 10:00:00", "80.00");

/// Claire's deposits export, as a bank writes it (HNRY's own columns could not be confirmed:
/// docs/operations.md).
pub(crate) const EXPORT: &str = "Date,Description,Amount,Reference\n\
    2026-09-28,DEPOSIT ONLINE,20.00,Booking 9401\n\
    2026-09-30,DEPOSIT ONLINE,15.00,bk-9402\n\
    2026-10-01,DEPOSIT ONLINE,20.00,9403\n\
    2026-10-01,DEPOSIT ONLINE,20.00,9403\n\
    2026-10-02,DEPOSIT SB#94-04,10.00,\n\
    2026-10-03,CARD FEE,-1.50,\n\
    2026-10-18,TRANSFER FROM J BLOGGS,24.00,94051\n";

/// Books Claire's October through SimplyBook's callbacks (the ledger fetches each booking), cancels
/// 9404, and leaves 9407 in SimplyBook alone.
pub(crate) async fn claire_october(system: &System) -> anyhow::Result<()> {
    let sb = &system.simplybook;
    for (id, start, price) in OCTOBER {
        sb.put_booking(
            id,
            &format!("h{id}"),
            Details::booking(start, "confirmed", price),
        );
        callback(system, id, "create").await?;
    }
    ledger_has(system, OCTOBER.len() as i64).await?;
    let (id, start, price) = OCTOBER[3];
    sb.put_booking(
        id,
        &format!("h{id}"),
        Details::booking(start, "canceled", price),
    );
    callback(system, id, "cancel").await?;
    let (id, start, price) = MISSED;
    sb.put_booking(
        id,
        &format!("h{id}"),
        Details::booking(start, "confirmed", price),
    );
    let db = system.db("ledger").await?;
    crate::harness::eventually(Duration::from_secs(30), || async {
        let status: String =
            sqlx::query_scalar("select status from bookings where booking_ref = '9404'")
                .fetch_one(&db)
                .await?;
        Ok((status == "cancelled").then_some(()))
    })
    .await
}

async fn callback(system: &System, id: &str, kind: &str) -> anyhow::Result<()> {
    let body = json!({"booking_id": id, "booking_hash": format!("h{id}"),
        "company": CLAIRE_COMPANY, "notification_type": kind});
    let response = system
        .post_callback("claire", CLAIRE_CALLBACK_TOKEN, &body.to_string())
        .await?;
    anyhow::ensure!(response.status().is_success(), "{id} {kind}: {response:?}");
    Ok(())
}

/// Imports `export` as Claire's deposits: billingctl's exit status and JSON rows.
pub(crate) async fn import(
    system: &System,
    name: &str,
    export: &str,
    options: &[&str],
) -> anyhow::Result<(Option<i32>, Vec<Value>)> {
    let dir = std::env::temp_dir().join(format!("billing-e2e-deposits-{}", system.namespace));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    std::fs::write(&path, export)?;
    let path = path.display().to_string();
    let mut args = vec![
        "reconcile",
        "deposits",
        "--tenant",
        "claire",
        path.as_str(),
        "--json",
    ];
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

/// The stored receipts: (line, amount, booking), in line order.
pub(crate) async fn receipts(
    system: &System,
) -> anyhow::Result<Vec<(i32, String, Option<String>)>> {
    let db = system.db("ledger").await?;
    Ok(sqlx::query_as(
        "select line, amount::text, booking_ref from deposit_receipts order by line, id",
    )
    .fetch_all(&db)
    .await?)
}
