//! The ledger's own guarantees, with events published straight to JetStream: a redelivered event
//! (past JetStream's dedup window) stores nothing twice, and a poison event goes to the
//! dead-letter stream with its reason while the events behind it are still recorded. And, signed
//! through ingest, a booking at a local time daylight saving skipped or repeated is recorded at
//! the instant the rule gives (forward by the gap; the first occurrence), not dead-lettered.

use std::time::Duration;

use async_nats::HeaderMap;
use billing_proto::ledger::VerifyIntegrityRequest;
use billing_runtime::nats::{HDR_DLQ_REASON, HDR_EVENT_ID, HDR_TENANT};
use futures::StreamExt;
use rust_decimal::Decimal;

use billing_domain::standard_webhooks::SigningKey;

use crate::harness::{CLAIRE_SECRET, System, eventually};

fn body(id: &str, price: &str) -> String {
    serde_json::json!({
        "booking_id": id,
        "price": price,
        "datetime": "2026-10-14T10:00:00+11:00",
        "service": {"name": "Massage"}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redelivered_and_poison_events_neither_double_count_nor_block_the_stream()
-> anyhow::Result<()> {
    let system = System::builder().ledger().start().await?;
    let result = scenario(&system).await;
    system.finish(result).await
}

async fn scenario(system: &System) -> anyhow::Result<()> {
    let js = system.jetstream().await?;
    let subject = system.subjects().simplybook("claire");
    let publish = |event_id: &'static str, msg_id: &'static str, body: String| {
        let js = js.clone();
        let subject = subject.clone();
        async move {
            let mut headers = HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
            headers.insert(HDR_EVENT_ID, event_id);
            headers.insert(HDR_TENANT, "claire");
            js.publish_with_headers(subject, headers, body.into())
                .await?
                .await?;
            anyhow::Ok(())
        }
    };
    // The same event twice under different Nats-Msg-Ids: JetStream keeps both, as it would
    // after its dedup window, so only the ledger's own key can catch the second.
    publish("simplybook:claire:evt-1", "n-1", body("7001", "100.00")).await?;
    publish("simplybook:claire:evt-1", "n-2", body("7001", "100.00")).await?;
    // Poison: a negative price.
    publish("simplybook:claire:evt-2", "n-3", body("7002", "-5.00")).await?;
    // A good event behind the poison one.
    publish("simplybook:claire:evt-3", "n-4", body("7003", "42.50")).await?;

    let db = system.db("ledger").await?;
    let audit: Vec<(String, String, Option<String>)> =
        eventually(Duration::from_secs(20), || async {
            let rows: Vec<(String, String, Option<String>)> =
                // By event, then in the order written (a batch's dead letters are audited
                // before the batch itself commits).
                sqlx::query_as(
                    "select event_id, outcome, reason from audit_log order by event_id, id",
                )
                    .fetch_all(&db)
                    .await?;
            Ok((rows.len() >= 4).then_some(rows))
        })
        .await?;
    let outcomes: Vec<(&str, &str)> = audit
        .iter()
        .map(|(e, o, _)| (e.as_str(), o.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("simplybook:claire:evt-1", "stored"),
            ("simplybook:claire:evt-1", "duplicate"),
            ("simplybook:claire:evt-2", "dead_lettered"),
            ("simplybook:claire:evt-3", "stored"),
        ]
    );
    let reason = audit[2].2.clone().unwrap_or_default();
    assert!(reason.starts_with("invalid_amount"), "{reason}");

    let refs: Vec<String> =
        sqlx::query_scalar("select booking_ref from bookings order by booking_ref")
            .fetch_all(&db)
            .await?;
    assert_eq!(refs, vec!["7001", "7003"]);

    // The poison event waits in the dead-letter stream with its reason and its original body.
    let dlq = js.get_stream(system.subjects().stream_name("DLQ")).await?;
    let consumer = dlq
        .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
        .await?;
    let mut messages = consumer.fetch().max_messages(10).messages().await?;
    let mut dead = Vec::new();
    while let Some(message) = messages.next().await {
        dead.push(message.map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    assert_eq!(dead.len(), 1);
    let headers = dead[0].headers.clone().unwrap_or_default();
    assert_eq!(
        headers.get(HDR_EVENT_ID).map(|v| v.as_str()),
        Some("simplybook:claire:evt-2")
    );
    assert!(
        headers
            .get(HDR_DLQ_REASON)
            .is_some_and(|v| v.as_str().contains("must be greater than zero")),
        "{headers:?}"
    );
    assert_eq!(dead[0].payload.as_ref(), body("7002", "-5.00").as_bytes());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_ledger_replicas_share_the_stream_and_never_double_insert() -> anyhow::Result<()> {
    let system = System::builder().ledger().start().await?;
    let result = replicas(&system).await;
    system.finish(result).await
}

async fn replicas(system: &System) -> anyhow::Result<()> {
    let (_, stop, second) = system.spawn_ledger().await?;
    let js = system.jetstream().await?;
    // 600 bookings for two tenants (yen for Kenji); every other one is published twice under a
    // different Nats-Msg-Id (as after JetStream's dedup window); all in a shuffled order.
    let mut events: Vec<(usize, &str, String)> = (0..600)
        .map(|n| {
            if n % 3 == 0 {
                (n, "kenji", format!("{}", 1000 + n))
            } else {
                (n, "claire", format!("{}.{:02}", 10 + n, n % 100))
            }
        })
        .collect();
    let repeats: Vec<_> = events.iter().step_by(2).cloned().collect();
    events.extend(repeats);
    events.sort_by_key(|(n, tenant, _)| (n * 7919 + tenant.len()) % 1201);
    let mut acks = Vec::new();
    for (i, (n, tenant, price)) in events.iter().enumerate() {
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("r-{i}").as_str(),
        );
        headers.insert(HDR_EVENT_ID, format!("simplybook:{tenant}:e{n}").as_str());
        headers.insert(HDR_TENANT, *tenant);
        let subject = system.subjects().simplybook(tenant);
        acks.push(
            js.publish_with_headers(subject, headers, body(&n.to_string(), price).into())
                .await?,
        );
    }
    for ack in acks {
        ack.await?;
    }

    let db = system.db("ledger").await?;
    let outcomes: Vec<(String, i64)> = eventually(Duration::from_secs(60), || async {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "select outcome, count(*) from audit_log group by outcome order by outcome",
        )
        .fetch_all(&db)
        .await?;
        let total: i64 = rows.iter().map(|r| r.1).sum();
        Ok((total >= 900).then_some(rows))
    })
    .await?;
    assert_eq!(
        outcomes,
        [("duplicate".to_string(), 300), ("stored".to_string(), 600)]
    );
    let per_tenant: Vec<(String, i64, i64)> = sqlx::query_as(
        "select tenant_id, count(*), max(chain_seq) from bookings group by tenant_id order by 1",
    )
    .fetch_all(&db)
    .await?;
    assert_eq!(
        per_tenant,
        [
            ("claire".to_string(), 400, 400),
            ("kenji".to_string(), 200, 200)
        ],
        "one record per booking, chains without gaps"
    );
    // Yen have no minor unit: 1003 → deposit 201 (200.6 rounded half up), cash 802, fee 201.
    let yen: (Decimal, Decimal, Decimal) = sqlx::query_as(
        "select deposit_amount, cash_amount, platform_fee from bookings
         where tenant_id = 'kenji' and booking_ref = '3'",
    )
    .fetch_one(&db)
    .await?;
    assert_eq!(
        yen,
        (Decimal::from(201), Decimal::from(802), Decimal::from(201))
    );
    let mut ledger = system.ledger_client()?;
    for (tenant, records) in [("claire", 400), ("kenji", 200)] {
        let report = ledger
            .verify_integrity(VerifyIntegrityRequest {
                tenant_id: tenant.into(),
            })
            .await?
            .into_inner();
        assert!(report.intact, "{tenant}: {report:?}");
        assert_eq!(report.records_checked, records);
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), second).await???;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_older_event_does_not_undo_a_newer_state() -> anyhow::Result<()> {
    let system = System::builder().ingest().ledger().start().await?;
    let result = late_events(&system).await;
    system.finish(result).await
}

async fn late_events(system: &System) -> anyhow::Result<()> {
    let key = SigningKey::parse(CLAIRE_SECRET)?;
    let now = chrono::Utc::now().timestamp();
    let status_body = |status: &str, price: &str| {
        serde_json::json!({"booking_id": "9001", "status": status, "price": price,
            "datetime": "2026-10-14T10:00:00+11:00", "service": {"name": "Massage"}})
        .to_string()
    };
    // Signed 60 s ago, then 10 s ago; then two that were signed in between arrive late.
    for (id, sent, body) in [
        ("late-1", now - 60, status_body("confirmed", "100.00")),
        ("late-2", now - 10, status_body("cancelled", "100.00")),
        ("late-3", now - 30, status_body("confirmed", "100.00")),
        ("late-4", now - 40, status_body("confirmed", "80.00")),
    ] {
        let headers = vec![
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", sent.to_string()),
            ("webhook-signature", key.sign(id, sent, body.as_bytes())),
        ];
        let response = system
            .post_simplybook_raw("claire", &headers, body.into_bytes())
            .await?;
        anyhow::ensure!(response.status() == 202, "{id}: {}", response.status());
    }
    let db = system.db("ledger").await?;
    let outcomes: Vec<(String, Option<String>)> = eventually(Duration::from_secs(20), || async {
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as("select outcome, reason from audit_log order by event_id")
                .fetch_all(&db)
                .await?;
        Ok((rows.len() == 4).then_some(rows))
    })
    .await?;
    let outcomes: Vec<&str> = outcomes.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(outcomes, ["stored", "status_changed", "stale", "stale"]);
    let (status, total, revisions): (String, Decimal, i64) = sqlx::query_as(
        "select status, total_amount, (select count(*) from booking_revisions)
         from bookings where booking_ref = '9001'",
    )
    .fetch_one(&db)
    .await?;
    assert_eq!(
        (status.as_str(), total, revisions),
        ("cancelled", Decimal::new(10000, 2), 0)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_the_database_refuses_is_dead_lettered_without_holding_up_its_batch()
-> anyhow::Result<()> {
    let system = System::builder().ledger().start().await?;
    let result = database_poison(&system).await;
    system.finish(result).await
}

async fn database_poison(system: &System) -> anyhow::Result<()> {
    let js = system.jetstream().await?;
    let subject = system.subjects().simplybook("claire");
    // PostgreSQL text cannot hold a NUL byte: valid JSON, a valid booking, refused by the
    // database every time. Published together, so they share a batch.
    let mut acks = Vec::new();
    for (n, service) in [(1, "Massage"), (2, "Mass\u{0}age"), (3, "Massage")] {
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("p-{n}").as_str(),
        );
        headers.insert(HDR_EVENT_ID, format!("simplybook:claire:p{n}").as_str());
        headers.insert(HDR_TENANT, "claire");
        let body = serde_json::json!({"booking_id": format!("95{n}"), "price": "50.00",
            "datetime": "2026-10-14T10:00:00+11:00", "service": {"name": service}});
        acks.push(
            js.publish_with_headers(subject.clone(), headers, body.to_string().into())
                .await?,
        );
    }
    for ack in acks {
        ack.await?;
    }
    let db = system.db("ledger").await?;
    let audit: Vec<(String, String, Option<String>)> =
        eventually(Duration::from_secs(20), || async {
            let rows: Vec<(String, String, Option<String>)> =
                sqlx::query_as("select event_id, outcome, reason from audit_log order by event_id")
                    .fetch_all(&db)
                    .await?;
            Ok((rows.len() == 3).then_some(rows))
        })
        .await?;
    assert_eq!(audit[0].1, "stored");
    assert_eq!(audit[1].1, "dead_lettered");
    let reason = audit[1].2.clone().unwrap_or_default();
    assert!(reason.starts_with("database_refused:"), "{reason}");
    assert_eq!(audit[2].1, "stored");
    Ok(())
}

/// A consumer an older release created keeps working, with today's delivery settings: the
/// ledger brings `ack_wait` and friends up to date instead of keeping what it found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_consumer_gets_the_current_delivery_settings() -> anyhow::Result<()> {
    use async_nats::jetstream::consumer::{AckPolicy, pull};

    let js = async_nats::jetstream::new(async_nats::connect(billing_testkit::nats_url()).await?);
    let subjects = billing_runtime::Subjects::new(&billing_testkit::unique_namespace());
    subjects.ensure_streams(&js).await?;
    let result = async {
        let stream = js.get_stream(subjects.stream_name("WEBHOOKS")).await?;
        let config = |ack_wait: u64| pull::Config {
            durable_name: Some("probe".into()),
            filter_subject: subjects.simplybook_all(),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(ack_wait),
            max_deliver: -1,
            max_ack_pending: 1000,
            ..Default::default()
        };
        let _older: async_nats::jetstream::consumer::PullConsumer =
            stream.get_or_create_consumer("probe", config(30)).await?;
        let mut consumer = billing_runtime::nats::durable_consumer(&stream, config(10))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(
            consumer.info().await?.config.ack_wait,
            Duration::from_secs(10)
        );
        // Already current: left as it is.
        let mut again = billing_runtime::nats::durable_consumer(&stream, config(10))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(again.info().await?.config.ack_wait, Duration::from_secs(10));
        anyhow::Ok(())
    }
    .await;
    subjects.delete_streams(&js).await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_booking_at_a_local_time_the_clock_skipped_is_recorded_forward_by_the_gap()
-> anyhow::Result<()> {
    let system = System::builder().ingest().ledger().start().await?;
    let result = daylight_saving(&system).await;
    system.finish(result).await
}

async fn daylight_saving(system: &System) -> anyhow::Result<()> {
    // Claire is in Sydney: on 2026-10-04 the clocks go from 02:00 +10 to 03:00 +11, so 02:30
    // never shows and is read as 02:30 +10 (the clock's 03:30); on 2026-04-05 they go back from
    // 03:00 +11 to 02:00 +10, so 02:30 shows twice and the first, +11, is meant.
    let body = |id: &str, local: &str| {
        serde_json::json!({"booking_id": id, "price": "80.00", "datetime": local,
            "service": {"name": "Massage"}})
        .to_string()
    };
    for (webhook, id, local) in [
        ("dst-gap", "9101", "2026-10-04 02:30:00"),
        ("dst-overlap", "9102", "2026-04-05 02:30:00"),
    ] {
        let response = system
            .post_signed("claire", webhook, &body(id, local), CLAIRE_SECRET)
            .await?;
        anyhow::ensure!(response.status() == 202, "{id}: {}", response.status());
    }
    let db = system.db("ledger").await?;
    let outcomes: Vec<(String, String)> = eventually(Duration::from_secs(20), || async {
        let rows: Vec<(String, String)> =
            sqlx::query_as("select event_id, outcome from audit_log order by event_id")
                .fetch_all(&db)
                .await?;
        Ok((rows.len() == 2).then_some(rows))
    })
    .await?;
    assert!(
        outcomes.iter().all(|(_, outcome)| outcome == "stored"),
        "{outcomes:?}"
    );
    let recorded: Vec<(String, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("select booking_ref, session_at from bookings order by booking_ref")
            .fetch_all(&db)
            .await?;
    let recorded: Vec<(&str, String)> = recorded
        .iter()
        .map(|(id, at)| {
            (
                id.as_str(),
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        [
            ("9101", "2026-10-03T16:30:00Z".to_string()),
            ("9102", "2026-04-04T15:30:00Z".to_string()),
        ]
    );
    Ok(())
}

/// A stream someone else created first with weaker settings (here a work queue, which deletes a
/// message once one consumer acks it, so the ledger and the rejections consumer would starve
/// each other) stops a service at start-up, naming the setting, instead of being used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_precreated_with_weaker_settings_stops_start_up() -> anyhow::Result<()> {
    use async_nats::jetstream::stream;

    let js = async_nats::jetstream::new(async_nats::connect(billing_testkit::nats_url()).await?);
    let subjects = billing_runtime::Subjects::new(&billing_testkit::unique_namespace());
    js.create_stream(stream::Config {
        name: subjects.stream_name("WEBHOOKS"),
        subjects: vec![format!("{}.webhooks.>", subjects.namespace())],
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await?;
    let result = subjects.ensure_streams(&js).await;
    subjects.delete_streams(&js).await;
    let err = result.expect_err("a work-queue WEBHOOKS stream");
    assert!(
        err.to_string().contains("exists with retention WorkQueue"),
        "{err}"
    );
    Ok(())
}
