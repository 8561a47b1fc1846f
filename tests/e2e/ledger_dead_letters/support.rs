//! What the dead-letter tests share: sending an event by each path that leads to a dead letter,
//! and checking that it is listed, audited, counted, and that the next event is still processed.

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::HeaderMap;
use billing_proto::ledger::ledger_service_client::LedgerServiceClient;
use billing_proto::ledger::{DeadLetter, ListDeadLettersRequest};
use billing_runtime::nats::{
    AUTH_STANDARD_WEBHOOKS, HDR_AUTH, HDR_EVENT_ID, HDR_SENT_AT, HDR_TENANT,
};
use serde_json::{Value, json};

use crate::harness::{CLAIRE_CALLBACK_TOKEN, CLAIRE_COMPANY, CLAIRE_SECRET, System, eventually};

pub(super) const WAIT: Duration = Duration::from_secs(30);

/// A signed booking payload as a forwarder sends it.
pub(super) fn booking(id: &str, price: &str) -> Value {
    json!({"booking_id": id, "price": price, "datetime": "2026-10-14T10:00:00+11:00",
        "service": {"name": "Massage"}})
}

/// Posts a signed payload through ingest; ingest must accept it (the ledger decides).
pub(super) async fn post_signed(
    system: &System,
    tenant: &str,
    webhook_id: &str,
    body: &Value,
    secret: &str,
) -> anyhow::Result<()> {
    let response = system
        .post_signed(tenant, webhook_id, &body.to_string(), secret)
        .await?;
    anyhow::ensure!(
        response.status() == 202,
        "{webhook_id}: ingest answered {}",
        response.status()
    );
    Ok(())
}

/// Posts a SimplyBook `create` callback for Claire's booking `id` through ingest.
pub(super) async fn notify(system: &System, id: &str, hash: &str) -> anyhow::Result<()> {
    let body = json!({"booking_id": id, "booking_hash": hash, "company": CLAIRE_COMPANY,
        "notification_type": "create"});
    let response = system
        .post_callback("claire", CLAIRE_CALLBACK_TOKEN, &body.to_string())
        .await?;
    anyhow::ensure!(
        response.status() == 202,
        "callback {id}: {}",
        response.status()
    );
    Ok(())
}

/// Publishes `body` on the webhook subject of `tenant` in `subjects`' namespace, with the headers
/// ingest gives a verified signed payload (`tenant_header` as the tenant it names).
pub(super) async fn publish_raw(
    js: &async_nats::jetstream::Context,
    subject: String,
    tenant_header: &str,
    event_id: &str,
    body: Vec<u8>,
) -> anyhow::Result<u64> {
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, event_id);
    headers.insert(HDR_EVENT_ID, event_id);
    headers.insert(HDR_TENANT, tenant_header);
    headers.insert(HDR_AUTH, AUTH_STANDARD_WEBHOOKS);
    headers.insert(
        HDR_SENT_AT,
        chrono::Utc::now().timestamp().to_string().as_str(),
    );
    let ack = js
        .publish_with_headers(subject, headers, body.into())
        .await?
        .await?;
    Ok(ack.sequence)
}

/// The audit log's last outcome and reason for events whose id is like `pattern`, once there is
/// one (ingest's `rejected` records left out).
pub(super) async fn audited(
    db: &sqlx::PgPool,
    pattern: &str,
) -> anyhow::Result<(String, String, String)> {
    eventually(WAIT, || async {
        let row: Option<(String, String, String)> = sqlx::query_as(
            "select event_id, outcome, coalesce(reason, '') from audit_log
             where event_id like $1 and outcome <> 'rejected' order by id desc limit 1",
        )
        .bind(pattern)
        .fetch_optional(db)
        .await?;
        Ok(row)
    })
    .await
}

/// `ledger_dead_letters_total{reason="<code>"}` on the ledger's /metrics.
pub(super) async fn dead_letters_counted(ledger: SocketAddr, code: &str) -> anyhow::Result<f64> {
    let page = reqwest::get(format!("http://{ledger}/metrics"))
        .await?
        .text()
        .await?;
    let series = format!("ledger_dead_letters_total{{reason=\"{code}\"}} ");
    Ok(page
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0))
}

/// The ledger at `ledger` dead-lettered the event whose id is like `pattern` with reason `code`:
/// audited as `dead_lettered`, listed once by `ListDeadLetters` and by billingctl with the same
/// reason, counted. `letter_of` picks the event's letter from the consumer's list.
pub(super) async fn expect_dead_letter(
    system: &System,
    ledger: SocketAddr,
    consumer: &str,
    pattern: &str,
    code: &str,
    letter_of: impl Fn(&DeadLetter, &str) -> bool,
) -> anyhow::Result<DeadLetter> {
    let db = system.db("ledger").await?;
    let (event_id, outcome, reason) = audited(&db, pattern).await?;
    assert_eq!(outcome, "dead_lettered", "{event_id}: {reason}");
    assert!(
        reason.starts_with(&format!("{code}: ")),
        "{event_id}: {reason}"
    );

    let mut client = LedgerServiceClient::new(system.channel(ledger)?);
    let letters = client
        .list_dead_letters(ListDeadLettersRequest {
            consumer: consumer.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .dead_letters;
    let mine: Vec<&DeadLetter> = letters.iter().filter(|l| letter_of(l, &event_id)).collect();
    assert_eq!(mine.len(), 1, "one dead letter for {event_id}: {letters:?}");
    let letter = mine[0].clone();
    assert_eq!(letter.consumer, consumer);
    assert_eq!(letter.reason, reason, "the audit log and the DLQ agree");

    let out = system
        .billingctl(&[
            "dlq",
            "list",
            "--consumer",
            consumer,
            "--ledger-url",
            &format!("http://{ledger}"),
            "--json",
        ])
        .await?;
    assert!(out.status.success(), "{out:?}");
    let listed: Value = serde_json::from_slice(&out.stdout)?;
    let row = listed
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["sequence"] == json!(letter.sequence))
        .cloned()
        .unwrap_or_default();
    assert_eq!(row["reason"], json!(letter.reason), "{listed}");
    assert_eq!(row["consumer"], json!(consumer), "{listed}");
    assert_eq!(row["event_id"], json!(letter.event_id), "{listed}");

    assert!(
        dead_letters_counted(ledger, code).await? >= 1.0,
        "ledger_dead_letters_total{{reason=\"{code}\"}} counts it"
    );
    Ok(letter)
}

/// A signed booking of Claire's posted after the poison one is recorded: the stream flows on.
pub(super) async fn next_booking_is_recorded(
    system: &System,
    webhook_id: &str,
    id: &str,
) -> anyhow::Result<()> {
    post_signed(
        system,
        "claire",
        webhook_id,
        &booking(id, "90.00"),
        CLAIRE_SECRET,
    )
    .await?;
    let db = system.db("ledger").await?;
    let (_, outcome, reason) = audited(&db, &format!("simplybook:claire:{webhook_id}")).await?;
    assert_eq!(outcome, "stored", "{reason}");
    assert_eq!(recorded(&db, id).await?, 1);
    Ok(())
}

/// How many bookings the ledger holds with SimplyBook id `id`.
pub(super) async fn recorded(db: &sqlx::PgPool, id: &str) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("select count(*) from bookings where booking_ref = $1")
            .bind(id)
            .fetch_one(db)
            .await?,
    )
}

pub(super) fn same_event(letter: &DeadLetter, event_id: &str) -> bool {
    letter.event_id == event_id
}
