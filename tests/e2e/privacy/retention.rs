//! Raw webhooks are kept only for the replay window, and a dead letter kept past its window
//! loses the client's details while staying readable and replayable.

use billing_proto::ledger::{ListDeadLettersRequest, ReplayDeadLetterRequest};
use billing_runtime::nats::HDR_DLQ_REASON;
use billing_runtime::nats::scrub::{HDR_DLQ_AT, HDR_DLQ_SCRUBBED, scrub_once};

use super::*;
use crate::harness::ADMIN_TOKEN;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn old_dead_letters_lose_personal_data_and_stay_replayable() -> anyhow::Result<()> {
    let system = System::builder().ingest().ledger().start().await?;
    let result = scrub(&system).await;
    system.finish(result).await
}

async fn scrub(system: &System) -> anyhow::Result<()> {
    // Ingest kept its default replay window: 7 days, not the 30 the stream once had.
    let js = system.jetstream().await?;
    let subjects = system.subjects();
    let mut webhooks = js.get_stream(subjects.stream_name("WEBHOOKS")).await?;
    let age = webhooks.info().await?.config.max_age;
    assert_eq!(age, Duration::from_secs(7 * 24 * 3600));

    // A booking whose session time nobody can read: dead-lettered, body and all.
    let mut body: serde_json::Value =
        serde_json::from_str(&booking("7401", "150.00", last_month(2), jo()))?;
    body["datetime"] = serde_json::json!("next Tuesday at ten");
    let response = system
        .post_signed("claire", "msg_scrub_1", &body.to_string(), CLAIRE_SECRET)
        .await?;
    assert_eq!(response.status(), 202);
    let mut admin = ledger_as(system, system.ledger, ADMIN_TOKEN)?;
    let list = || {
        let mut admin = admin.clone();
        async move {
            anyhow::Ok(
                admin
                    .list_dead_letters(ListDeadLettersRequest {
                        tenant_id: "claire".into(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .dead_letters,
            )
        }
    };
    let before = eventually(Duration::from_secs(30), || async {
        let letters = list().await?;
        Ok((!letters.is_empty()).then_some(letters))
    })
    .await?;
    let dlq = js.get_stream(subjects.stream_name("DLQ")).await?;
    let original = dlq.get_raw_message(before[0].sequence).await?;
    assert!(String::from_utf8_lossy(&original.payload).contains(JO_EMAIL));

    let scrub = |after: Duration, from: u64| {
        let (js, subjects) = (js.clone(), subjects.clone());
        async move {
            scrub_once(&js, &subjects, "ledger", after, from)
                .await
                .map_err(anyhow::Error::from_boxed)
        }
    };
    // Younger than the window: kept as it is, and the next round starts at it.
    let window = Duration::from_secs(3600);
    let young = scrub(window, 1).await?;
    assert_eq!((young.scrubbed, young.resume_from), (0, before[0].sequence));
    // Past it (a window of nothing): scrubbed, once; a round from the start skips the copy.
    let old = scrub(Duration::ZERO, young.resume_from).await?;
    assert_eq!(old.scrubbed, 1);
    let again = scrub(Duration::ZERO, 1).await?;
    assert_eq!(again.scrubbed, 0);
    assert!(again.resume_from > before[0].sequence, "{again:?}");

    let after = list().await?;
    assert_eq!(after.len(), 1, "{after:?}");
    let letter = &after[0];
    assert_ne!(letter.sequence, before[0].sequence, "published again");
    assert_eq!(
        (
            letter.reason.as_str(),
            letter.event_id.as_str(),
            letter.original_subject.as_str()
        ),
        (
            before[0].reason.as_str(),
            before[0].event_id.as_str(),
            before[0].original_subject.as_str()
        )
    );
    assert_eq!(
        letter.dead_lettered_at, before[0].dead_lettered_at,
        "first dead-lettered"
    );
    let scrubbed = dlq.get_raw_message(letter.sequence).await?;
    let text = String::from_utf8_lossy(&scrubbed.payload);
    for personal in [JO_EMAIL, JO_NAME, "400 111 222"] {
        assert!(!text.contains(personal), "{text}");
    }
    assert!(
        text.contains("150.00") && text.contains("next Tuesday at ten"),
        "{text}"
    );
    let header = |name: &str| scrubbed.headers.get(name).map(|v| v.as_str().to_string());
    assert_eq!(
        header(HDR_DLQ_SCRUBBED),
        Some(before[0].sequence.to_string())
    );
    assert!(header(HDR_DLQ_AT).is_some());
    assert!(header(HDR_DLQ_REASON).is_some_and(|r| r.contains("invalid_session_time")));
    assert!(
        dlq.get_raw_message(before[0].sequence).await.is_err(),
        "the original is gone"
    );

    // Still replayable: its consumer reads it again (and dead-letters it again, for the same
    // reason, now without anyone's details).
    let replayed = admin
        .replay_dead_letter(ReplayDeadLetterRequest {
            sequence: letter.sequence,
        })
        .await?
        .into_inner();
    assert!(replayed.replayed, "{replayed:?}");
    Ok(())
}
