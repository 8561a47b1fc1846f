//! Every reason the ledger dead-letters an event, each produced through the path that really
//! leads there: a signed webhook or a SimplyBook callback through ingest where ingest lets it
//! pass, a raw publish on the webhook stream where ingest would refuse it first (these tests run
//! on the shared NATS server without permissions, in their own namespace, so they may publish
//! where only ingest may in production). For each one: the dead letter is listed with its reason
//! by `ListDeadLetters` and by `billingctl dlq list --json`, the audit log says `dead_lettered`
//! with the same reason, `ledger_dead_letters_total` counts it, and the next event on the stream
//! is still processed.
//!
//! Covered elsewhere: `invalid_amount` and `database_refused` (ledger_consumer.rs),
//! `unconfirmed_callback` (fetch_on_notify.rs).

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::HeaderMap;
use billing_proto::ledger::ledger_service_client::LedgerServiceClient;
use billing_proto::ledger::{DeadLetter, ListDeadLettersRequest};
use billing_runtime::Subjects;
use billing_runtime::nats::{
    AUTH_STANDARD_WEBHOOKS, HDR_AUTH, HDR_EVENT_ID, HDR_SENT_AT, HDR_TENANT,
};
use billing_testkit::Details;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::harness::{
    CLAIRE_CALLBACK_TOKEN, CLAIRE_COMPANY, CLAIRE_SECRET, KENJI_SECRET, OPERATOR_EMAIL, System,
    eventually,
};

const WAIT: Duration = Duration::from_secs(30);

/// A signed booking payload as a forwarder sends it.
fn booking(id: &str, price: &str) -> Value {
    json!({"booking_id": id, "price": price, "datetime": "2026-10-14T10:00:00+11:00",
        "service": {"name": "Massage"}})
}

/// Posts a signed payload through ingest; ingest must accept it (the ledger decides).
async fn post_signed(
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
async fn notify(system: &System, id: &str, hash: &str) -> anyhow::Result<()> {
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
async fn publish_raw(
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
async fn audited(db: &sqlx::PgPool, pattern: &str) -> anyhow::Result<(String, String, String)> {
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
async fn dead_letters_counted(ledger: SocketAddr, code: &str) -> anyhow::Result<f64> {
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
async fn expect_dead_letter(
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
async fn next_booking_is_recorded(
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
async fn recorded(db: &sqlx::PgPool, id: &str) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("select count(*) from bookings where booking_ref = $1")
            .bind(id)
            .fetch_one(db)
            .await?,
    )
}

fn same_event(letter: &DeadLetter, event_id: &str) -> bool {
    letter.event_id == event_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_ingest_knows_but_the_ledger_does_not_is_dead_lettered_unknown_tenant()
-> anyhow::Result<()> {
    let system = System::start().await?;
    let result = unknown_tenant(&system).await;
    system.finish(result).await
}

async fn unknown_tenant(system: &System) -> anyhow::Result<()> {
    // ingest is rolled out with a new tenant before the ledger is (its tenants file is reloaded
    // every second; the ledger's is not): ingest accepts the tenant's signed webhooks.
    const NEWCO_SECRET: &str = "whsec_ZmFrZS1uZXdjby10ZXN0LXNlY3JldA==";
    let mut file: Value = serde_json::from_slice(&std::fs::read(&system.tenants_file)?)?;
    let mut newco = file["tenants"][1].clone();
    newco["id"] = json!("newco");
    newco["name"] = json!("New Co");
    newco["webhook_secrets"] = json!([NEWCO_SECRET]);
    if let Some(entry) = newco.as_object_mut() {
        entry.remove("simplybook_company");
        entry.remove("callback_tokens");
    }
    if let Some(tenants) = file["tenants"].as_array_mut() {
        tenants.push(newco);
    }
    std::fs::write(&system.tenants_file, file.to_string())?;
    let body = booking("8101", "100.00").to_string();
    eventually(Duration::from_secs(15), || async {
        let response = system
            .post_signed("newco", "nc-1", &body, NEWCO_SECRET)
            .await?;
        Ok((response.status() == 202).then_some(()))
    })
    .await?;

    let letter = expect_dead_letter(
        system,
        system.ledger,
        "ledger",
        "simplybook:newco:nc-1",
        "unknown_tenant",
        same_event,
    )
    .await?;
    assert_eq!(letter.tenant_id, "newco");
    assert_eq!(
        letter.original_subject,
        system.subjects().simplybook("newco")
    );
    assert!(
        letter.reason.contains("\"newco\" is not configured"),
        "{letter:?}"
    );
    let db = system.db("ledger").await?;
    assert_eq!(recorded(&db, "8101").await?, 0);

    next_booking_is_recorded(system, "nc-next", "8102").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_booking_in_another_currency_than_the_tenant_bills_in_is_dead_lettered()
-> anyhow::Result<()> {
    let system = System::start().await?;
    let result = currency_mismatch(&system).await;
    system.finish(result).await
}

async fn currency_mismatch(system: &System) -> anyhow::Result<()> {
    // Claire bills in AUD; her forwarder sends a booking priced in NZD.
    let mut body = booking("8201", "100.00");
    body["currency"] = json!("NZD");
    post_signed(system, "claire", "cm-1", &body, CLAIRE_SECRET).await?;

    let letter = expect_dead_letter(
        system,
        system.ledger,
        "ledger",
        "simplybook:claire:cm-1",
        "currency_mismatch",
        same_event,
    )
    .await?;
    assert_eq!(letter.tenant_id, "claire");
    assert!(
        letter
            .reason
            .contains("booking in NZD, tenant bills in AUD"),
        "{letter:?}"
    );
    let db = system.db("ledger").await?;
    assert_eq!(recorded(&db, "8201").await?, 0);

    next_booking_is_recorded(system, "cm-next", "8202").await
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_whose_tenant_header_disagrees_with_its_subject_is_dead_lettered()
-> anyhow::Result<()> {
    let system = System::start().await?;
    let result = tenant_mismatch(&system).await;
    system.finish(result).await
}

async fn tenant_mismatch(system: &System) -> anyhow::Result<()> {
    // On Claire's subject, a header naming Kenji: forged (ingest always sets both alike).
    let js = system.jetstream().await?;
    publish_raw(
        &js,
        system.subjects().simplybook("claire"),
        "kenji",
        "simplybook:kenji:tm-1",
        booking("8601", "100.00").to_string().into_bytes(),
    )
    .await?;
    let letter = expect_dead_letter(
        system,
        system.ledger,
        "ledger",
        "simplybook:kenji:tm-1",
        "tenant_mismatch",
        same_event,
    )
    .await?;
    assert_eq!(
        letter.original_subject,
        system.subjects().simplybook("claire")
    );
    assert!(
        letter.reason.contains(&format!(
            "published on {}",
            system.subjects().simplybook("claire")
        )),
        "{letter:?}"
    );
    let db = system.db("ledger").await?;
    assert_eq!(recorded(&db, "8601").await?, 0);

    next_booking_is_recorded(system, "tm-next", "8602").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_callback_whose_price_nobody_knows_is_dead_lettered_and_the_operator_alerted()
-> anyhow::Result<()> {
    let system = System::start().await?;
    let result = price_unknown(&system).await;
    system.finish(result).await
}

async fn price_unknown(system: &System) -> anyhow::Result<()> {
    // No payments feature and a service that is not in the company's list: no value, never 0.
    system.simplybook.put_booking(
        "8701",
        "h8701",
        Details::fixture("confirmed_plain").with("event_id", "99"),
    );
    notify(system, "8701", "h8701").await?;
    let letter = expect_dead_letter(
        system,
        system.ledger,
        "ledger",
        "%:8701:create:h8701",
        "price_unknown",
        same_event,
    )
    .await?;
    assert!(
        letter.reason.contains("its service 99 is not"),
        "{letter:?}"
    );
    let db = system.db("ledger").await?;
    assert_eq!(recorded(&db, "8701").await?, 0);
    let alert = system.mail.wait_for(1, WAIT).await;
    assert!(
        alert
            .iter()
            .any(|m| m.rcpt_to == [OPERATOR_EMAIL.to_string()]),
        "the operator is alerted"
    );

    next_booking_is_recorded(system, "pu-next", "8702").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_for_a_booking_recorded_in_another_currency_is_dead_lettered_currency_change()
-> anyhow::Result<()> {
    let system = System::start().await?;
    let result = currency_change(&system).await;
    system.finish(result).await
}

/// A second ledger on the same database, as after a roll-out that changed Claire's currency to
/// NZD. It consumes its own NATS namespace, so that it alone sees the events published there
/// (two ledgers on one stream would share them at random).
struct RolledOut {
    addr: SocketAddr,
    subjects: Subjects,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ledger::Error>>,
    tenants_file: std::path::PathBuf,
}

impl RolledOut {
    async fn start(system: &System) -> anyhow::Result<Self> {
        let config = system.ledger_config();
        let mut tenants: Value = serde_json::from_slice(&std::fs::read(&config.tenants_file)?)?;
        tenants["tenants"][0]["currency"] = json!("NZD");
        let namespace = billing_testkit::unique_namespace();
        let tenants_file =
            std::env::temp_dir().join(format!("billing-e2e-{namespace}-tenants-nzd.json"));
        std::fs::write(&tenants_file, tenants.to_string())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let config = ledger::Config {
            listen_addr: addr,
            nats_namespace: namespace.clone(),
            tenants_file: tenants_file.clone(),
            ..config
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(ledger::run(config, listener, stop.clone()));
        let ready = format!("http://{addr}/readyz");
        eventually(WAIT, || async {
            anyhow::ensure!(
                !task.is_finished(),
                "the second ledger stopped during start-up"
            );
            Ok(reqwest::get(&ready)
                .await
                .is_ok_and(|r| r.status().is_success())
                .then_some(()))
        })
        .await?;
        Ok(RolledOut {
            addr,
            subjects: Subjects::new(&namespace),
            stop,
            task,
            tenants_file,
        })
    }

    async fn stop(self, system: &System) -> anyhow::Result<()> {
        self.stop.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(15), self.task).await;
        if let Ok(js) = system.jetstream().await {
            self.subjects.delete_streams(&js).await;
        }
        let _ = std::fs::remove_file(&self.tenants_file);
        match stopped {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(err))) => Err(anyhow::anyhow!("the second ledger failed: {err}")),
            Ok(Err(err)) => Err(anyhow::anyhow!("the second ledger panicked: {err}")),
            Err(_) => Err(anyhow::anyhow!(
                "the second ledger did not stop within 15 s"
            )),
        }
    }
}

async fn currency_change(system: &System) -> anyhow::Result<()> {
    // Recorded in AUD by the system's ledger.
    post_signed(
        system,
        "claire",
        "cc-1",
        &booking("8801", "100.00"),
        CLAIRE_SECRET,
    )
    .await?;
    let db = system.db("ledger").await?;
    let (_, outcome, _) = audited(&db, "simplybook:claire:cc-1").await?;
    assert_eq!(outcome, "stored");

    let nzd = RolledOut::start(system).await?;
    let result = rolled_out(system, &nzd).await;
    let stopped = nzd.stop(system).await;
    result?;
    stopped
}

async fn rolled_out(system: &System, nzd: &RolledOut) -> anyhow::Result<()> {
    let db = system.db("ledger").await?;
    let js = system.jetstream().await?;
    // The same booking, now cancelled: the ledger that bills Claire in NZD cannot apply it to
    // a booking recorded in AUD.
    let mut cancelled = booking("8801", "100.00");
    cancelled["status"] = json!("cancelled");
    publish_raw(
        &js,
        nzd.subjects.simplybook("claire"),
        "claire",
        "simplybook:claire:cc-2",
        cancelled.to_string().into_bytes(),
    )
    .await?;
    let letter = expect_dead_letter(
        system,
        nzd.addr,
        "ledger",
        "simplybook:claire:cc-2",
        "currency_change",
        same_event,
    )
    .await?;
    assert!(
        letter
            .reason
            .contains("booking 8801 was recorded in AUD, event says NZD"),
        "{letter:?}"
    );
    // The booking is as it was: confirmed, in AUD, not revised.
    let (status, currency, total, revisions): (String, String, Decimal, i64) = sqlx::query_as(
        "select status, trim(currency), total_amount,
                (select count(*) from booking_revisions r where r.booking_id = b.id)
         from bookings b where booking_ref = '8801'",
    )
    .fetch_one(&db)
    .await?;
    assert_eq!(
        (status.as_str(), currency.as_str(), total, revisions),
        ("confirmed", "AUD", Decimal::new(10000, 2), 0)
    );

    // The next event on that ledger's stream, a new booking, is recorded (in NZD).
    publish_raw(
        &js,
        nzd.subjects.simplybook("claire"),
        "claire",
        "simplybook:claire:cc-3",
        booking("8802", "100.00").to_string().into_bytes(),
    )
    .await?;
    let (_, outcome, reason) = audited(&db, "simplybook:claire:cc-3").await?;
    assert_eq!(outcome, "stored", "{reason}");
    let currency: String =
        sqlx::query_scalar("select trim(currency) from bookings where booking_ref = '8802'")
            .fetch_one(&db)
            .await?;
    assert_eq!(currency, "NZD");
    Ok(())
}
