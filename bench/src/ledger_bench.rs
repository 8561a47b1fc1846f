//! ledger-bench: how fast the ledger turns published booking events into committed, chained
//! rows, and how long one event waits at a steady 1,000 per second — with its security off and
//! on, in the same run.
//!
//! Each measurement has a database and a NATS server of its own, then
//! 1. publishes a backlog of signed-payload booking events for 20 tenants and starts a release
//!    `ledger` on it: the drain rate is the sustained throughput;
//! 2. publishes at a fixed rate and measures, per event, publish → outcome written (the audit
//!    row's `clock_timestamp()`, just before the commit).
//!
//! Every security level (`--security`, default off, auth and auth + TLS: see
//! `common::Security`) is measured `--rounds` times, the levels interleaved (off, auth, tls,
//! auth, tls, off, …) so that other load on the machine falls on each alike; medians are
//! reported with the cost of each level against the first.
//!
//! Run it with `bench/run.sh ledger`.

// The benchmarks' shared helpers, not all of which this one uses.
#[allow(dead_code)]
mod common;
// CPU time per process; this benchmark uses `cpu_time`.
#[allow(dead_code)]
mod cpu;
mod summary;

use std::collections::HashMap;
use std::future::IntoFuture;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::HeaderMap;
use billing_runtime::Subjects;
use billing_runtime::nats::{
    AUTH_STANDARD_WEBHOOKS, HDR_AUTH, HDR_EVENT_ID, HDR_RECEIVED_AT, HDR_SOURCE, HDR_TENANT,
};
use chrono::{DateTime, Utc};
use clap::Parser;
use common::{Secured, Security};
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
    /// Security levels to measure, compared with the first.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "off,auth,tls"
    )]
    security: Vec<Security>,
    /// Measurements of each level, interleaved with the others'.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// A database URL on the server the benchmark may create databases in (as their owner).
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/test"
    )]
    database_url: String,
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
    anyhow::ensure!(
        !args.security.is_empty() && args.rounds > 0,
        "nothing to measure"
    );
    let started = Utc::now();
    let load_before = common::load_average();
    let dir = std::env::temp_dir().join(format!("ledger-bench-{}", started.timestamp()));
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
    let postgres_certificate = prepare_server(&args).await?;
    let mut levels = Vec::new();
    for &level in &args.security {
        let mut secured = Secured::prepare(level, &dir)?;
        if let Some(certificate) = &postgres_certificate {
            secured.trust_postgres_certificate(certificate.clone());
        }
        levels.push((secured, Vec::new()));
    }

    // Round r starts at level r (mod the levels): each level runs first, second, … alike.
    for round in 0..args.rounds {
        for i in 0..levels.len() {
            let (secured, results) = &mut levels[(round + i) % args.security.len()];
            let tag = format!("{}_{:?}_{round}", started.timestamp(), secured.level).to_lowercase();
            // A failed measurement keeps the run directory, with its logs.
            let measured = measure(&args, secured, &tenants_file, &dir.join(&tag), &tag)
                .await
                .with_context(|| format!("{tag} (logs in {})", dir.join(&tag).display()))?;
            eprintln!(
                "round {}: {}: drained {:.0} bookings/s, steady p50 {:.1} ms, p99 {:.1} ms (load {})",
                round + 1,
                secured.level.label(),
                measured.drained_per_sec,
                measured.p50,
                measured.p99,
                common::load_average()
            );
            results.push(measured);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    report(&args, &levels, started, &load_before)
}

/// The database server's certificate, which the services verify with TLS (Debian's cluster
/// has a self-signed one, naming the machine rather than 127.0.0.1); the runtime roles.
async fn prepare_server(args: &Args) -> anyhow::Result<Option<std::path::PathBuf>> {
    if args.security.iter().any(|l| *l != Security::Off) {
        common::ensure_runtime_roles(&args.database_url).await?;
    }
    if !args.security.contains(&Security::Tls) {
        return Ok(None);
    }
    let admin = sqlx::PgPool::connect(&args.database_url).await?;
    let ssl: String = sqlx::query_scalar("select current_setting('ssl')")
        .fetch_one(&admin)
        .await?;
    let certificate: String = sqlx::query_scalar("select current_setting('ssl_cert_file')")
        .fetch_one(&admin)
        .await?;
    admin.close().await;
    anyhow::ensure!(
        ssl == "on",
        "--security tls needs PostgreSQL with ssl = on (Debian's cluster has it)"
    );
    let certificate = std::path::PathBuf::from(certificate);
    anyhow::ensure!(
        certificate.is_absolute() && certificate.exists(),
        "PostgreSQL's certificate {} is not readable here",
        certificate.display()
    );
    Ok(Some(certificate))
}

/// One measurement's figures.
struct Measured {
    drained_per_sec: f64,
    p50: f64,
    p99: f64,
    measured: usize,
    stored: usize,
    expected: usize,
    /// The ledger's database sessions after the drain, by role and TLS.
    sessions: String,
    /// CPU µs per booking drained: the ledger, its PostgreSQL sessions, NATS.
    cpu_per_booking: [f64; 3],
}

/// One measurement at `secured`'s level: a fresh database and NATS server, the backlog, the
/// steady rate.
async fn measure(
    args: &Args,
    secured: &Secured,
    tenants_file: &Path,
    dir: &Path,
    tag: &str,
) -> anyhow::Result<Measured> {
    std::fs::create_dir_all(dir)?;
    let database =
        common::BenchDatabase::create(&args.database_url, &format!("ledger_bench_{tag}")).await?;
    let result = async {
        let nats = common::OwnNats::start(secured, dir).await?;
        // Published as ingest publishes, under its identity when auth is on.
        let bench = Bench {
            js: secured.jetstream(nats.url(), "ingest").await?,
            subjects: Subjects::new(""),
        };
        bench.subjects.ensure_streams(&bench.js).await?;
        run(
            args,
            secured,
            &bench,
            &nats,
            &database.url,
            tenants_file,
            dir,
        )
        .await
    }
    .await;
    database.drop_database().await;
    result
}

async fn run(
    args: &Args,
    secured: &Secured,
    bench: &Bench,
    nats: &common::OwnNats,
    db_url: &str,
    tenants_file: &Path,
    dir: &Path,
) -> anyhow::Result<Measured> {
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
    let nats_pid: Vec<u32> = nats.pid().into_iter().collect();
    let nats_before = cpu::cpu_time(&nats_pid);
    let ledger = start_ledger(args, secured, nats.url(), db_url, tenants_file, dir).await?;
    let db = common::bench_pool(db_url, "ledger").await?;
    wait_for_outcomes(&db, args.backlog, Duration::from_secs(600)).await?;
    // CPU spent on the drain (and the ledger's start): the ledger, the PostgreSQL sessions
    // serving it, NATS.
    let backends: Vec<i32> = sqlx::query_scalar(
        "select pid from pg_stat_activity
         where datname = current_database() and application_name = 'ledger'",
    )
    .fetch_all(&db)
    .await?;
    let backends: Vec<u32> = backends
        .into_iter()
        .filter_map(|p| p.try_into().ok())
        .collect();
    let per_booking = |d: Duration| d.as_secs_f64() * 1e6 / args.backlog.max(1) as f64;
    let cpu_per_booking = [
        per_booking(cpu::cpu_time(&ledger.id().into_iter().collect::<Vec<_>>())),
        per_booking(cpu::cpu_time(&backends)),
        per_booking(cpu::cpu_time(&nats_pid).saturating_sub(nats_before)),
    ];
    let sessions = common::service_sessions(&db).await?;
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

    Ok(Measured {
        drained_per_sec,
        p50: pct(50.0),
        p99: pct(99.0),
        measured: latencies.len(),
        stored: usize::try_from(stored)?,
        expected: args.backlog + total,
        sessions,
        cpu_per_booking,
    })
}

/// A level's medians over its rounds.
struct Medians<'a> {
    secured: &'a Secured,
    drained: f64,
    /// The fastest round's drain rate: some rounds' drains stall for seconds at the start,
    /// whatever the level (see bench/RESULTS.md), and the best round is free of that.
    best: f64,
    /// CPU µs per booking drained: ledger, PostgreSQL, NATS.
    cpu: [f64; 3],
    p50: f64,
    p99: f64,
    /// Every round stored and measured every event.
    complete: bool,
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

fn report(
    args: &Args,
    levels: &[(Secured, Vec<Measured>)],
    started: DateTime<Utc>,
    load_before: &str,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# ledger benchmark, {}",
        started.format("%Y-%m-%d %H:%M UTC")
    )?;
    writeln!(
        out,
        "{} cores shared with PostgreSQL and NATS; {TENANTS} tenants; batch size {}; signed \
         booking payloads published straight to JetStream (as the ingest user when auth is on). \
         Each measurement: a fresh database and a NATS server of its own, a backlog of {} events \
         drained, then {} events/s for {} s. {} rounds per security level, the levels \
         interleaved; medians (CPU: each process's median over the rounds). Load average (1, \
         5, 15 min) before: {load_before}; after: {}.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.batch_size,
        args.backlog,
        args.rate,
        args.duration_secs,
        args.rounds,
        common::load_average()
    )?;
    writeln!(
        out,
        "| security | drain a backlog: bookings/s committed, median (each round) | best round | CPU µs per booking drained: ledger | PostgreSQL | NATS | steady {}/s: publish → written p50 ms | p99 ms | bookings stored |",
        args.rate
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|")?;
    let mut medians = Vec::new();
    for (secured, results) in levels {
        let of = |f: &dyn Fn(&Measured) -> f64| median(results.iter().map(f));
        let m = Medians {
            secured,
            drained: of(&|m| m.drained_per_sec),
            best: results
                .iter()
                .map(|m| m.drained_per_sec)
                .fold(f64::NAN, f64::max),
            cpu: [0, 1, 2].map(|i| of(&|m| m.cpu_per_booking[i])),
            p50: of(&|m| m.p50),
            p99: of(&|m| m.p99),
            complete: results
                .iter()
                .all(|m| m.stored == m.expected && m.measured + args.backlog == m.expected),
        };
        let rounds: Vec<String> = results
            .iter()
            .map(|m| format!("{:.0}", m.drained_per_sec))
            .collect();
        writeln!(
            out,
            "| {} | {:.0} ({}) | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} of {} each round {} |",
            secured.level.label(),
            m.drained,
            rounds.join(", "),
            m.best,
            m.cpu[0],
            m.cpu[1],
            m.cpu[2],
            m.p50,
            m.p99,
            results.first().map_or(0, |m| m.stored),
            results.first().map_or(0, |m| m.expected),
            verdict(m.complete)
        )?;
        medians.push(m);
    }
    writeln!(out)?;
    let spread = levels
        .iter()
        .map(|(_, results)| {
            let rates = results.iter().map(|m| m.drained_per_sec);
            rates.clone().fold(f64::NAN, f64::max) / rates.fold(f64::NAN, f64::min)
        })
        .fold(f64::NAN, f64::max);
    if spread > 1.5 {
        writeln!(
            out,
            "The rounds of one level differ by up to x{spread:.1} in drain rate. A drain may \
             stall for seconds at its start (the ledger gets partial batches while the backlog \
             waits), at any level and on the shared NATS without auth as well: compare the best \
             rounds and the CPU per booking rather than one round with another.\n"
        )?;
    }
    for m in &medians {
        writeln!(
            out,
            "{}: drain {:.0} bookings/s (goal >= 8000) {}, p99 {:.1} ms (goal <= 250) {}",
            m.secured.level.label(),
            m.drained,
            verdict(m.drained >= 8000.0),
            m.p99,
            verdict(m.p99 <= 250.0)
        )?;
    }
    if let Some(base) = medians.first() {
        for m in &medians[1..] {
            let total = |m: &Medians| m.cpu.iter().sum::<f64>();
            writeln!(
                out,
                "cost of {} against {}: drain rate x{:.2} ({:+.1}%), best round x{:.2} \
                 ({:+.1}%); CPU per booking {:.1} → \
                 {:.1} µs ({:+.1}%: ledger {:+.1}, PostgreSQL {:+.1}, NATS {:+.1}); steady p50 \
                 {:+.1} ms, p99 {:+.1} ms",
                m.secured.level.label(),
                base.secured.level.label(),
                m.drained / base.drained,
                (m.drained / base.drained - 1.0) * 100.0,
                m.best / base.best,
                (m.best / base.best - 1.0) * 100.0,
                total(base),
                total(m),
                (total(m) / total(base) - 1.0) * 100.0,
                m.cpu[0] - base.cpu[0],
                m.cpu[1] - base.cpu[1],
                m.cpu[2] - base.cpu[2],
                m.p50 - base.p50,
                m.p99 - base.p99
            )?;
        }
    }
    for (secured, results) in levels {
        if let Some(first) = results.first() {
            writeln!(
                out,
                "{}: the ledger's database sessions: {}",
                secured.level.label(),
                first.sessions
            )?;
        }
    }
    writeln!(out, "\nSecurity levels: {}.", Security::explain())?;
    for m in &medians {
        if m.secured.level == Security::Tls {
            writeln!(
                out,
                "PostgreSQL over TLS here: the machine's shared cluster with its own self-signed \
                 certificate ({}; it names the machine, not 127.0.0.1, so the host name is not \
                 matched). NATS over TLS: a CA made for the run, the server's certificate \
                 verified by name.",
                m.secured.postgres_tls()
            )?;
        }
    }
    drop(out);
    for Medians {
        secured,
        drained,
        p99,
        ..
    } in &medians
    {
        summary::record(&summary::Figure {
            bench: "ledger",
            figure: &format!(
                "backlog drained, bookings committed per second, {}",
                secured.level.label()
            ),
            value: *drained,
            unit: "bookings/s",
            ceiling: 22_000.0,
            ceiling_source: "docs/performance.md probe: pull consumer, fetch 500, one unnest insert, ack, 1 worker",
            higher_is_better: true,
        })?;
        summary::record(&summary::Figure {
            bench: "ledger",
            figure: &format!(
                "publish to written p99 at a steady {}/s, {}",
                args.rate,
                secured.level.label()
            ),
            value: *p99,
            unit: "ms",
            ceiling: 250.0,
            ceiling_source: "goal",
            higher_is_better: false,
        })?;
    }
    anyhow::ensure!(
        medians.iter().all(|m| m.complete),
        "a measurement stored or measured fewer events than it published"
    );
    Ok(())
}

/// Waits until the audit log holds at least `n` outcomes.
async fn wait_for_outcomes(db: &sqlx::PgPool, n: usize, timeout: Duration) -> anyhow::Result<()> {
    common::wait_for_count(db, "select count(*) from audit_log", n, timeout).await
}

async fn start_ledger(
    args: &Args,
    secured: &Secured,
    nats_url: &str,
    db_url: &str,
    tenants_file: &Path,
    dir: &Path,
) -> anyhow::Result<Child> {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let env = common::service_env(
        "ledger",
        db_url,
        nats_url,
        "",
        tenants_file,
        &[
            ("LISTEN_ADDR", addr.to_string()),
            ("BATCH_SIZE", args.batch_size.to_string()),
        ],
    );
    secured.migrate("ledger", &env, dir).await?;
    common::spawn_service("ledger", &secured.service_env("ledger", env)?, dir)
}
