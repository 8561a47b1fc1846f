//! The go-live check: each call reported, client details masked.

use billing_proto::ledger::CheckSimplyBookRequest;
use billing_testkit::Details;
use chrono::Utc;
use chrono_tz::Australia::Sydney;

use crate::harness::System;

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
