//! One measurement: a fresh database and NATS (a server of its own, or a fresh 3-node cluster
//! with R3 streams), a backlog of booking events published as ingest publishes them and drained
//! by a release `ledger`, then a steady rate; its figures.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::path::Path;
use std::time::Duration;

use async_nats::HeaderMap;
use billing_runtime::Subjects;
use billing_runtime::nats::{
    AUTH_STANDARD_WEBHOOKS, HDR_AUTH, HDR_EVENT_ID, HDR_RECEIVED_AT, HDR_SOURCE, HDR_TENANT,
};
use chrono::{DateTime, Utc};
use tokio::process::Child;

use crate::common::{self, Secured};
use crate::nats::{Cluster, Nats, Server};
use crate::{Args, TENANTS, cpu};

/// Event `n`'s booking: tenant `n % TENANTS`, its client as [`client`] says.
fn body(n: usize) -> String {
    let c = client(n / TENANTS);
    let (first, last) = (FIRST[c % FIRST.len()], LAST[c / FIRST.len() % LAST.len()]);
    format!(
        r#"{{"booking_id":"{n}","booking_hash":"{n:032x}","price":"{}.{:02}","datetime":"2026-10-14 10:00:00","status":"confirmed","service":{{"id":"7","name":"Remedial massage"}},"client":{{"name":"{first} {last}","email":"{}.{}{c}@example.test","phone":"+61 4{:02} {:03} {:03}"}}}}"#,
        50 + n % 200,
        n % 100,
        first.to_lowercase(),
        last.to_lowercase(),
        c / 1_000_000 % 100,
        c / 1000 % 1000,
        c % 1000
    )
}

const FIRST: [&str; 12] = [
    "Olivia",
    "Jack",
    "Charlotte",
    "Noah",
    "Amelia",
    "William",
    "Isla",
    "Oliver",
    "Mia",
    "Thomas",
    "Ava",
    "Lachlan",
];
const LAST: [&str; 10] = [
    "Smith", "Nguyen", "Jones", "Williams", "Brown", "Wilson", "Taylor", "Kelly", "Martin", "Lee",
];

/// The client of a tenant's `k`th booking: one client per three bookings. Booking 3c is client
/// c's first (the ledger makes its key); 3c + 1 and 3c + 2 are the bookings of clients first
/// seen 7 and 50 groups earlier (~420 and ~3,000 events before with 20 tenants: the same or the
/// previous batch, and a batch several back, whose key the ledger reads and unwraps), or of
/// client c itself at the start.
pub fn client(k: usize) -> usize {
    let group = k / 3;
    let back = [0, 7, 50][k % 3];
    group.checked_sub(back).unwrap_or(group)
}

/// How many clients the first `events` events name, over all tenants: the keys the ledger
/// makes for them.
fn clients_of(events: usize) -> usize {
    let clients: std::collections::HashSet<(usize, usize)> = (0..events)
        .map(|n| (n % TENANTS, client(n / TENANTS)))
        .collect();
    clients.len()
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

/// One measurement's figures.
pub struct Measured {
    pub drained_per_sec: f64,
    /// The drain second by second from its first commit: bookings committed, and commits.
    pub drain_seconds: Vec<(i64, i64)>,
    /// Messages JetStream had to deliver to the ledger again (its consumer's `num_redelivered`),
    /// after the drain and after the steady run: each waited out the ledger's ack_wait.
    pub redelivered: [usize; 2],
    pub p50: f64,
    pub p99: f64,
    pub measured: usize,
    pub stored: usize,
    pub expected: usize,
    /// The ledger's database sessions after the drain, by role and TLS.
    pub sessions: String,
    /// CPU µs per booking drained: the ledger, its PostgreSQL sessions, NATS.
    pub cpu_per_booking: [f64; 3],
    /// Clients' data keys stored, bookings with sealed client details, and plaintext client
    /// details left (none expected), after the steady run.
    pub client_keys: usize,
    pub sealed: usize,
    pub plaintext: usize,
    /// The clients the events name (the keys expected with encryption on).
    pub clients: usize,
    /// The fewest replicas of any of the services' streams, as NATS reports them after the
    /// steady run (proof of R1 or R3).
    pub stream_replicas: usize,
}

/// One measurement at `secured`'s level on `nats` (R3: `cluster`, reset first and stopped
/// after, whatever happened), the ledger with the client keyring `keyring` or none: a fresh
/// database and NATS, the backlog, the steady rate.
#[allow(clippy::too_many_arguments)]
pub async fn measure(
    args: &Args,
    secured: &Secured,
    nats: Nats,
    cluster: &Cluster,
    keyring: Option<&Path>,
    tenants_file: &Path,
    dir: &Path,
    tag: &str,
) -> anyhow::Result<Measured> {
    std::fs::create_dir_all(dir)?;
    let database =
        common::BenchDatabase::create(&args.database_url, &format!("ledger_bench_{tag}")).await?;
    let result = async {
        let server = Server::start(nats, secured, dir, cluster).await?;
        // Published as ingest publishes, under its identity when auth is on, its streams with
        // as many replicas as the ledger's.
        let bench = Bench {
            js: secured.jetstream(server.url(), "ingest").await?,
            subjects: Subjects::new("").with_replicas(nats.replicas()),
        };
        bench.subjects.ensure_streams(&bench.js).await?;
        run(
            args,
            secured,
            nats,
            keyring,
            &bench,
            &server,
            &database.url,
            tenants_file,
            dir,
        )
        .await
    }
    .await;
    if nats == Nats::R3
        && let Err(e) = cluster.stop().await
    {
        eprintln!("stopping the NATS cluster: {e:#}");
    }
    database.drop_database().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn run(
    args: &Args,
    secured: &Secured,
    nats: Nats,
    keyring: Option<&Path>,
    bench: &Bench,
    server: &Server,
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
    let nats_pid = server.pids();
    let nats_before = cpu::cpu_time(&nats_pid);
    let ledger = start_ledger(
        args,
        secured,
        nats,
        keyring,
        server.url(),
        db_url,
        tenants_file,
        dir,
    )
    .await?;
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
    // The drain second by second from its first commit: audit rows and commits (the rows a
    // transaction wrote share its id, `xmin`), to see a slow start rather than guess at it.
    let per_second: Vec<(i64, i64, i64)> = sqlx::query_as(
        "select floor(extract(epoch from occurred_at - $1))::bigint, count(*),
                count(distinct xmin::text)
         from audit_log group by 1 order by 1",
    )
    .bind(first)
    .fetch_all(&db)
    .await?;
    let mut drain_seconds = Vec::new();
    for (second, rows, commits) in per_second {
        // A second with no commit at all is a stall: shown as 0/0.
        drain_seconds.resize(usize::try_from(second)?, (0, 0));
        drain_seconds.push((rows, commits));
    }
    let drained_per_sec = args.backlog as f64 / drain.as_secs_f64().max(f64::EPSILON);
    let redelivered_in_drain = ledger_redeliveries(bench).await?;

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
    let (client_keys, sealed, plaintext): (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from client_keys),
                count(*) filter (where client_sealed is not null),
                count(*) filter (where coalesce(client_name, client_email, client_phone) is not null)
         from bookings",
    )
    .fetch_one(&db)
    .await?;
    let mut stream_replicas = usize::MAX;
    for name in bench.subjects.stream_names() {
        let mut stream = bench.js.get_stream(&name).await?;
        stream_replicas = stream_replicas.min(stream.info().await?.config.num_replicas);
    }

    Ok(Measured {
        drained_per_sec,
        drain_seconds,
        redelivered: [redelivered_in_drain, ledger_redeliveries(bench).await?],
        p50: pct(50.0),
        p99: pct(99.0),
        measured: latencies.len(),
        stored: usize::try_from(stored)?,
        expected: args.backlog + total,
        sessions,
        cpu_per_booking,
        client_keys: usize::try_from(client_keys)?,
        sealed: usize::try_from(sealed)?,
        plaintext: usize::try_from(plaintext)?,
        clients: clients_of(args.backlog + total),
        stream_replicas,
    })
}

/// Waits until the audit log holds at least `n` outcomes.
async fn wait_for_outcomes(db: &sqlx::PgPool, n: usize, timeout: Duration) -> anyhow::Result<()> {
    common::wait_for_count(db, "select count(*) from audit_log", n, timeout).await
}

#[allow(clippy::too_many_arguments)]
async fn start_ledger(
    args: &Args,
    secured: &Secured,
    nats: Nats,
    keyring: Option<&Path>,
    nats_url: &str,
    db_url: &str,
    tenants_file: &Path,
    dir: &Path,
) -> anyhow::Result<Child> {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut extra = vec![
        ("LISTEN_ADDR", addr.to_string()),
        ("BATCH_SIZE", args.batch_size.to_string()),
    ];
    if nats == Nats::R3 {
        extra.push(("NATS_STREAM_REPLICAS", nats.replicas().to_string()));
    }
    if let Some(keyring) = keyring {
        extra.push(("CLIENT_KEYRING_FILE", keyring.display().to_string()));
    }
    let env = common::service_env("ledger", db_url, nats_url, "", tenants_file, &extra);
    secured.migrate("ledger", &env, dir).await?;
    common::spawn_service("ledger", &secured.service_env("ledger", env)?, dir)
}

/// How many messages the ledger's consumer of SimplyBook webhooks has delivered more than once.
async fn ledger_redeliveries(bench: &Bench) -> anyhow::Result<usize> {
    let stream = bench
        .js
        .get_stream(bench.subjects.stream_name("WEBHOOKS"))
        .await?;
    let mut consumer = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("ledger")
        .await
        .map_err(|e| anyhow::anyhow!("the ledger's consumer: {e}"))?;
    Ok(consumer.info().await?.num_redelivered)
}
