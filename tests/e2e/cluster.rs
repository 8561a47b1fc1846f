//! On a 3-node NATS cluster (`scripts/nats-cluster.sh`), with every stream and consumer kept on
//! three servers (R3): the WEBHOOKS stream's leader is killed (`kill -9`) in the middle of the
//! deliveries, and every webhook ingest answered 202 is recorded exactly once.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use billing_proto::ledger::VerifyIntegrityRequest;

use crate::harness::{CLAIRE_SECRET, System, eventually};

const BOOKINGS: usize = 60;

/// Starts the local cluster (the nodes not running) and returns its client URLs.
fn cluster() -> anyhow::Result<String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/nats-cluster.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg("start")
        .output()
        .context("running scripts/nats-cluster.sh start")?;
    anyhow::ensure!(
        out.status.success(),
        "nats-cluster.sh start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// The pid of the cluster's node named `server` (`billing-n2`), from the script's pid file.
fn pid_of(server: &str) -> anyhow::Result<i32> {
    let dir = std::env::var_os("NATS_CLUSTER_DIR").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/billing-tracker/nats-cluster")
        },
        PathBuf::from,
    );
    let node = server
        .strip_prefix("billing-")
        .context("a node of the local cluster")?;
    Ok(std::fs::read_to_string(dir.join(node).join("pid"))?
        .trim()
        .parse()?)
}

fn booking(id: usize) -> String {
    serde_json::json!({
        "booking_id": format!("c{id}"),
        "price": "100.00",
        "datetime": "2026-10-14 10:00:00",
        "service": {"name": "Massage"},
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_answered_202_survive_the_stream_leader_being_killed() -> anyhow::Result<()> {
    let urls = cluster()?;
    let system = System::builder()
        .ingest()
        .ledger()
        .nats(urls)
        .replicas(3)
        .start()
        .await?;
    let result = leader_killed(&system).await;
    // The killed node back, whatever happened, for the next run.
    let restarted = cluster();
    system.finish(result.and(restarted.map(|_| ()))).await
}

async fn leader_killed(system: &System) -> anyhow::Result<()> {
    let js = system.jetstream().await?;
    let subjects = system.subjects();
    let mut webhooks = js.get_stream(subjects.stream_name("WEBHOOKS")).await?;
    let info = webhooks.info().await?;
    assert_eq!(info.config.num_replicas, 3);
    let cluster = info.cluster.clone().context("a clustered stream")?;
    assert_eq!(cluster.replicas.len(), 2, "{cluster:?}");
    let leader = cluster.leader.context("a leader")?;
    // The ledger's durable consumer is replicated with its stream.
    let consumer_info = webhooks
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("ledger")
        .await
        .map_err(anyhow::Error::from_boxed)?
        .info()
        .await?
        .clone();
    let consumer_cluster = consumer_info.cluster.context("a clustered consumer")?;
    assert_eq!(consumer_cluster.replicas.len(), 2, "{consumer_cluster:?}");

    let (mut accepted, mut retried) = (0usize, 0usize);
    for id in 0..BOOKINGS {
        if id == BOOKINGS / 2 {
            let pid = pid_of(&leader)?;
            let killed = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()?;
            anyhow::ensure!(killed.success(), "kill -9 {pid}");
        }
        // As SimplyBook or a forwarder would: deliver again until answered 2xx.
        let started = Instant::now();
        loop {
            let response = system
                .post_signed(
                    "claire",
                    &format!("cluster-{id}"),
                    &booking(id),
                    CLAIRE_SECRET,
                )
                .await;
            match response {
                Ok(r) if r.status() == 202 => {
                    accepted += 1;
                    break;
                }
                Ok(r) if r.status() == 200 => break,
                Ok(r) => anyhow::ensure!(r.status() == 503, "booking {id}: {}", r.status()),
                Err(err) => anyhow::bail!("booking {id}: {err}"),
            }
            retried += 1;
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "booking {id} not accepted within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    anyhow::ensure!(accepted >= BOOKINGS / 2, "accepted {accepted}");
    let after = webhooks
        .info()
        .await?
        .cluster
        .clone()
        .and_then(|c| c.leader);
    assert_ne!(
        after.as_deref(),
        Some(leader.as_str()),
        "a new leader was elected"
    );

    // Every booking once: the ledger holds each, and the chain of them verifies.
    let db = system.db("ledger").await?;
    eventually(Duration::from_secs(60), || async {
        let n: i64 = sqlx::query_scalar("select count(*) from bookings")
            .fetch_one(&db)
            .await?;
        Ok((n == BOOKINGS as i64).then_some(()))
    })
    .await
    .with_context(|| format!("{accepted} accepted, {retried} retried"))?;
    let stored: i64 = sqlx::query_scalar("select count(*) from audit_log where outcome = 'stored'")
        .fetch_one(&db)
        .await?;
    assert_eq!(stored, BOOKINGS as i64, "each stored once");
    // The LEDGER stream, where chain heads are anchored, may still be electing a leader of its
    // own: the check answers UNAVAILABLE ("retry later") until it has one.
    let ledger = system.ledger_client()?;
    let verified = eventually(Duration::from_secs(30), || {
        let mut ledger = ledger.clone();
        async move {
            match ledger
                .verify_integrity(VerifyIntegrityRequest {
                    tenant_id: "claire".into(),
                })
                .await
            {
                Ok(answer) => Ok(Some(answer.into_inner())),
                Err(status) if status.code() == tonic::Code::Unavailable => Ok(None),
                Err(status) => Err(status.into()),
            }
        }
    })
    .await?;
    assert!(verified.intact, "{verified:?}");
    tracing::info!(accepted, retried, "leader killed mid-delivery");
    Ok(())
}
