//! Callbacks through ingest, each confirmed against a fake answering only in the fixtures'
//! shapes, for a company on either API domain.

use std::time::Duration;

use billing_proto::ledger::SummarizePeriodRequest;
use billing_testkit::{Details, FakeSimplyBook};
use chrono::{DateTime, Utc};

use crate::harness::{
    CLAIRE_CALLBACK_TOKEN, CLAIRE_COMPANY, KENJI_CALLBACK_TOKEN, KENJI_COMPANY, OPERATOR_EMAIL,
    System,
};

use super::support::{Row, aud, booking, notify, outcome, sydney};

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
