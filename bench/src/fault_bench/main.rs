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
//! "Applied twice" is the workload's verdict, not the ledger's: once the ledger's consumer has
//! drained (nothing pending, nothing awaiting an ack), each booking's price revisions and status
//! history rows are matched to the workload's own events of that booking (each at most once, no
//! other event's, no more than its events can make). Dead letters are counted (the workload has
//! none to make). Each fault prints its evidence: which node it struck and what it led, or, for
//! the ledger, that it died between a batch's commit and its acks.
//!
//! `--cluster`: on a fresh 3-node NATS cluster per scenario (`scripts/nats-cluster.sh`, every
//! stream R3), with the cluster's scenarios: the WEBHOOKS stream's leader killed, the ledger
//! consumer's leader frozen for 20 s, every node restarted in turn, the WEBHOOKS leader cut off
//! the network for 20 s (nftables: every packet of its connections dropped).
//!
//! `vanish-postgres` drops every packet of the services' PostgreSQL connections for the rest of
//! the scenario, while new connections reach the server, and the server ends those sessions
//! (their goodbyes dropped too): what a failed-over primary looks like when it goes away without
//! closing anything and a promoted standby answers at the same address. The services must notice
//! (TCP keepalive and `TCP_USER_TIMEOUT`, vendor/README.md) and carry on over new connections.
//! `partition-postgres` is the same cut with the server's sessions left to the server's own
//! keepalive (tcp_keepalives_*, tcp_user_timeout): their open transactions hold their locks
//! until it ends them.
//!
//! Prints one table row per scenario; exits non-zero if anything was lost, doubled or wrong.
//!   bench/run.sh faults [--tenants 20] [--bookings 1000] [--scenarios kill-ledger,restart-nats]
//!                       [--security off|auth|tls] [--cluster]
#![allow(clippy::print_stdout)]

// The other benchmarks' helpers; this one starts its services its own way (to kill them).
#[allow(dead_code)]
#[path = "../common.rs"]
mod common;
#[path = "../ready.rs"]
mod ready;

// This benchmark's parts: the scenario list, the run and the table are here.
mod checks;
mod cluster;
mod netcut;
mod report;
mod scenario;
mod sender;
mod servers;
mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use common::{Secured, Security};

use crate::report::{Row, print_table};
use crate::scenario::run_scenario;
use crate::servers::{OwnPostgres, free_addr};
use crate::workload::tenant_id;

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
    /// The services' PostgreSQL connections go silent for good (their packets dropped) and the
    /// server ends their sessions unheard, as when a primary vanishes and a promoted standby
    /// answers at the same address; new connections reach the server.
    VanishPostgres,
    /// The services' PostgreSQL connections go silent for good while the server keeps their
    /// sessions (a network partition between the services and a live primary).
    PartitionPostgres,
    KillIngest,
    StopSmtp,
    /// Cluster only.
    KillWebhooksLeader,
    /// Cluster only.
    FreezeConsumerLeader,
    /// Cluster only.
    RollingRestart,
    /// Cluster only: the WEBHOOKS leader's packets dropped for 20 s (nftables).
    CutWebhooksLeader,
}

impl Scenario {
    fn describe(self) -> &'static str {
        match self {
            Scenario::Baseline => "no fault",
            Scenario::KillLedger => "a ledger replica dies between commit and ack",
            Scenario::RestartNats => "restart NATS",
            Scenario::RestartPostgres => "restart PostgreSQL",
            Scenario::VanishPostgres => "PostgreSQL's connections go silent (a vanished primary)",
            Scenario::PartitionPostgres => {
                "PostgreSQL's connections go silent, its sessions kept (a partition)"
            }
            Scenario::KillIngest => "kill -9 an ingest replica",
            Scenario::StopSmtp => "SMTP down during invoice emails",
            Scenario::KillWebhooksLeader => "kill -9 the WEBHOOKS stream's leader",
            Scenario::FreezeConsumerLeader => "freeze the ledger consumer's leader 20 s",
            Scenario::RollingRestart => "rolling restart of the 3 nodes",
            Scenario::CutWebhooksLeader => "cut the WEBHOOKS leader off the network 20 s",
        }
    }

    fn cluster_only(self) -> bool {
        matches!(
            self,
            Scenario::KillWebhooksLeader
                | Scenario::FreezeConsumerLeader
                | Scenario::RollingRestart
                | Scenario::CutWebhooksLeader
        )
    }

    /// The default list: everything one server can show, or what a cluster adds.
    fn defaults(cluster: bool) -> Vec<Scenario> {
        if cluster {
            vec![
                Scenario::Baseline,
                Scenario::KillWebhooksLeader,
                Scenario::FreezeConsumerLeader,
                Scenario::RollingRestart,
                Scenario::CutWebhooksLeader,
            ]
        } else {
            Scenario::value_variants()
                .iter()
                .copied()
                .filter(|s| !s.cluster_only())
                .collect()
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
    /// How the services are secured; by default as in production (tls), and off with
    /// `--cluster`, whose servers have no users and no TLS.
    #[arg(long, value_enum)]
    security: Option<Security>,
    /// On a fresh 3-node NATS cluster per scenario (scripts/nats-cluster.sh), every stream R3.
    #[arg(long)]
    cluster: bool,
    /// The cluster's first client port (routes +2000, monitoring +4000), away from the test
    /// suite's 14222 and ledger-bench's 24222.
    #[arg(long, default_value_t = 25222)]
    cluster_base: u16,
}

/// What the scenarios share: the run directory, the PostgreSQL server, the security set-up.
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
        args.scenarios = Scenario::defaults(args.cluster);
    }
    let security = args.security.unwrap_or(if args.cluster {
        Security::Off
    } else {
        Security::Tls
    });
    if args.cluster {
        anyhow::ensure!(
            security == Security::Off,
            "--cluster runs on scripts/nats-cluster.sh's servers, which have no users and no TLS: \
             use it with --security off (the default with --cluster)"
        );
        anyhow::ensure!(
            !args.scenarios.contains(&Scenario::RestartNats),
            "restart-nats restarts a single server; on the cluster use rolling-restart"
        );
    } else if let Some(s) = args.scenarios.iter().find(|s| s.cluster_only()) {
        anyhow::bail!("{s:?} needs --cluster");
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
    let secured = Secured::prepare(security, &dir)?;
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
        args.cluster,
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
