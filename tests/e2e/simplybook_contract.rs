//! SimplyBook.me's real contract end to end: callbacks through ingest, the ledger confirming
//! each with a fake that answers only in the shapes of `tests/fixtures/simplybook/` (each named
//! after its source), and reconciliation from admin lists that carry no booking hash.

use std::time::Duration;

use billing_proto::ledger::{
    CheckSimplyBookRequest, ReconcileSimplyBookRequest, SummarizePeriodRequest,
    TenantReconciliation,
};
use billing_testkit::{Details, FakeSimplyBook};
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Australia::Sydney;
use rust_decimal::Decimal;
use serde_json::json;

use crate::harness::{
    CLAIRE_CALLBACK_TOKEN, CLAIRE_COMPANY, KENJI_CALLBACK_TOKEN, KENJI_COMPANY, OPERATOR_EMAIL,
    System, eventually,
};

/// A booking as the ledger holds it: status, label, session, total, currency.
type Row = (String, Option<String>, DateTime<Utc>, Decimal, String);

async fn notify(
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
async fn outcome(db: &sqlx::PgPool, id: &str) -> anyhow::Result<(String, String)> {
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

async fn booking(db: &sqlx::PgPool, id: &str) -> anyhow::Result<Option<Row>> {
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

fn sydney(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Sydney
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .expect("an unambiguous Sydney time")
        .with_timezone(&Utc)
}

fn aud(s: &str) -> Decimal {
    s.parse().expect("decimal")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fixture_shape_becomes_the_right_booking_or_the_right_dead_letter()
-> anyhow::Result<()> {
    let system = System::builder()
        .ingest()
        .ledger()
        .notifier()
        .start()
        .await?;
    let result = fixture_shapes(&system).await;
    system.finish(result).await
}

async fn fixture_shapes(system: &System) -> anyhow::Result<()> {
    let sb = &system.simplybook;
    let db = system.db("ledger").await?;
    let at = "2026-10-14 10:00:00";
    let ten_am = sydney(2026, 10, 14, 10, 0);
    // The booking a fixture becomes: its status and label, at 10:00 Sydney, in AUD.
    let booked = |status: &str, label: Option<&str>, total: &str| -> Result<Row, &str> {
        Ok((
            status.into(),
            label.map(str::to_string),
            ten_am,
            aud(total),
            "AUD".into(),
        ))
    };
    // (id, details, expected booking or the dead letter's reason)
    let unknown_label = Details::fixture("status_label_completed").with("status.name", "Arrived");
    let cases: Vec<(&str, Details, Result<Row, &str>)> = vec![
        // No payments feature: the service's price from getEventList ("150.0000").
        (
            "5001",
            Details::fixture("confirmed_plain"),
            booked("confirmed", None, "150.00"),
        ),
        // The payments feature's price object: its amount, whatever the service costs.
        (
            "5002",
            Details::fixture("confirmed_paid_price_object").with("price.amount", "99.5000"),
            booked("confirmed", None, "99.50"),
        ),
        (
            "5003",
            Details::fixture("confirmed_pay_later_price_object"),
            booked("confirmed", None, "150.00"),
        ),
        (
            "5004",
            Details::fixture("confirmed_not_paid_price_object"),
            booked("confirmed", None, "150.00"),
        ),
        // The Status feature: the company's default label needs no mapping; the tenant maps
        // "Completed" and "No show"; an unknown label is kept as text, never guessed.
        (
            "5005",
            Details::fixture("status_default"),
            booked("confirmed", Some("Approved"), "150.00"),
        ),
        (
            "5006",
            Details::fixture("status_label_completed"),
            booked("completed", Some("Completed"), "150.00"),
        ),
        (
            "5007",
            Details::fixture("status_label_no_show"),
            booked("no_show", Some("No show"), "150.00"),
        ),
        (
            "5008",
            unknown_label,
            booked("confirmed", Some("Arrived"), "150.00"),
        ),
        // The Approve-booking feature: awaiting approval is pending (not billed, not
        // cancelled); approved is confirmed; canceled is cancelled.
        (
            "5009",
            Details::fixture("approval_pending"),
            booked("pending", None, "150.00"),
        ),
        (
            "5010",
            Details::fixture("approval_approved"),
            booked("confirmed", None, "150.00"),
        ),
        (
            "5011",
            Details::fixture("approval_canceled"),
            booked("cancelled", None, "150.00"),
        ),
        (
            "5012",
            Details::fixture("cancelled"),
            booked("cancelled", None, "150.00"),
        ),
        // The public API's answer with membership and package keys, for the follow-up
        // service ("80.0000").
        (
            "5013",
            Details::fixture("public_api_with_membership_package_keys").with("event_id", "8"),
            booked("confirmed", None, "80.00"),
        ),
        // Inside Sydney's daylight-saving gap: shifted forward by the gap, not lost.
        (
            "5014",
            Details::fixture("confirmed_plain").with("start_date_time", "2026-10-04 02:30:00"),
            Ok((
                "confirmed".into(),
                None,
                "2026-10-03T16:30:00Z".parse()?,
                aud("150.00"),
                "AUD".into(),
            )),
        ),
        // A promotion without the payments feature: the discounted price is unknown.
        (
            "5015",
            Details::fixture("location_and_promo_objects"),
            Err("price_unknown: booking 5015 uses promotion \"SPRING10\""),
        ),
        // A service that is not (or no longer) in the company's list: unknown, never 0.
        (
            "5016",
            Details::fixture("confirmed_plain").with("event_id", "99"),
            Err("price_unknown: booking 5016 has no price and its service 99 is not"),
        ),
        // Another currency than the tenant bills in.
        (
            "5017",
            Details::fixture("confirmed_paid_price_object").with("price.currency", "NZD"),
            Err("currency_mismatch: booking in NZD"),
        ),
    ];
    for (id, details, _) in &cases {
        let details = match *id {
            "5014" => details.clone(),
            _ => details.clone().with("start_date_time", at),
        };
        sb.put_booking(id, &format!("hash{id}"), details);
        notify(
            system,
            "claire",
            CLAIRE_CALLBACK_TOKEN,
            CLAIRE_COMPANY,
            id,
            &format!("hash{id}"),
        )
        .await?;
    }
    for (id, _, expected) in &cases {
        let (audited, reason) = outcome(&db, id).await?;
        match expected {
            Ok(row) => {
                assert_eq!(audited, "stored", "{id}: {reason}");
                assert_eq!(booking(&db, id).await?.as_ref(), Some(row), "{id}");
            }
            Err(prefix) => {
                assert_eq!(audited, "dead_lettered", "{id}");
                assert!(reason.starts_with(prefix), "{id}: {reason}");
                assert!(
                    booking(&db, id).await?.is_none(),
                    "{id} must not be recorded"
                );
            }
        }
    }
    let (_, reason) = outcome(&db, "5008").await?;
    assert!(
        reason.contains("label \"Arrived\" is not in the tenant's simplybook_status_labels"),
        "{reason}"
    );

    // Pending approval and cancelled are not billed; confirmed and completed are.
    let summary = system
        .ledger_client()?
        .summarize_period(SummarizePeriodRequest {
            tenant_id: "claire".into(),
            start: Some(billing_proto::convert::timestamp(sydney(2026, 10, 1, 0, 0))),
            end: Some(billing_proto::convert::timestamp(sydney(2026, 11, 1, 0, 0))),
        })
        .await?
        .into_inner();
    let mut billed: Vec<String> = summary
        .billable
        .iter()
        .map(|b| b.booking_ref.clone())
        .collect();
    billed.sort();
    assert_eq!(
        billed,
        [
            "5001", "5002", "5003", "5004", "5005", "5006", "5008", "5010", "5013", "5014"
        ]
    );

    // The operator hears about each booking whose value nobody knows, once (waiting a little
    // for a third email that must not come).
    system.mail.wait_for(2, Duration::from_secs(20)).await;
    let mails = system.mail.wait_for(3, Duration::from_secs(3)).await;
    let alerts: Vec<_> = mails
        .iter()
        .filter(|m| m.rcpt_to == [OPERATOR_EMAIL.to_string()])
        .collect();
    assert_eq!(alerts.len(), 2, "one alert per price_unknown dead letter");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_company_on_another_api_domain_is_found_through_get_service_url() -> anyhow::Result<()> {
    let system = System::builder().ingest().ledger().start().await?;
    let result = second_domain(&system).await;
    system.finish(result).await
}

async fn second_domain(system: &System) -> anyhow::Result<()> {
    let db = system.db("ledger").await?;
    let kenji: &FakeSimplyBook = &system.simplybook_kenji;
    kenji.put_booking(
        "7001",
        "hash7001",
        Details::booking("2026-10-14 10:00:00", "confirmed", "8000").with("price.currency", "JPY"),
    );
    notify(
        system,
        "kenji",
        KENJI_CALLBACK_TOKEN,
        KENJI_COMPANY,
        "7001",
        "hash7001",
    )
    .await?;
    let (audited, reason) = outcome(&db, "7001").await?;
    assert_eq!(audited, "stored", "{reason}");
    let row = booking(&db, "7001").await?.expect("recorded");
    assert_eq!(row.3, aud("8000"));
    assert_eq!(row.4, "JPY");
    assert_eq!(
        row.2,
        "2026-10-14T01:00:00Z".parse::<DateTime<Utc>>()?,
        "Tokyo time"
    );
    // The login domain only said where the company is; the company's own domain did the rest.
    assert_eq!(system.simplybook.calls("getServiceUrl"), 1);
    assert_eq!(system.simplybook.calls("getToken"), 0);
    assert_eq!(kenji.calls("getToken"), 1);
    assert_eq!(kenji.calls("getBookingDetails"), 1);
    Ok(())
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_go_live_check_reports_each_call_and_masks_client_details() -> anyhow::Result<()> {
    let system = System::builder().ledger().start().await?;
    let result = go_live(&system).await;
    system.finish(result).await
}

async fn go_live(system: &System) -> anyhow::Result<()> {
    let today = Utc::now()
        .with_timezone(&Sydney)
        .format("%Y-%m-%d 09:00:00")
        .to_string();
    system.simplybook.put_booking(
        "9001",
        "h9001",
        Details::fixture("status_label_completed").with("start_date_time", today.as_str()),
    );
    let checks = system
        .ledger_client()?
        .check_simply_book(CheckSimplyBookRequest {
            tenant_id: "claire".into(),
            raw_answers: true,
        })
        .await?
        .into_inner()
        .checks;
    let results: Vec<(&str, &str)> = checks
        .iter()
        .map(|c| (c.step.as_str(), c.result.as_str()))
        .collect();
    assert_eq!(
        results,
        [
            ("service_url", "ok"),
            ("event_list", "ok"),
            ("bookings_day", "ok"),
            ("booking_details", "ok"),
            ("company_time_zone", "ok"),
        ],
        "{checks:?}"
    );
    let details = &checks[3];
    assert!(
        details.detail.contains("booking 9001: completed 150"),
        "{}",
        details.detail
    );
    assert!(
        details.raw.contains("\"<masked client_name>\""),
        "{}",
        details.raw
    );
    assert!(
        !details.raw.contains("Test Client"),
        "client names are masked"
    );
    assert!(
        !details.raw.contains("test.client@example.test"),
        "emails are masked"
    );

    // The operator's way in: billingctl prints each step and saves the masked answers.
    let dir = std::env::temp_dir().join(format!("golive-{}", system.namespace));
    let dir_arg = dir.to_string_lossy().to_string();
    let out = system
        .billingctl(&[
            "simplybook",
            "check",
            "--tenant",
            "claire",
            "--save-fixtures",
            &dir_arg,
        ])
        .await?;
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("OK       company_time_zone"), "{printed}");
    let saved = std::fs::read_to_string(dir.join("booking_details.json"))?;
    assert!(saved.contains("\"start_date_time\""), "{saved}");
    assert!(!saved.contains("Test Client"));
    for secret in [
        crate::harness::CLAIRE_API_KEY,
        crate::harness::CLAIRE_ADMIN_PASSWORD,
    ] {
        assert!(!printed.contains(secret) && !saved.contains(secret));
    }
    // A company in another zone is a failed check: exit 3, something for a person.
    system.simplybook.set_time_zone("Europe/London");
    let out = system
        .billingctl(&["simplybook", "check", "--tenant", "claire"])
        .await?;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
