//! SimplyBook.me callbacks become bookings only once SimplyBook's API confirms them, and always
//! in the booking's current state: duplicates and out-of-order callbacks converge, forged ones
//! are dead-lettered, an unavailable API delays but loses nothing.

use std::time::Duration;

use billing_testkit::Details;
use chrono::{TimeZone, Utc};
use chrono_tz::Australia::Sydney;
use futures::StreamExt;
use prost::Message as _;
use rust_decimal::Decimal;
use serde_json::json;

use crate::harness::{CLAIRE_CALLBACK_TOKEN, CLAIRE_COMPANY, System, eventually};

fn callback(id: &str, hash: &str, kind: &str) -> String {
    json!({"booking_id": id, "booking_hash": hash, "company": CLAIRE_COMPANY,
        "notification_type": kind})
    .to_string()
}

fn details(start: &str, status: &str, price: &str) -> Details {
    // From the contract fixtures (tests/fixtures/simplybook/details/), priced through the
    // payments feature.
    Details::booking(start, status, price)
}

async fn notify(system: &System, id: &str, hash: &str, kind: &str) -> anyhow::Result<()> {
    let response = system
        .post_callback("claire", CLAIRE_CALLBACK_TOKEN, &callback(id, hash, kind))
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "{kind} {id}: {}",
        response.status()
    );
    Ok(())
}

type Row = (
    String,
    chrono::DateTime<Utc>,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
);

/// Waits until the ledger's audit log holds `n` outcomes for SimplyBook events.
async fn audited(db: &sqlx::PgPool, n: usize) -> anyhow::Result<Vec<(String, String)>> {
    eventually(Duration::from_secs(30), || async {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "select outcome, coalesce(reason, '') from audit_log
             where source = 'simplybook' and outcome <> 'rejected' order by id",
        )
        .fetch_all(db)
        .await?;
        Ok((rows.len() >= n).then_some(rows))
    })
    .await
}

async fn booking(db: &sqlx::PgPool, id: &str) -> anyhow::Result<Option<Row>> {
    Ok(sqlx::query_as(
        "select status, session_at, total_amount, deposit_amount, cash_amount, platform_fee
         from bookings where booking_ref = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callbacks_follow_the_booking_through_its_lifecycle_in_any_order() -> anyhow::Result<()> {
    let system = System::builder().ingest().ledger().start().await?;
    let result = lifecycle(&system).await;
    system.finish(result).await
}

async fn lifecycle(system: &System) -> anyhow::Result<()> {
    let sb = &system.simplybook;
    let db = system.db("ledger").await?;
    let at = |h| {
        Sydney
            .with_ymd_and_hms(2026, 10, 14, h, 0, 0)
            .single()
            .map(|t| t.with_timezone(&Utc))
    };

    // Create: the details, not the callback, are recorded — with the exact split.
    sb.put_booking(
        "3001",
        "h3001",
        details("2026-10-14 10:00:00", "confirmed", "10.01"),
    );
    notify(system, "3001", "h3001", "create").await?;
    audited(&db, 1).await?;
    let row = booking(&db, "3001").await?.expect("stored");
    assert_eq!(row.0, "confirmed");
    assert_eq!(Some(row.1), at(10));
    assert_eq!(
        (row.2, row.3, row.4, row.5),
        (
            Decimal::new(1001, 2),
            Decimal::new(200, 2),
            Decimal::new(801, 2),
            Decimal::new(200, 2)
        )
    );

    // Change (moved an hour) then cancel: each callback fetches the current state.
    sb.put_booking(
        "3001",
        "h3001",
        details("2026-10-14 11:00:00", "confirmed", "10.01"),
    );
    notify(system, "3001", "h3001", "change").await?;
    audited(&db, 2).await?;
    assert_eq!(booking(&db, "3001").await?.map(|r| r.1), at(11));
    sb.put_booking(
        "3001",
        "h3001",
        details("2026-10-14 11:00:00", "canceled", "10.01"),
    );
    notify(system, "3001", "h3001", "cancel").await?;
    audited(&db, 3).await?;
    assert_eq!(
        booking(&db, "3001").await?.map(|r| r.0).as_deref(),
        Some("cancelled")
    );
    let history: Vec<String> = sqlx::query_scalar(
        "select h.status from booking_status_history h join bookings b on b.id = h.booking_id
         where b.booking_ref = '3001' order by h.id",
    )
    .fetch_all(&db)
    .await?;
    assert_eq!(history, ["confirmed", "confirmed", "cancelled"]);

    // Out of order: the cancel arrives before the create. Both fetch the current (cancelled)
    // state; the booking is recorded once, cancelled, and the late create changes nothing.
    sb.put_booking(
        "3002",
        "h3002",
        details("2026-10-15 09:00:00", "canceled", "80.00"),
    );
    notify(system, "3002", "h3002", "cancel").await?;
    notify(system, "3002", "h3002", "create").await?;
    // A reminder and a repeated create: fetched again, nothing changes.
    notify(system, "3002", "h3002", "notify").await?;
    notify(system, "3002", "h3002", "create").await?;
    let outcomes = audited(&db, 6).await?;
    let outcomes: Vec<&str> = outcomes.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(
        outcomes,
        [
            "stored",
            "status_changed",
            "status_changed",
            "stored",
            "duplicate",
            "duplicate"
        ],
        "the repeated create is a JetStream duplicate and never reaches the ledger"
    );
    assert_eq!(
        booking(&db, "3002").await?.map(|r| r.0).as_deref(),
        Some("cancelled")
    );

    // Another service, then the session happens; a third booking is a no-show. (Each step
    // waits for the previous outcome: callbacks that arrive together are all answered with the
    // state SimplyBook holds when they are fetched, which is the point of fetching.)
    let mut seen = 6;
    let mut step = |id: &'static str, details: Details, kind: &'static str| {
        seen += 1;
        let n = seen;
        let hash = format!("h{id}");
        let db = &db;
        async move {
            sb.put_booking(id, &hash, details);
            notify(system, id, &hash, kind).await?;
            audited(db, n).await?;
            anyhow::Ok(())
        }
    };
    let moved = details("2026-10-16 09:00:00", "confirmed", "90.00");
    step("3003", moved.clone(), "create").await?;
    let service = |d: Details| {
        d.with("event_id", "8")
            .with("event_name", "Hot stone massage")
    };
    step("3003", service(moved), "change").await?;
    // The Status feature's "Completed" label, mapped by the tenant to completed.
    let completed = details("2026-10-16 09:00:00", "completed", "90.00");
    step("3003", service(completed), "change").await?;
    step(
        "3004",
        details("2026-10-17 09:00:00", "confirmed", "90.00"),
        "create",
    )
    .await?;
    step(
        "3004",
        details("2026-10-17 09:00:00", "no_show", "90.00"),
        "change",
    )
    .await?;
    let states: Vec<(String, String, String)> = sqlx::query_as(
        "select booking_ref, status, service_name from bookings
         where booking_ref in ('3003', '3004') order by booking_ref",
    )
    .fetch_all(&db)
    .await?;
    assert_eq!(
        states,
        [
            (
                "3003".into(),
                "completed".into(),
                "Hot stone massage".into()
            ),
            (
                "3004".into(),
                "no_show".into(),
                "Initial Consultation".into()
            ),
        ]
    );
    let services: Vec<String> = sqlx::query_scalar(
        "select h.service_name from booking_status_history h
         join bookings b on b.id = h.booking_id where b.booking_ref = '3003' order by h.id",
    )
    .fetch_all(&db)
    .await?;
    assert_eq!(
        services,
        [
            "Initial Consultation",
            "Hot stone massage",
            "Hot stone massage"
        ]
    );
    let count: i64 = sqlx::query_scalar("select count(*) from bookings")
        .fetch_one(&db)
        .await?;
    assert_eq!(count, 4);

    // Each change was announced once on `ledger.booking.<kind>` through the outbox.
    let js = system.jetstream().await?;
    let subjects = system.subjects();
    let stream = js.get_stream(subjects.stream_name("LEDGER")).await?;
    let counts = eventually(Duration::from_secs(20), || async {
        let mut counts = std::collections::BTreeMap::new();
        let stream = js.get_stream(subjects.stream_name("LEDGER")).await?;
        let mut info = stream
            .info_with_subjects(subjects.booking_event("*"))
            .await?;
        while let Some(entry) = info.next().await {
            let (subject, n) = entry?;
            let kind = subject.rsplit('.').next().unwrap_or_default().to_string();
            counts.insert(kind, n);
        }
        Ok((counts.values().sum::<usize>() == 9).then_some(counts))
    })
    .await?;
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        [("changed".to_string(), 5), ("recorded".to_string(), 4)]
    );
    let last = stream
        .get_last_raw_message_by_subject(&subjects.booking_event("changed"))
        .await?;
    let event = billing_proto::events::BookingEventV1::decode(last.payload.as_ref())?;
    assert_eq!(
        (
            event.booking_ref.as_str(),
            event.status.as_str(),
            event.kind.as_str()
        ),
        ("3004", "no_show", "changed")
    );
    assert_eq!(event.total.map(|m| m.amount), Some("90.00".to_string()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_callbacks_are_dead_lettered_and_an_unavailable_api_delays_without_loss()
-> anyhow::Result<()> {
    let system = System::builder().ingest().ledger().start().await?;
    let result = forged_and_unavailable(&system).await;
    system.finish(result).await
}

async fn forged_and_unavailable(system: &System) -> anyhow::Result<()> {
    let sb = &system.simplybook;
    let db = system.db("ledger").await?;
    sb.put_booking(
        "4001",
        "realhash",
        details("2026-10-14 10:00:00", "confirmed", "120.00"),
    );

    // Someone who learned the callback URL but not the booking hash, or invents a booking.
    notify(system, "4001", "guessedhash", "create").await?;
    notify(system, "9999", "whatever", "create").await?;
    let rows = audited(&db, 2).await?;
    for (outcome, reason) in &rows {
        assert_eq!(outcome, "dead_lettered");
        assert!(reason.starts_with("unconfirmed_callback:"), "{reason}");
    }
    // SimplyBook's own code and message (its codes arrive as strings or numbers).
    assert!(
        rows[0].1.contains("error -32085: Signature error"),
        "{:?}",
        rows[0]
    );
    assert!(
        rows[1]
            .1
            .contains("error -32080: Appointemnt couldn't be found"),
        "{:?}",
        rows[1]
    );
    let js = system.jetstream().await?;
    let dlq = js.get_stream(system.subjects().stream_name("DLQ")).await?;
    let mut dlq = dlq;
    assert_eq!(dlq.info().await?.state.messages, 2);

    // SimplyBook down: the callback waits (redelivered with backoff), then is recorded once.
    sb.set_unavailable(true);
    notify(system, "4001", "realhash", "create").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(booking(&db, "4001").await?.is_none());
    assert!(
        sb.calls("getBookingDetails") + sb.calls("getToken") > 3,
        "retried"
    );
    sb.set_unavailable(false);
    // An expired token is renewed without failing the event.
    sb.expire_tokens();
    let stored = audited(&db, 3).await?;
    assert_eq!(stored[2].0, "stored");
    assert_eq!(
        booking(&db, "4001").await?.map(|r| r.2),
        Some(Decimal::new(12000, 2))
    );
    assert!(sb.calls("getToken") >= 2, "a new token after expiry");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_can_be_listed_and_replayed_once_its_cause_is_fixed() -> anyhow::Result<()> {
    let system = System::builder().ingest().ledger().start().await?;
    let result = replay(&system).await;
    system.finish(result).await
}

async fn replay(system: &System) -> anyhow::Result<()> {
    use billing_proto::ledger::{ListDeadLettersRequest, ReplayDeadLetterRequest};

    let db = system.db("ledger").await?;
    // SimplyBook's API does not know the booking yet (say, a misconfigured secret key):
    // the callback cannot be confirmed and is dead-lettered.
    notify(system, "6001", "h6001", "create").await?;
    let rows = audited(&db, 1).await?;
    assert_eq!(rows[0].0, "dead_lettered");

    let mut ledger = system.ledger_client()?;
    let letters = ledger
        .list_dead_letters(ListDeadLettersRequest {
            tenant_id: "claire".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .dead_letters;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.consumer, "ledger");
    assert_eq!(
        letter.original_subject,
        system.subjects().simplybook("claire")
    );
    assert!(letter.event_id.contains(":6001:create:h6001"), "{letter:?}");
    assert!(
        letter.reason.starts_with("unconfirmed_callback:"),
        "{letter:?}"
    );
    // The operator's view of the same, from billingctl.
    let out = system
        .billingctl(&["dlq", "list", "--tenant", "claire", "--json"])
        .await?;
    assert!(out.status.success(), "{out:?}");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(listed[0]["sequence"], json!(letter.sequence));
    assert_eq!(listed[0]["event_id"], json!(letter.event_id));

    // Fixed at the source; the operator replays it: recorded once, the dead letter kept.
    system.simplybook.put_booking(
        "6001",
        "h6001",
        details("2026-10-20 10:00:00", "confirmed", "64.00"),
    );
    let first = ledger
        .replay_dead_letter(ReplayDeadLetterRequest {
            sequence: letter.sequence,
        })
        .await?
        .into_inner();
    assert!(first.replayed);
    let again = ledger
        .replay_dead_letter(ReplayDeadLetterRequest {
            sequence: letter.sequence,
        })
        .await?
        .into_inner();
    assert!(!again.replayed, "a second click is deduplicated");
    let rows = audited(&db, 2).await?;
    let outcomes: Vec<&str> = rows.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(outcomes, ["dead_lettered", "stored"]);
    let replayed: i64 =
        sqlx::query_scalar("select count(*) from audit_log where outcome = 'replayed'")
            .fetch_one(&db)
            .await?;
    assert_eq!(replayed, 1);
    // Who replayed it: the admin token, naming no one (billing_runtime::operator).
    let by: (Option<String>, Option<String>) =
        sqlx::query_as("select operator, caller_role from audit_log where outcome = 'replayed'")
            .fetch_one(&db)
            .await?;
    assert_eq!(by, (None, Some("admin".to_string())));
    assert_eq!(
        booking(&db, "6001").await?.map(|r| r.2),
        Some(Decimal::new(6400, 2))
    );
    let missing = ledger
        .replay_dead_letter(ReplayDeadLetterRequest { sequence: 999_999 })
        .await
        .expect_err("no such dead letter");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    Ok(())
}
