//! Fault injection: nothing lost, nothing doubled, the right money, while parts of the system
//! fail. For each scenario, a fresh database on a PostgreSQL server of the benchmark's own and a
//! fresh NATS server of its own (so it can stop and restart them), two ingest replicas behind a
//! round-robin sender, two ledger replicas, invoicing, the notifier and an SMTP sink, all release
//! binaries, secured as in production by default (`--security tls`: each service its own NATS
//! user under deploy/nats/nats-server.conf and its own database role, the keyed chain, NATS and
//! PostgreSQL over TLS; see `common::Security`). A known workload (by default 20,000 bookings across 20 tenants, some changed or
//! cancelled, each webhook delivered one to three times, all shuffled) is sent while the
//! scenario's fault strikes at 30% of the deliveries and heals two seconds later. Then:
//! - the ledger holds exactly the expected bookings, each in its last state, amounts to the cent,
//!   and no event was applied twice;
//! - every tenant's hash chain verifies;
//! - the monthly close issues each tenant one invoice with the expected fee subtotal, and a
//!   second close issues nothing;
//! - each invoice email arrives once.
//!
//! Prints one table row per scenario; exits non-zero if anything was lost, doubled or wrong.
//!   bench/run.sh faults [--tenants 20] [--bookings 1000] [--scenarios kill-ledger,restart-nats]
//!                       [--security off|auth|tls]
#![allow(clippy::print_stdout)]

// The other benchmarks' helpers; this one starts its services its own way (to kill them).
#[allow(dead_code)]
mod common;
mod ready;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use billing_domain::standard_webhooks::SigningKey;
use billing_proto::invoicing::invoicing_service_client::InvoicingServiceClient;
use billing_proto::invoicing::{GenerateMonthlyInvoicesRequest, Outcome};
use billing_proto::ledger::VerifyIntegrityRequest;
use billing_proto::ledger::ledger_service_client::LedgerServiceClient;
use billing_runtime::trace::{TracedChannel, traced};
use billing_testkit::MailSink;
use chrono::{TimeZone, Utc};
use clap::{Parser, ValueEnum};
use common::{OwnNats, Secured, Security};
use rust_decimal::Decimal;
use tokio::process::{Child, Command};

/// Obviously fake signing secret shared by the benchmark's tenants.
const SECRET: &str = "whsec_ZmF1bHQtYmVuY2gtZmFrZS1zZWNyZXQ=";
const PERIOD: &str = "2026-10";
/// When the fault strikes, as a share of the deliveries sent.
const STRIKE_AT: f64 = 0.3;
/// How long the failed part stays down.
const DOWN_FOR: Duration = Duration::from_secs(2);
/// The longest the system may take to become complete and correct after a fault heals.
const RECOVERY_LIMIT: Duration = Duration::from_secs(180);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Baseline,
    KillLedger,
    RestartNats,
    RestartPostgres,
    KillIngest,
    StopSmtp,
}

impl Scenario {
    fn describe(self) -> &'static str {
        match self {
            Scenario::Baseline => "no fault",
            Scenario::KillLedger => "kill -9 a ledger replica mid-batch",
            Scenario::RestartNats => "restart NATS",
            Scenario::RestartPostgres => "restart PostgreSQL",
            Scenario::KillIngest => "kill -9 an ingest replica",
            Scenario::StopSmtp => "SMTP down during invoice emails",
        }
    }
}

#[derive(Parser)]
#[command(
    name = "fault-bench",
    about = "Nothing lost, nothing doubled while parts of the system fail"
)]
struct Args {
    #[arg(long, default_value_t = 20)]
    tenants: usize,
    /// Bookings per tenant.
    #[arg(long, default_value_t = 1000)]
    bookings: usize,
    /// Default: all, in order.
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Requests in flight from the sender.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seed of the workload (bookings, changes, delivery counts, order).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Keep the run directory (logs, databases' data) afterwards.
    #[arg(long)]
    keep: bool,
    /// How the services are secured; by default as in production.
    #[arg(long, value_enum, default_value = "tls")]
    security: Security,
}

/// splitmix64: a small deterministic generator, enough to shuffle a workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn tenant_id(t: usize) -> String {
    format!("t{t:02}")
}

/// The state a booking event carries (the signed forwarder sends the whole booking).
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    status: &'static str,
    price: Decimal,
    /// Local time in Sydney, `YYYY-MM-DD HH:MM:SS`.
    local: String,
}

struct Event {
    tenant: usize,
    body: String,
    webhook_id: String,
    timestamp: i64,
    signature: String,
}

struct Workload {
    events: Vec<Event>,
    /// Indexes into `events`, one per delivery, shuffled.
    deliveries: Vec<usize>,
    /// (tenant, booking ref) → the last state.
    expected: BTreeMap<(String, String), State>,
}

fn workload(args: &Args, seed: u64, now: i64) -> anyhow::Result<Workload> {
    let key = SigningKey::parse(SECRET)?;
    let mut rng = Rng(seed);
    let mut events = Vec::new();
    let mut expected = BTreeMap::new();
    // Every event of a booking is older than the next by a second, and all are within ingest's
    // five-minute signature window while a scenario's deliveries last (about 30 s here; a
    // workload that takes longer than four minutes to send would see stale refusals).
    let base = now - 30;
    for t in 1..=args.tenants {
        for b in 1..=args.bookings {
            let booking = format!("{t:02}{b:05}");
            let day = 1 + rng.below(31);
            let hour = 8 + rng.below(11);
            let price = Decimal::new(5_000 + i64::try_from(rng.below(20_000))?, 2);
            let mut states = vec![State {
                status: "confirmed",
                price,
                local: format!("2026-10-{day:02} {hour:02}:00:00"),
            }];
            // A third change price or time; one in seven is cancelled in the end.
            if rng.below(3) == 0 {
                let mut changed = states[0].clone();
                if rng.below(2) == 0 {
                    changed.price = Decimal::new(5_000 + i64::try_from(rng.below(20_000))?, 2);
                } else {
                    changed.local = format!("2026-10-{day:02} {:02}:30:00", 8 + rng.below(11));
                }
                states.push(changed);
            }
            if rng.below(7) == 0 {
                let mut cancelled = states[states.len() - 1].clone();
                cancelled.status = "cancelled";
                states.push(cancelled);
            }
            for (seq, state) in states.iter().enumerate() {
                let body = format!(
                    r#"{{"booking_id":"{booking}","booking_hash":"h{booking}","status":"{}","price":"{}","currency":"AUD","datetime":"{}","service":{{"id":"7","name":"Remedial massage"}}}}"#,
                    state.status, state.price, state.local
                );
                let webhook_id = format!("fault-{seed}-{booking}-{seq}");
                let timestamp = base + i64::try_from(seq)?;
                let signature = key.sign(&webhook_id, timestamp, body.as_bytes());
                events.push(Event {
                    tenant: t,
                    body,
                    webhook_id,
                    timestamp,
                    signature,
                });
            }
            let last = states.pop().context("a booking has a state")?;
            expected.insert((tenant_id(t), booking), last);
        }
    }
    let mut deliveries = Vec::new();
    for i in 0..events.len() {
        for _ in 0..=rng.below(3) {
            deliveries.push(i);
        }
    }
    for i in (1..deliveries.len()).rev() {
        let j = usize::try_from(rng.below(u64::try_from(i)? + 1))?;
        deliveries.swap(i, j);
    }
    Ok(Workload {
        events,
        deliveries,
        expected,
    })
}

/// A PostgreSQL server of the benchmark's own, in `dir`, which it may stop and start.
struct OwnPostgres {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    options: String,
}

impl OwnPostgres {
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        // PostgreSQL refuses to run as root: run its tools as the postgres user then.
        let mut command = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command.stdout(Stdio::null()).stderr(Stdio::null());
        command
    }

    /// `options`: more server settings (`-c …`), e.g. TLS.
    async fn init(dir: &Path, port: u16, options: String) -> anyhow::Result<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .context("PostgreSQL's server binaries (Debian: apt-get install postgresql)")?
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .context("no initdb under /usr/lib/postgresql")?;
        let pg = OwnPostgres {
            bin,
            data: dir.join("pg"),
            log: dir.join("postgres.log"),
            port,
            options,
        };
        std::fs::create_dir_all(&pg.data)?;
        if running_as_root() {
            run(Command::new("chown").args(["-R", "postgres"]).arg(dir)).await?;
        }
        run(pg.command("initdb").arg("-D").arg(&pg.data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]))
        .await
        .context("initdb")?;
        pg.start().await?;
        Ok(pg)
    }

    async fn start(&self) -> anyhow::Result<()> {
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .arg("-o")
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -k /tmp -c max_connections=200{}",
                self.port, self.options
            ))
            .args(["-w", "start"]))
        .await
        .context("pg_ctl start")
    }

    async fn stop(&self) -> anyhow::Result<()> {
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"]))
        .await
        .context("pg_ctl stop")
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

fn running_as_root() -> bool {
    std::env::var("USER").is_ok_and(|u| u == "root")
        || std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false)
}

async fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status().await?;
    anyhow::ensure!(status.success(), "{command:?} exited with {status}");
    Ok(())
}

/// One service replica, started again with the same settings after it is killed.
struct Service {
    name: &'static str,
    env: Vec<(String, String)>,
    log: PathBuf,
    addr: SocketAddr,
    child: Option<Child>,
}

impl Service {
    fn new(
        name: &'static str,
        replica: usize,
        env: Vec<(String, String)>,
        dir: &Path,
        addr: SocketAddr,
    ) -> Self {
        Service {
            name,
            env,
            log: dir.join(format!("{name}-{replica}.log")),
            addr,
            child: None,
        }
    }

    async fn start(&mut self) -> anyhow::Result<()> {
        let bin = std::env::current_exe()?.with_file_name(self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(&bin);
        command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("LOG_FORMAT", "text")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        self.child = Some(
            command
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?,
        );
        ready::wait_ready(self.addr, Duration::from_secs(60))
            .await
            .with_context(|| format!("{} (log: {})", self.name, self.log.display()))?;
        // The address was free when it was picked, not necessarily when the service bound it:
        // another process on the machine may have taken it and be the one answering.
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            anyhow::bail!(
                "{} exited ({status}) while something else answers on {}: another process took \
                 its port; run again (log: {})",
                self.name,
                self.addr,
                self.log.display()
            );
        }
        Ok(())
    }

    /// `kill -9`.
    async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// What the sender did.
#[derive(Default)]
struct Sent {
    /// Deliveries ingest accepted (2xx), retries of one delivery counted once.
    accepted: AtomicU64,
    /// Requests refused or failed and sent again (to the other replica).
    retried: AtomicU64,
    /// Deliveries that could not be made within the time limit.
    given_up: AtomicU64,
    /// Deliveries finished, for the fault's trigger.
    done: AtomicUsize,
}

/// Sends every delivery, round-robin over `ingests`, each until ingest accepts it (as SimplyBook
/// retries a webhook).
async fn send_all(
    work: Arc<Workload>,
    ingests: Arc<Vec<SocketAddr>>,
    concurrency: usize,
    sent: Arc<Sent>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (work, ingests, sent, next, client) = (
            work.clone(),
            ingests.clone(),
            sent.clone(),
            next.clone(),
            client.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&event) = work.deliveries.get(i) else {
                    return;
                };
                let e = &work.events[event];
                let deadline = Instant::now() + Duration::from_secs(120);
                let mut attempt = 0usize;
                loop {
                    let addr = ingests[(i + attempt) % ingests.len()];
                    let response = client
                        .post(format!(
                            "http://{addr}/api/v1/webhooks/simplybook/{}",
                            tenant_id(e.tenant)
                        ))
                        .header("content-type", "application/json")
                        .header("webhook-id", &e.webhook_id)
                        .header("webhook-timestamp", e.timestamp.to_string())
                        .header("webhook-signature", &e.signature)
                        .body(e.body.clone())
                        .send()
                        .await;
                    if response.is_ok_and(|r| r.status().is_success()) {
                        sent.accepted.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    if Instant::now() > deadline {
                        sent.given_up.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    sent.retried.fetch_add(1, Ordering::Relaxed);
                    attempt += 1;
                    let pause = 20 * u64::try_from(attempt.min(10)).unwrap_or(10);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                sent.done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for worker in workers {
        worker.await?;
    }
    Ok(())
}

/// How the ledger compares with the expected bookings.
#[derive(Debug, Default)]
struct Compared {
    stored: usize,
    lost: usize,
    wrong: usize,
    extra: usize,
    /// Events applied more than once: audit outcomes, price revisions or status-history rows
    /// of one event id, or a booking whose revisions do not add up to its current amount.
    applied_twice: i64,
    /// Redelivered events the ledger recognised (audit outcome `duplicate`).
    ledger_duplicates: i64,
}

async fn compare(
    ledger_db: &sqlx::PgPool,
    expected: &BTreeMap<(String, String), State>,
) -> anyhow::Result<Compared> {
    let rows: Vec<(String, String, String, chrono::DateTime<Utc>, Decimal)> = sqlx::query_as(
        "select b.tenant_id, b.booking_ref, b.status, b.session_at,
                coalesce((select r.total_after from booking_revisions r where r.booking_id = b.id
                          order by r.revision_no desc limit 1), b.total_amount)
         from bookings b",
    )
    .fetch_all(ledger_db)
    .await?;
    let mut c = Compared {
        stored: rows.len(),
        ..Default::default()
    };
    let sydney = chrono_tz::Australia::Sydney;
    let mut seen = 0;
    for (tenant, booking, status, session_at, total) in &rows {
        let Some(want) = expected.get(&(tenant.clone(), booking.clone())) else {
            c.extra += 1;
            continue;
        };
        seen += 1;
        let naive = chrono::NaiveDateTime::parse_from_str(&want.local, "%Y-%m-%d %H:%M:%S")?;
        let want_at = sydney
            .from_local_datetime(&naive)
            .earliest()
            .context("a session time in Sydney")?;
        if status != want.status || *total != want.price || *session_at != want_at {
            c.wrong += 1;
        }
    }
    c.lost = expected.len() - seen;
    for twice in [
        "select count(*) from (select event_id from audit_log
             where outcome not in ('duplicate', 'rejected', 'dead_lettered')
             group by event_id having count(*) > 1) twice",
        "select count(*) from (select source_event_id from booking_revisions
             group by source_event_id having count(*) > 1) twice",
        "select count(*) from (select event_id from booking_status_history
             group by event_id having count(*) > 1) twice",
        // Money: the original total plus every revision's delta is the current total.
        "select count(*) from bookings b
         where b.total_amount + coalesce((select sum(r.total_delta) from booking_revisions r
                                          where r.booking_id = b.id), 0)
            <> coalesce((select r.total_after from booking_revisions r where r.booking_id = b.id
                         order by r.revision_no desc limit 1), b.total_amount)",
    ] {
        let n: i64 = sqlx::query_scalar(twice).fetch_one(ledger_db).await?;
        c.applied_twice += n;
    }
    c.ledger_duplicates =
        sqlx::query_scalar("select count(*) from audit_log where outcome = 'duplicate'")
            .fetch_one(ledger_db)
            .await?;
    Ok(c)
}

/// Email attempts the notifier deferred (SMTP unreachable), from its /metrics.
async fn deferred_emails(notifier: SocketAddr) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("http://{notifier}/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("notifier_emails_total{") && l.contains("result=\"deferred\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum())
}

fn client_channel(addr: SocketAddr) -> anyhow::Result<TracedChannel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .timeout(Duration::from_secs(120))
        .connect_lazy();
    Ok(traced(
        channel,
        &billing_domain::Secret::new(common::BENCH_TOKEN.to_string()),
    )?)
}

/// The fee subtotal each tenant's October invoice must show, worked out here in whole cents
/// (20%, half a cent rounded up) rather than with the domain code under test.
fn expected_subtotals(
    expected: &BTreeMap<(String, String), State>,
) -> anyhow::Result<BTreeMap<String, Decimal>> {
    let mut cents: BTreeMap<String, i64> = BTreeMap::new();
    for ((tenant, _), state) in expected {
        if state.status == "cancelled" {
            continue;
        }
        let in_cents = state.price * Decimal::ONE_HUNDRED;
        anyhow::ensure!(in_cents.fract().is_zero(), "prices are whole cents");
        let price_cents: i64 = in_cents.normalize().to_string().parse()?;
        *cents.entry(tenant.clone()).or_default() += (price_cents * 20 + 50) / 100;
    }
    Ok(cents
        .into_iter()
        .map(|(t, c)| (t, Decimal::new(c, 2)))
        .collect())
}

/// One scenario's row.
struct Row {
    scenario: Scenario,
    sent: u64,
    events: usize,
    compared: Compared,
    /// Accepted deliveries JetStream dropped as duplicates (Nats-Msg-Id).
    nats_duplicates: u64,
    stream_messages: u64,
    given_up: u64,
    retried: u64,
    chains_ok: bool,
    invoices_ok: bool,
    emails_ok: bool,
    recovered_in: Duration,
    caught_up_in: Duration,
    notes: Vec<String>,
}

impl Row {
    fn clean(&self) -> bool {
        let c = &self.compared;
        c.lost == 0
            && self.stream_messages == self.events as u64
            && c.wrong == 0
            && c.extra == 0
            && c.applied_twice == 0
            && self.given_up == 0
            && self.chains_ok
            && self.invoices_ok
            && self.emails_ok
    }
}

struct Infra {
    dir: PathBuf,
    pg: OwnPostgres,
    secured: Secured,
    tenants_file: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.scenarios.is_empty() {
        args.scenarios = Scenario::value_variants().to_vec();
    }
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("fault-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let tenants_file = dir.join("tenants.json");
    let tenants: Vec<serde_json::Value> = (1..=args.tenants)
        .map(|t| {
            serde_json::json!({
                "id": tenant_id(t), "name": format!("Fault Tenant {t:02}"),
                "billing_email": format!("{}@example.test", tenant_id(t)),
                "time_zone": "Australia/Sydney", "currency": "AUD",
                "webhook_secrets": [SECRET],
            })
        })
        .collect();
    std::fs::write(
        &tenants_file,
        serde_json::json!({ "tenants": tenants }).to_string(),
    )?;
    let load_before = common::load_average();
    // Before PostgreSQL's directory is given to its user: its certificate is among these.
    let secured = Secured::prepare(args.security, &dir)?;
    let pg =
        OwnPostgres::init(&dir, free_addr()?.port(), secured.postgres_server_options()).await?;
    if let Err(err) = common::ensure_runtime_roles(&pg.url("postgres")).await {
        // PostgreSQL runs as a daemon, not as our child: stop it ourselves.
        let _ = pg.stop().await;
        return Err(err);
    }
    let mut infra = Infra {
        dir: dir.clone(),
        pg,
        secured,
        tenants_file,
    };

    let mut rows = Vec::new();
    let mut failure = None;
    for (n, scenario) in args.scenarios.clone().into_iter().enumerate() {
        eprintln!("--- {}", scenario.describe());
        match run_scenario(&args, &mut infra, scenario, n).await {
            Ok(row) => rows.push(row),
            Err(err) => {
                failure = Some(format!("{}: {err:#}", scenario.describe()));
                break;
            }
        }
    }
    let _ = infra.pg.stop().await;
    print_table(
        &args,
        &infra.secured,
        &rows,
        started.elapsed(),
        &load_before,
    );
    // Logs are kept whenever something went wrong, so the failure can be read.
    if args.keep || failure.is_some() || !rows.iter().all(Row::clean) {
        println!("\nrun directory kept: {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let Some(failure) = failure {
        anyhow::bail!("scenario failed: {failure} (logs in {})", dir.display());
    }
    anyhow::ensure!(
        rows.iter().all(Row::clean),
        "a scenario lost, doubled or got something wrong"
    );
    Ok(())
}

async fn run_scenario(
    args: &Args,
    infra: &mut Infra,
    scenario: Scenario,
    n: usize,
) -> anyhow::Result<Row> {
    let name = format!("fault_{n}_{:?}", scenario).to_lowercase();
    let database = common::BenchDatabase::create(&infra.pg.url("postgres"), &name).await?;
    let db_url = database.url.clone();
    let dir = infra.dir.join(&name);
    std::fs::create_dir_all(&dir)?;
    // A NATS server of the scenario's own: production's subject names (no namespace), which
    // the permissions of deploy/nats/nats-server.conf name, on a fresh store.
    let mut nats = OwnNats::start(&infra.secured, &dir).await?;
    // Each service's environment as the database's owner, its migrations applied that way, and
    // its environment as it runs (its runtime role, its NATS user, the chain key).
    let mut envs = HashMap::new();
    for service in ["ingest", "ledger", "invoicing", "notifier"] {
        let owner_env =
            common::service_env(service, &db_url, nats.url(), "", &infra.tenants_file, &[]);
        infra.secured.migrate(service, &owner_env, &dir).await?;
        envs.insert(service, infra.secured.service_env(service, owner_env)?);
    }
    let env = |service: &str, extra: &[(&str, String)]| {
        let mut env = envs[service].clone();
        let prefix = service.to_ascii_uppercase();
        env.extend(
            extra
                .iter()
                .map(|(key, value)| (format!("{prefix}_{key}"), value.clone())),
        );
        env
    };
    let ingest_addrs = [free_addr()?, free_addr()?];
    let ledger_addrs = [free_addr()?, free_addr()?];
    let invoicing_addr = free_addr()?;
    let notifier_addr = free_addr()?;
    let mail = MailSink::start().await?;
    let mut ingests: Vec<Service> = ingest_addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let e = env(
                "ingest",
                &[
                    ("LISTEN_ADDR", addr.to_string()),
                    ("RATE_LIMIT_PER_SEC", "0".into()),
                    ("PUBLISH_TIMEOUT_MS", "5000".into()),
                ],
            );
            Service::new("ingest", i, e, &dir, *addr)
        })
        .collect();
    let mut ledgers: Vec<Service> = ledger_addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let e = env("ledger", &[("LISTEN_ADDR", addr.to_string())]);
            Service::new("ledger", i, e, &dir, *addr)
        })
        .collect();
    let mut invoicing = Service::new(
        "invoicing",
        0,
        env(
            "invoicing",
            &[
                ("LISTEN_ADDR", invoicing_addr.to_string()),
                ("LEDGER_URL", format!("http://{}", ledger_addrs[0])),
                ("LEDGER_TOKEN", common::BENCH_TOKEN.to_string()),
            ],
        ),
        &dir,
        invoicing_addr,
    );
    let mut notifier = Service::new(
        "notifier",
        0,
        env(
            "notifier",
            &[
                ("LISTEN_ADDR", notifier_addr.to_string()),
                ("INVOICING_URL", format!("http://{invoicing_addr}")),
                ("INVOICING_TOKEN", common::BENCH_TOKEN.to_string()),
                ("SMTP_HOST", "127.0.0.1".into()),
                ("SMTP_PORT", mail.addr().port().to_string()),
                ("OPERATOR_EMAIL", "ops@example.test".into()),
            ],
        ),
        &dir,
        notifier_addr,
    );
    // The ledger first: it applies the migrations the others' schemas do not depend on.
    for s in ledgers.iter_mut() {
        s.start().await?;
    }
    for s in ingests.iter_mut() {
        s.start().await?;
    }
    invoicing.start().await?;
    notifier.start().await?;

    let work = Arc::new(workload(
        args,
        args.seed + n as u64,
        Utc::now().timestamp(),
    )?);
    let total = work.deliveries.len();
    let sent = Arc::new(Sent::default());
    let sender = tokio::spawn(send_all(
        work.clone(),
        Arc::new(ingest_addrs.to_vec()),
        args.concurrency,
        sent.clone(),
    ));
    let strike_at = (total as f64 * STRIKE_AT) as usize;
    while sent.done.load(Ordering::Relaxed) < strike_at && !sender.is_finished() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut notes = Vec::new();
    match scenario {
        Scenario::KillLedger => {
            ledgers[0].kill().await?;
            tokio::time::sleep(DOWN_FOR).await;
            ledgers[0].start().await?;
        }
        Scenario::RestartNats => {
            nats.stop().await?;
            tokio::time::sleep(DOWN_FOR).await;
            nats.resume().await?;
        }
        Scenario::RestartPostgres => {
            infra.pg.stop().await?;
            tokio::time::sleep(DOWN_FOR).await;
            infra.pg.start().await?;
        }
        Scenario::KillIngest => {
            ingests[0].kill().await?;
            tokio::time::sleep(DOWN_FOR).await;
            ingests[0].start().await?;
        }
        Scenario::Baseline | Scenario::StopSmtp => {}
    }
    let healed = Instant::now();
    sender.await??;
    let last_delivery = Instant::now();
    notes.push(format!(
        "struck at {} of {total} deliveries",
        strike_at.min(total)
    ));

    // The ledger catches up: complete and correct, or the scenario failed.
    let ledger_db = common::bench_pool(&db_url, "ledger").await?;
    let deadline = last_delivery + RECOVERY_LIMIT;
    let compared = loop {
        let c = compare(&ledger_db, &work.expected).await?;
        if (c.lost == 0 && c.wrong == 0) || Instant::now() > deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut recovered_in = healed.elapsed();
    let caught_up_in = last_delivery.elapsed();

    // Every chain verifies.
    let mut ledger = LedgerServiceClient::new(client_channel(ledger_addrs[1])?);
    let mut chains_ok = true;
    for t in 1..=args.tenants {
        let report = ledger
            .verify_integrity(VerifyIntegrityRequest {
                tenant_id: tenant_id(t),
            })
            .await?
            .into_inner();
        // One chain record per booking and per price revision, no more, no fewer.
        let records: i64 = sqlx::query_scalar(
            "select (select count(*) from bookings where tenant_id = $1)
                  + (select count(*) from booking_revisions r join bookings b
                     on b.id = r.booking_id where b.tenant_id = $1)",
        )
        .bind(tenant_id(t))
        .fetch_one(&ledger_db)
        .await?;
        chains_ok &= report.intact && i64::try_from(report.records_checked)? == records;
    }
    // Each event once in the stream: ingest's deduplication (Nats-Msg-Id) held. Asked as the
    // ledger (every service may read a stream's info).
    let js = infra.secured.jetstream(nats.url(), "ledger").await?;
    let stream_messages = js
        .get_stream(billing_runtime::Subjects::new("").stream_name("WEBHOOKS"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .info()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .state
        .messages;

    // The close: one invoice each with the expected fees; a second close issues nothing.
    if scenario == Scenario::StopSmtp {
        mail.stop();
    }
    let mut invoicing_client = InvoicingServiceClient::new(client_channel(invoicing_addr)?)
        .max_decoding_message_size(64 * 1024 * 1024);
    let close = GenerateMonthlyInvoicesRequest {
        period: PERIOD.into(),
        ..Default::default()
    };
    let first = invoicing_client
        .generate_monthly_invoices(close.clone())
        .await?
        .into_inner()
        .outcomes;
    let second = invoicing_client
        .generate_monthly_invoices(close)
        .await?
        .into_inner()
        .outcomes;
    let want = expected_subtotals(&work.expected)?;
    let issued: HashMap<String, Decimal> = first
        .iter()
        .filter(|o| o.outcome() == Outcome::Issued)
        .filter_map(|o| {
            let subtotal = o.invoice.as_ref()?.subtotal.as_ref()?.amount.parse().ok()?;
            Some((o.tenant_id.clone(), subtotal))
        })
        .collect();
    let invoices_ok = issued.len() == args.tenants
        && want.iter().all(|(t, sum)| issued.get(t) == Some(sum))
        && second.len() == args.tenants
        && second.iter().all(|o| o.outcome() == Outcome::AlreadyIssued);
    if !invoices_ok {
        notes.push(format!(
            "close: {} issued of {}, second close {:?}",
            issued.len(),
            args.tenants,
            second.iter().map(|o| o.outcome()).collect::<Vec<_>>()
        ));
    }

    // Each invoice email once.
    if scenario == Scenario::StopSmtp {
        // Down until the notifier has met the outage, or the scenario proves nothing.
        let deadline = Instant::now() + Duration::from_secs(60);
        while deferred_emails(notifier_addr).await? == 0 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the notifier never tried to send while SMTP was down"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(DOWN_FOR).await;
        notes.push(format!(
            "{} email attempts deferred while SMTP was down",
            deferred_emails(notifier_addr).await?
        ));
        mail.restart().await?;
    }
    let mail_healed = Instant::now();
    let addresses: Vec<String> = (1..=args.tenants)
        .map(|t| format!("{}@example.test", tenant_id(t)))
        .collect();
    let count_per_tenant = |mail: &MailSink| {
        addresses
            .iter()
            .map(|a| {
                mail.mails()
                    .iter()
                    .filter(|m| m.rcpt_to.iter().any(|r| r == a))
                    .count()
            })
            .collect::<Vec<_>>()
    };
    let mail_deadline = Instant::now() + Duration::from_secs(120);
    while count_per_tenant(&mail).contains(&0) && Instant::now() < mail_deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if scenario == Scenario::StopSmtp {
        recovered_in = mail_healed.elapsed();
    }
    // Time for a wrongly repeated email to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let counts = count_per_tenant(&mail);
    let emails_ok = counts.iter().all(|&c| c == 1);
    if !emails_ok {
        notes.push(format!("emails per tenant: {counts:?}"));
    }

    notes.push(format!(
        "the services' database sessions: {}",
        common::service_sessions(&ledger_db).await?
    ));
    let row = Row {
        scenario,
        sent: sent.accepted.load(Ordering::Relaxed),
        events: work.events.len(),
        nats_duplicates: sent
            .accepted
            .load(Ordering::Relaxed)
            .saturating_sub(stream_messages),
        stream_messages,
        given_up: sent.given_up.load(Ordering::Relaxed),
        retried: sent.retried.load(Ordering::Relaxed),
        compared,
        chains_ok,
        invoices_ok,
        emails_ok,
        recovered_in,
        caught_up_in,
        notes,
    };
    for s in ingests
        .iter_mut()
        .chain(ledgers.iter_mut())
        .chain([&mut invoicing, &mut notifier])
    {
        s.kill().await?;
    }
    nats.stop().await?;
    ledger_db.close().await;
    database.drop_database().await;
    Ok(row)
}

fn print_table(args: &Args, secured: &Secured, rows: &[Row], elapsed: Duration, load_before: &str) {
    println!(
        "# fault injection, {}",
        Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    println!(
        "{} tenants x {} bookings, some changed or cancelled, each webhook delivered 1-3 times \
         in shuffled order through 2 ingest replicas (round-robin, a failed request retried on \
         the other); 2 ledger replicas; the fault strikes at {:.0}% of the deliveries for {} s. \
         {:.0} s in all.\n",
        args.tenants,
        args.bookings,
        STRIKE_AT * 100.0,
        DOWN_FOR.as_secs(),
        elapsed.as_secs_f64()
    );
    println!(
        "Security: {} (PostgreSQL: {}). Load average (1, 5, 15 min) before: {load_before}; \
         after: {}.\n",
        match secured.level {
            Security::Off => "off (--security off): anonymous NATS, the database's owner, plain \
                              connections, unkeyed chain"
                .to_string(),
            level => format!(
                "auth on{}: each service logs in to NATS as its own user \
                 (deploy/nats/nats-server.conf's permissions) and to PostgreSQL as its own \
                 runtime role (after the owner's --migrate-only), the ledger's chain keyed{}",
                if level == Security::Tls {
                    ", as in production and by default (--security tls)"
                } else {
                    " (--security auth)"
                },
                if level == Security::Tls {
                    "; NATS and PostgreSQL over TLS (a CA made for the run, certificates verified)"
                } else {
                    ""
                }
            ),
        },
        secured.postgres_tls(),
        common::load_average()
    );
    println!(
        "| scenario | deliveries accepted | events | in the stream | duplicates dropped by \
         NATS | by the ledger | bookings stored | lost | wrong | applied twice | retried \
         requests | chains | invoices once, right total | emails once | ledger complete after \
         last delivery | time to recover |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|");
    for r in rows {
        let c = &r.compared;
        let ok = |b: bool| if b { "ok" } else { "FAILED" };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s | {} |",
            r.scenario.describe(),
            r.sent,
            r.events,
            r.stream_messages,
            r.nats_duplicates,
            c.ledger_duplicates,
            c.stored,
            c.lost + usize::try_from(r.given_up).unwrap_or(usize::MAX),
            c.wrong + c.extra,
            c.applied_twice,
            r.retried,
            ok(r.chains_ok),
            ok(r.invoices_ok),
            ok(r.emails_ok),
            r.caught_up_in.as_secs_f64(),
            if r.scenario == Scenario::Baseline {
                "-".to_string()
            } else {
                format!("{:.1} s", r.recovered_in.as_secs_f64())
            }
        );
    }
    for r in rows.iter().filter(|r| !r.notes.is_empty()) {
        println!("\n{}: {}", r.scenario.describe(), r.notes.join("; "));
    }
    println!(
        "\nledger complete after last delivery: from the sender's last accepted delivery to the \
         ledger holding every expected booking in its last state. time to recover: from the \
         fault healing (the part back up) to the same point, deliveries still arriving \
         meanwhile; for SMTP, from the mail server's return to every invoice email delivered."
    );
}
