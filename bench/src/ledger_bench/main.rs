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
//! `common::Security`) is measured with the ledger keeping no client details and with them
//! sealed (`--encryption`, default off and on: see `common::Encryption`), each `--rounds`
//! times, the levels interleaved (off, auth, tls, auth, tls, off, …) and each level's two
//! encryption settings side by side, alternating which goes first, so that other load on the
//! machine falls on each alike; medians are reported with the cost of each level against the
//! first and of client encryption against none (issue 19's goal: at least 0.9 of the rate).
//!
//! `--nats r1,r3` measures each of them on a NATS server of its own (R1 streams) and on a
//! fresh 3-node cluster (`scripts/nats-cluster.sh`, R3 streams; security off only), interleaved
//! the same way, with R3 against R1 in the report.
//!
//! Every booking names its client (name, email, phone); one client per three bookings of a
//! tenant, so the ledger both makes clients' keys and finds them again (see `measure::client`).
//!
//! Run it with `bench/run.sh ledger`.

// The benchmarks' shared helpers, not all of which this one uses.
#[allow(dead_code)]
#[path = "../common.rs"]
mod common;
// CPU time per process; this benchmark uses `cpu_time`.
#[allow(dead_code)]
#[path = "../cpu.rs"]
mod cpu;
#[path = "../summary.rs"]
mod summary;

// This benchmark's parts: the command line and the rounds are here.
mod measure;
mod nats;
mod report;

use anyhow::Context as _;
use chrono::Utc;
use clap::Parser;
use common::{Encryption, Secured, Security};

use crate::measure::measure;
use crate::nats::{Cluster, Nats};
use crate::report::report;

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
    /// Client encryption settings to measure at each level: `off`, the ledger without a
    /// keyring (it keeps no client details); `on`, with a keyring made for the run (each
    /// booking's client details sealed). On is compared with off.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "off,on")]
    encryption: Vec<Encryption>,
    /// Where the streams are kept: `r1`, a NATS server of each measurement's own; `r3`, a
    /// fresh 3-node cluster on loopback (scripts/nats-cluster.sh, reset before each
    /// measurement) with three replicas, security off only. R3 is compared with R1.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "r1")]
    nats: Vec<Nats>,
    /// The cluster's first client port (`NATS_CLUSTER_BASE`; it uses three from there, and
    /// route and monitoring ports 2000 and 4000 above), away from the test suite's 14222.
    #[arg(long, default_value_t = 24222)]
    nats_cluster_base: u16,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        !args.security.is_empty()
            && !args.encryption.is_empty()
            && !args.nats.is_empty()
            && args.rounds > 0,
        "nothing to measure"
    );
    nats::check(&args.nats, &args.security)?;
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
    // One keyring for the run's measurements with encryption on, random keys.
    let keyring = dir.join("client-keyring.json");
    if args.encryption.contains(&Encryption::On) {
        common::write_client_keyring(&keyring)?;
    }
    let postgres_certificate = prepare_server(&args).await?;
    let cluster = Cluster::new(&dir, args.nats_cluster_base);
    // Level-major, then NATS, then encryption: variant (i, k, j) is at
    // (i * servers + k) * encryptions + j.
    let mut variants = Vec::new();
    for &level in &args.security {
        let mut secured = Secured::prepare(level, &dir)?;
        if let Some(certificate) = &postgres_certificate {
            secured.trust_postgres_certificate(certificate.clone());
        }
        for &nats in &args.nats {
            for &encryption in &args.encryption {
                variants.push(Variant {
                    secured: secured.clone(),
                    nats,
                    encryption,
                    results: Vec::new(),
                });
            }
        }
    }

    // Round r starts at level r (mod the levels), at NATS setting r and at encryption setting
    // r (mod the settings): each level and each setting runs first, second, … alike, and a
    // level's settings run one after the other.
    let (levels, servers, settings) = (args.security.len(), args.nats.len(), args.encryption.len());
    for round in 0..args.rounds {
        for i in 0..levels {
            for (k, j) in (0..servers).flat_map(|k| (0..settings).map(move |j| (k, j))) {
                let index = ((round + i) % levels * servers + (round + k) % servers) * settings
                    + (round + j) % settings;
                let variant = &mut variants[index];
                let tag = format!(
                    "{}_{:?}_{:?}_{:?}_{round}",
                    started.timestamp(),
                    variant.secured.level,
                    variant.nats,
                    variant.encryption
                )
                .to_lowercase();
                let keyring = (variant.encryption == Encryption::On).then_some(keyring.as_path());
                // A failed measurement keeps the run directory, with its logs.
                let measured = measure(
                    &args,
                    &variant.secured,
                    variant.nats,
                    &cluster,
                    keyring,
                    &tenants_file,
                    &dir.join(&tag),
                    &tag,
                )
                .await
                .with_context(|| format!("{tag} (logs in {})", dir.join(&tag).display()))?;
                eprintln!(
                    "round {}: {}: drained {:.0} bookings/s, steady p50 {:.1} ms, p99 {:.1} ms, \
                     redelivered {} in the drain, {} in all (load {})",
                    round + 1,
                    variant.label(),
                    measured.drained_per_sec,
                    measured.p50,
                    measured.p99,
                    measured.redelivered[0],
                    measured.redelivered[1],
                    common::load_average()
                );
                let seconds: Vec<String> = measured
                    .drain_seconds
                    .iter()
                    .map(|(rows, commits)| format!("{rows}/{commits}"))
                    .collect();
                eprintln!(
                    "  the drain second by second (bookings/commits): {}",
                    seconds.join(" ")
                );
                variant.results.push(measured);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    report(&args, &variants, started, &load_before)
}

/// What one measurement runs with, and its rounds' figures.
pub struct Variant {
    pub secured: Secured,
    pub nats: Nats,
    pub encryption: Encryption,
    pub results: Vec<measure::Measured>,
}

impl Variant {
    /// Its level, its NATS when R3 (R1 is the default), its encryption.
    pub fn label(&self) -> String {
        let nats = match self.nats {
            Nats::R1 => String::new(),
            Nats::R3 => format!(", {}", self.nats.label()),
        };
        format!(
            "{}{nats}, {}",
            self.secured.level.label(),
            self.encryption.label()
        )
    }
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
