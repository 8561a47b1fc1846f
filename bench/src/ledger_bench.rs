//! ledger-bench: how fast the ledger turns published booking events into committed, chained
//! rows, and how long one event waits at a steady 1,000 per second.
//!
//! Creates a database of its own and a NATS namespace, then
//! 1. publishes a backlog of signed-payload booking events for 20 tenants and starts a release
//!    `ledger` on it: the drain rate is the sustained throughput;
//! 2. publishes at a fixed rate and measures, per event, publish → outcome written (the audit
//!    row's `clock_timestamp()`, just before the commit).
//!
//! Run it with `bench/run.sh ledger`.

mod common;
mod summary;

use std::collections::HashMap;
use std::future::IntoFuture;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use async_nats::HeaderMap;
use billing_runtime::Subjects;
use billing_runtime::nats::{
    AUTH_STANDARD_WEBHOOKS, HDR_AUTH, HDR_EVENT_ID, HDR_RECEIVED_AT, HDR_SOURCE, HDR_TENANT,
};
use chrono::{DateTime, Utc};
use clap::Parser;
use tokio::process::Child;

const TENANTS: usize = 20;

#[derive(Parser)]
#[command(name = "ledger-bench", about = "ledger throughput and latency")]
struct Args {
    /// Events in the backlog the ledger drains.
    #[arg(long, default_value_t = 100_000)]
    backlog: usize,
    /// Events per second in the latency run.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of the latency run.
    #[arg(long, default_value_t = 15)]
    duration_secs: u64,
    /// Ledger batch size (LEDGER_BATCH_SIZE).
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
    #[command(flatten)]
    backends: common::Backends,
}

fn body(n: usize) -> String {
    format!(
        r#"{{"booking_id":"{n}","booking_hash":"{n:032x}","price":"{}.{:02}","datetime":"2026-10-14 10:00:00","status":"confirmed","service":{{"id":"7","name":"Remedial massage"}},"client":{{"name":"Bench Client","email":"bench@example.test"}}}}"#,
        50 + n % 200,
        n % 100
    )
}

struct Bench {
    js: async_nats::jetstream::Context,
    subjects: Subjects,
}

impl Bench {
    /// Publishes event `n`; the ack future is returned so many can be in flight.
    async fn publish(
        &self,
        n: usize,
    ) -> anyhow::Result<async_nats::jetstream::context::PublishAckFuture> {
        let tenant = format!("t{:02}", n % TENANTS);
        let event_id = format!("simplybook:{tenant}:bench-{n}");
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, event_id.as_str());
        headers.insert(HDR_EVENT_ID, event_id.as_str());
        headers.insert(HDR_TENANT, tenant.as_str());
        headers.insert(HDR_SOURCE, "simplybook");
        headers.insert(HDR_AUTH, AUTH_STANDARD_WEBHOOKS);
        let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        headers.insert(HDR_RECEIVED_AT, now.as_str());
        Ok(self
            .js
            .publish_with_headers(self.subjects.simplybook(&tenant), headers, body(n).into())
            .await?)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Utc::now();
    let namespace = format!("lbench{}", started.timestamp());
    let dir = std::env::temp_dir().join(format!("ledger-bench-{namespace}"));
    std::fs::create_dir_all(&dir)?;
    let tenants: Vec<serde_json::Value> = (0..TENANTS)
        .map(|t| {
            serde_json::json!({"id": format!("t{t:02}"), "name": format!("Tenant {t}"),
                "billing_email": format!("t{t}@example.test"), "currency": "AUD"})
        })
        .collect();
    let tenants_file = dir.join("tenants.json");
    std::fs::write(
        &tenants_file,
        serde_json::json!({ "tenants": tenants }).to_string(),
    )?;

    let database = common::BenchDatabase::create(
        &args.backends.database_url,
        &format!("ledger_bench_{}", started.timestamp()),
    )
    .await?;

    let client = async_nats::connect(&args.backends.nats_url).await?;
    let bench = Bench {
        js: async_nats::jetstream::new(client),
        subjects: Subjects::new(&namespace),
    };
    bench.subjects.ensure_streams(&bench.js).await?;

    let result = run(&args, &bench, &database.url, &tenants_file, &dir, started).await;

    bench.subjects.delete_streams(&bench.js).await;
    database.drop_database().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(
    args: &Args,
    bench: &Bench,
    db_url: &str,
    tenants_file: &Path,
    dir: &std::path::Path,
    started: DateTime<Utc>,
) -> anyhow::Result<()> {
    // 1. The backlog, published before the ledger starts.
    let mut acks = Vec::with_capacity(args.backlog);
    for n in 0..args.backlog {
        acks.push(bench.publish(n).await?);
        if acks.len() >= 256 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    let _ledger = start_ledger(args, db_url, &bench.subjects, tenants_file, dir)?;
    let db = billing_runtime::db::connect(db_url, "ledger", 2).await?;
    wait_for_outcomes(&db, args.backlog, Duration::from_secs(600)).await?;
    let (first, last): (DateTime<Utc>, DateTime<Utc>) =
        sqlx::query_as("select min(occurred_at), max(occurred_at) from audit_log")
            .fetch_one(&db)
            .await?;
    let drain = (last - first).to_std().unwrap_or_default();
    let drained_per_sec = args.backlog as f64 / drain.as_secs_f64().max(f64::EPSILON);

    // 2. A steady rate, each event's publish time remembered.
    let total = usize::try_from(args.rate * args.duration_secs)?;
    let mut published: HashMap<String, DateTime<Utc>> = HashMap::with_capacity(total);
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / args.rate.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    // Each ack is awaited by its own task: holding thousands of unawaited acks makes the client
    // wait for in-flight permits and would stall the publisher, not the ledger.
    let mut acks = Vec::with_capacity(total);
    for i in 0..total {
        ticker.tick().await;
        let n = args.backlog + i;
        let tenant = format!("t{:02}", n % TENANTS);
        published.insert(format!("simplybook:{tenant}:bench-{n}"), Utc::now());
        let ack = bench.publish(n).await?;
        acks.push(tokio::spawn(ack.into_future()));
    }
    for ack in acks {
        ack.await??;
    }
    wait_for_outcomes(&db, args.backlog + total, Duration::from_secs(120)).await?;
    let written: Vec<(String, DateTime<Utc>)> =
        sqlx::query_as("select event_id, occurred_at from audit_log where stream_seq > $1")
            .bind(i64::try_from(args.backlog)?)
            .fetch_all(&db)
            .await?;
    let mut latencies: Vec<f64> = written
        .iter()
        .filter_map(|(id, at)| {
            let sent = published.get(id)?;
            Some((*at - *sent).num_microseconds()? as f64 / 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let i = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        latencies
            .get(i.clamp(1, latencies.len().max(1)) - 1)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let stored: i64 = sqlx::query_scalar("select count(*) from bookings")
        .fetch_one(&db)
        .await?;

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# ledger benchmark, {}",
        started.format("%Y-%m-%d %H:%M UTC")
    )?;
    writeln!(
        out,
        "{} cores shared with PostgreSQL and NATS; {TENANTS} tenants; batch size {}; signed \
         booking payloads published straight to JetStream.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.batch_size
    )?;
    writeln!(out, "| run | events | result |")?;
    writeln!(out, "|---|---:|---|")?;
    writeln!(
        out,
        "| drain a backlog | {} | {drained_per_sec:.0} bookings/s committed (goal >= 8000) {} |",
        args.backlog,
        if drained_per_sec >= 8000.0 {
            "ok"
        } else {
            "MISSED"
        }
    )?;
    writeln!(
        out,
        "| steady {} events/s for {} s | {} | publish → written p50 {:.1} ms, p99 {:.1} ms (goal p99 <= 250) {} |",
        args.rate,
        args.duration_secs,
        latencies.len(),
        pct(50.0),
        pct(99.0),
        if pct(99.0) <= 250.0 { "ok" } else { "MISSED" }
    )?;
    writeln!(
        out,
        "\nbookings stored: {stored} (expected {}) {}",
        args.backlog + total,
        if usize::try_from(stored)? == args.backlog + total {
            "ok"
        } else {
            "MISSED"
        }
    )?;
    summary::record(&summary::Figure {
        bench: "ledger",
        figure: "backlog drained, bookings committed per second",
        value: drained_per_sec,
        unit: "bookings/s",
        ceiling: 22_000.0,
        ceiling_source: "docs/performance.md probe: pull consumer, fetch 500, one unnest insert, ack, 1 worker",
        higher_is_better: true,
    })?;
    summary::record(&summary::Figure {
        bench: "ledger",
        figure: &format!("publish to written p99 at a steady {}/s", args.rate),
        value: pct(99.0),
        unit: "ms",
        ceiling: 250.0,
        ceiling_source: "goal",
        higher_is_better: false,
    })?;
    anyhow::ensure!(
        latencies.len() == total,
        "{} of {total} events measured",
        latencies.len()
    );
    Ok(())
}

/// Waits until the audit log holds at least `n` outcomes.
async fn wait_for_outcomes(db: &sqlx::PgPool, n: usize, timeout: Duration) -> anyhow::Result<()> {
    common::wait_for_count(db, "select count(*) from audit_log", n, timeout).await
}

fn start_ledger(
    args: &Args,
    db_url: &str,
    subjects: &Subjects,
    tenants_file: &Path,
    dir: &Path,
) -> anyhow::Result<Child> {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let env = common::service_env(
        "ledger",
        db_url,
        &args.backends.nats_url,
        subjects.namespace(),
        tenants_file,
        &[
            ("LISTEN_ADDR", addr.to_string()),
            ("BATCH_SIZE", args.batch_size.to_string()),
        ],
    );
    common::spawn_service("ledger", &env, dir)
}
