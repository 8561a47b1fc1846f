//! What the SimplyBook contract tests share: a callback, the ledger's outcome and booking row,
//! Sydney times and amounts.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Australia::Sydney;
use rust_decimal::Decimal;
use serde_json::json;

use crate::harness::{System, eventually};

/// A booking as the ledger holds it: status, label, session, total, currency.
pub(super) type Row = (String, Option<String>, DateTime<Utc>, Decimal, String);

pub(super) async fn notify(
    system: &System,
    tenant: &str,
    token: &str,
    company: &str,
    id: &str,
    hash: &str,
) -> anyhow::Result<()> {
    let body = json!({"booking_id": id, "booking_hash": hash, "company": company,
        "notification_type": "create"});
    let response = system
        .post_callback(tenant, token, &body.to_string())
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "{id}: {}",
        response.status()
    );
    Ok(())
}

/// The audit outcome and reason of the callback for booking `id`, once there is one.
pub(super) async fn outcome(db: &sqlx::PgPool, id: &str) -> anyhow::Result<(String, String)> {
    let event = format!("simplybook:%:{id}:%");
    eventually(Duration::from_secs(30), || async {
        let row: Option<(String, String)> = sqlx::query_as(
            "select outcome, coalesce(reason, '') from audit_log
             where event_id like $1 and outcome <> 'rejected' order by id desc limit 1",
        )
        .bind(&event)
        .fetch_optional(db)
        .await?;
        Ok(row)
    })
    .await
}

pub(super) async fn booking(db: &sqlx::PgPool, id: &str) -> anyhow::Result<Option<Row>> {
    Ok(sqlx::query_as(
        "select b.status, b.status_label, b.session_at,
                coalesce(r.total_after, b.total_amount), trim(b.currency)
         from bookings b
         left join lateral (select total_after from booking_revisions
                            where booking_id = b.id order by revision_no desc limit 1) r on true
         where b.booking_ref = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?)
}

pub(super) fn sydney(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Sydney
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .expect("an unambiguous Sydney time")
        .with_timezone(&Utc)
}

pub(super) fn aud(s: &str) -> Decimal {
    s.parse().expect("decimal")
}
