//! Events nobody can read: a session time, a body that is no booking, a refusal record that
//! cannot be decoded.

use billing_testkit::Details;
use serde_json::json;

use crate::harness::{CLAIRE_SECRET, KENJI_SECRET, System, eventually};

use super::support::{
    WAIT, booking, expect_dead_letter, next_booking_is_recorded, notify, post_signed, publish_raw,
    recorded, same_event,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_time_nobody_can_read_is_dead_lettered_invalid_session_time() -> anyhow::Result<()>
{
    let system = System::start().await?;
    let result = invalid_session_time(&system).await;
    system.finish(result).await
}

async fn invalid_session_time(system: &System) -> anyhow::Result<()> {
    // Well-formed JSON with every required field (so ingest passes it on), but a session time
    // that is neither RFC 3339 nor SimplyBook's `YYYY-MM-DD HH:MM:SS`.
    let mut body = booking("8301", "100.00");
    body["datetime"] = json!("next Tuesday at ten");
    post_signed(system, "claire", "st-1", &body, CLAIRE_SECRET).await?;

    let letter = expect_dead_letter(
        system,
        system.ledger,
        "ledger",
        "simplybook:claire:st-1",
        "invalid_session_time",
        same_event,
    )
    .await?;
    assert!(letter.reason.contains("next Tuesday at ten"), "{letter:?}");
    let db = system.db("ledger").await?;
    assert_eq!(recorded(&db, "8301").await?, 0);

    next_booking_is_recorded(system, "st-next", "8302").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_that_is_no_booking_is_dead_lettered_malformed_payload() -> anyhow::Result<()> {
    let system = System::start().await?;
    let result = malformed_payload(&system).await;
    system.finish(result).await
}

async fn malformed_payload(system: &System) -> anyhow::Result<()> {
    // 1. SimplyBook answers the callback with details the ledger cannot read (through ingest,
    //    which passes every well-formed callback on).
    system.simplybook.put_booking(
        "8401",
        "h8401",
        Details::booking("2026-10-14 10:00:00", "confirmed", "100.00")
            .with("is_confirmed", "maybe"),
    );
    notify(system, "8401", "h8401").await?;
    let from_simplybook = expect_dead_letter(
        system,
        system.ledger,
        "ledger",
        "%:8401:create:h8401",
        "malformed_payload",
        same_event,
    )
    .await?;
    assert!(
        from_simplybook.reason.contains("is_confirmed \"maybe\""),
        "{from_simplybook:?}"
    );

    // 2. A signed payload that is not JSON. ingest answers such a body 400 and never publishes
    //    it, so it is published as a buggy or compromised publisher would.
    let js = system.jetstream().await?;
    publish_raw(
        &js,
        system.subjects().simplybook("claire"),
        "claire",
        "simplybook:claire:mp-2",
        b"{\"booking_id\": \"8402\", \"price\": ".to_vec(),
    )
    .await?;
    let not_json = expect_dead_letter(
        system,
        system.ledger,
        "ledger",
        "simplybook:claire:mp-2",
        "malformed_payload",
        same_event,
    )
    .await?;
    assert!(
        not_json.reason.contains("not a valid booking payload"),
        "{not_json:?}"
    );
    let db = system.db("ledger").await?;
    assert_eq!(
        recorded(&db, "8401").await? + recorded(&db, "8402").await?,
        0
    );

    next_booking_is_recorded(system, "mp-next", "8403").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refusal_record_that_cannot_be_decoded_is_dead_lettered_malformed_record()
-> anyhow::Result<()> {
    let system = System::start().await?;
    let result = malformed_record(&system).await;
    system.finish(result).await
}

async fn malformed_record(system: &System) -> anyhow::Result<()> {
    // ingest publishes refusals as protobuf `WebhookRejectedV1`; anything else on that subject
    // (here bytes that are not protobuf: 'n' is field 13 with wire type 6, which does not exist)
    // is dead-lettered by the ledger's rejections consumer.
    let js = system.jetstream().await?;
    let subject = system.subjects().rejected("simplybook");
    let seq = js
        .publish(subject.clone(), b"not a WebhookRejectedV1".to_vec().into())
        .await?
        .await?
        .sequence;

    // Ingest's records carry no event id: the audit log names the record by its position, the
    // dead letter is this consumer's one from that subject.
    let letter = expect_dead_letter(
        system,
        system.ledger,
        "ledger-rejections",
        &format!("rejections-seq:{seq}"),
        "malformed_record",
        |l, _| l.original_subject == subject,
    )
    .await?;
    assert!(letter.tenant_id.is_empty(), "{letter:?}");

    // The next refusal (a forged signature, through ingest) still reaches the audit log.
    let forged = system
        .post_signed(
            "claire",
            "mr-forged",
            &booking("8501", "1.00").to_string(),
            KENJI_SECRET,
        )
        .await?;
    assert_eq!(forged.status(), 401);
    let db = system.db("ledger").await?;
    let reason: String = eventually(WAIT, || async {
        Ok(sqlx::query_scalar(
            "select reason from audit_log where outcome = 'rejected' and tenant_id = 'claire'",
        )
        .fetch_optional(&db)
        .await?)
    })
    .await?;
    assert_eq!(reason, "bad_signature");
    Ok(())
}
