//! ingest-bench: how close ingest comes to a bare axum endpoint that only checks the HMAC, and to
//! the least code that keeps ingest's contract (the contract ceiling: HMAC, the JetStream publish
//! awaiting its ack, 202), with its security off and on, in the same run.
//!
//! Starts both ceiling servers (the contract ceiling on a NATS server of its own) and, per
//! security level (`--security`, default off, auth and
//! auth + TLS: see `common::Security`), a NATS server of its own and a release `ingest` logged in
//! to it, as child processes. Drives them all with the same genuine signed SimplyBook and Stripe
//! requests, in alternating rounds (ceiling, then each level, the levels' order rotating), then
//! each ingest and the contract ceiling (after the levels in even rounds, before them in odd
//! ones) at half the slowest level's rate for latency, again in rounds (`--half-rate-secs` for a
//! long run of the tail). Prints accepted
//! requests per second, p50/p99 latency, the ratio to the ceiling, the cost of each level against
//! the first, and checks that each stream holds exactly as many messages as its ingest accepted.
//! Then times the signature amplification attack against a genuine request (`amplification`) on
//! the last level's ingest. Run it with `bench/run.sh`.

mod amplification;
mod ceiling;
// The services' shared helpers; this benchmark uses the security ones.
#[allow(dead_code)]
mod common;
mod cpu;
mod load;
mod payloads;
mod ready;
mod summary;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::Context;
use billing_runtime::Subjects;
use clap::Parser;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::{OwnNats, Secured, Security};
use crate::load::{Outcome, Plan};
use crate::payloads::{Payloads, SIMPLYBOOK_SECRET, STRIPE_SECRET, TENANT};

#[derive(Parser)]
#[command(
    name = "ingest-bench",
    about = "ingest throughput and latency against its ceiling"
)]
enum Cli {
    /// Run the benchmark (the default of `bench/run.sh`).
    Run(RunArgs),
    /// Serve the bare HMAC-only endpoint (started by `run`).
    Ceiling,
    /// Serve the contract ceiling on the NATS server at `--nats-url` (started by `run`).
    ContractCeiling {
        #[arg(long)]
        nats_url: String,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Seconds per measured run.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Seconds per half-rate run, for a long run of the latency tail (default: --duration-secs).
    #[arg(long)]
    half_rate_secs: Option<u64>,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Threads of the load generator. One, like `wrk -t1` in the machine's reference probe: the
    /// generator shares the cores with the server and NATS, and more threads take cycles from
    /// them.
    #[arg(long, default_value_t = 1)]
    generator_threads: usize,
    /// Ceiling and each level's ingest are measured alternately this many times (and each
    /// ingest as often at half rate); medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Security levels to measure, compared with the first.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "off,auth,tls"
    )]
    security: Vec<Security>,
    /// The ingest binary; defaults to the one next to this executable.
    #[arg(long)]
    ingest_bin: Option<PathBuf>,
    /// Also measure ingest (security off) on a fresh 3-node NATS cluster with R3 streams
    /// (scripts/nats-cluster.sh, client ports from --r3-base), in the same rounds as the rest:
    /// R1 against R3 in one run.
    #[arg(long)]
    r3: bool,
    /// The R3 cluster's first client port (routes +2000, monitoring +4000).
    #[arg(long, default_value_t = 26222)]
    r3_base: u16,
    /// Writes each half-rate run's latency second by second (requests due, p50, p99, max, with
    /// the wall-clock second to set beside `vmstat -t 1`) to a file in this directory:
    /// `<server>-round<n>.tsv`.
    #[arg(long)]
    timeline_dir: Option<PathBuf>,
    /// Which servers run at half rate: both (ingest's levels and the contract ceiling), or
    /// only one side (a shorter run when comparing variants of one).
    #[arg(long, value_enum, default_value = "both")]
    half_rate_only: HalfRate,
    /// The offered rate of the half-rate runs in requests per second, instead of half the
    /// slowest level's full speed: the same rate in every run, whatever the machine's load.
    #[arg(long)]
    half_rate: Option<f64>,
    /// Requests per case of the amplification comparison (0: skip it).
    #[arg(long, default_value_t = 200)]
    amplification_requests: usize,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse() {
        // The ceiling server runs like ingest: tokio's default multi-threaded runtime.
        Cli::Ceiling => tokio::runtime::Runtime::new()?.block_on(ceiling::serve()),
        Cli::ContractCeiling { nats_url } => {
            tokio::runtime::Runtime::new()?.block_on(ceiling::serve_contract(&nats_url))
        }
        Cli::Run(args) => {
            let runtime = if args.generator_threads <= 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(args.generator_threads)
                    .enable_all()
                    .build()?
            };
            runtime.block_on(run(args))
        }
    }
}

/// The servers measured at half rate.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum HalfRate {
    Both,
    Ingest,
    Contract,
}

/// A server under test and the processes its runs are charged to.
struct Target {
    addr: SocketAddr,
    processes: cpu::Processes,
}

impl Target {
    async fn measure(
        &self,
        payloads: &Arc<Payloads>,
        counter: &Arc<AtomicU64>,
        plan: Plan,
    ) -> anyhow::Result<Measured> {
        let before = self.processes.usage();
        let outcome = load::run(self.addr, payloads.clone(), counter.clone(), plan).await?;
        let cpu = self.processes.usage().since(&before);
        Ok(Measured { outcome, cpu })
    }
}

/// One run's outcome and the CPU time each process spent on it.
struct Measured {
    outcome: Outcome,
    cpu: cpu::Usage,
}

impl Measured {
    /// CPU microseconds per accepted request: generator, server, NATS.
    fn cpu_per_request(&self) -> [f64; 3] {
        let n = self.outcome.count(202).max(1) as f64;
        let us = |d: Duration| d.as_secs_f64() * 1e6 / n;
        [
            us(self.cpu.generator),
            us(self.cpu.server),
            us(self.cpu.nats),
        ]
    }
}

/// Where a level's ingest publishes: a NATS server of its own (R1 streams) or a 3-node cluster
/// (R3 streams), stopped when the level is dropped.
enum LevelNats {
    Own(Box<OwnNats>),
    Cluster(common::LocalCluster),
}

/// One security level's NATS server and ingest, and what its ingest accepted.
struct Level {
    /// The security level, and "R3" when its streams are on the cluster.
    label: String,
    secured: Secured,
    _nats: LevelNats,
    nats_url: String,
    _ingest: Child,
    target: Target,
    accepted: u64,
    failures: u64,
    full_speed: Vec<Measured>,
    at_half: Vec<Measured>,
}

impl Level {
    fn new(
        label: String,
        secured: Secured,
        nats: LevelNats,
        ingest: Child,
        target: Target,
    ) -> Self {
        let nats_url = match &nats {
            LevelNats::Own(own) => own.url().to_string(),
            LevelNats::Cluster(cluster) => cluster.urls().to_string(),
        };
        Level {
            label,
            secured,
            nats_url,
            _nats: nats,
            _ingest: ingest,
            target,
            accepted: 0,
            failures: 0,
            full_speed: Vec::new(),
            at_half: Vec::new(),
        }
    }

    fn tally(&mut self, m: &Measured) {
        self.accepted += m.outcome.count(202);
        self.failures += m.outcome.failures();
    }
}

/// The run whose `key` is the median, out of `runs` (removed from it); an empty one (no
/// requests) when there was none (`--half-rate-only`).
fn median_run(runs: &mut Vec<Measured>, key: impl Fn(&Measured) -> f64) -> Measured {
    if runs.is_empty() {
        return Measured {
            outcome: Outcome::default(),
            cpu: cpu::Usage::default(),
        };
    }
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    runs.swap_remove(runs.len() / 2)
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.security.is_empty() && args.rounds > 0,
        "nothing to measure"
    );
    let started = chrono::Utc::now();
    let load_before = common::load_average();
    let namespace = format!("bench{}", started.timestamp());
    let dir = std::env::temp_dir().join(format!("ingest-bench-{namespace}"));
    std::fs::create_dir_all(&dir)?;
    let tenants = dir.join("tenants.json");
    std::fs::write(
        &tenants,
        serde_json::json!({"tenants": [{
            "id": TENANT, "name": "Bench", "billing_email": "bench@example.test",
            "currency": "AUD", "webhook_secrets": [SIMPLYBOOK_SECRET]
        }]})
        .to_string(),
    )?;

    let (ceiling_child, ceiling_addr) = start_ceiling(&[]).await?;
    // The contract ceiling publishes to a NATS server of its own, anonymous like level `off`.
    let contract_dir = dir.join("contract");
    std::fs::create_dir_all(&contract_dir)?;
    let contract_secured = Secured::prepare(Security::Off, &contract_dir)?;
    let contract_nats = OwnNats::start(&contract_secured, &contract_dir).await?;
    let (contract_child, contract_addr) =
        start_ceiling(&["contract-ceiling", "--nats-url", contract_nats.url()]).await?;
    let contract = Target {
        addr: contract_addr,
        processes: cpu::Processes::new(contract_child.id().unwrap_or(0))
            .with_nats(contract_nats.pid().into_iter().collect()),
    };
    let mut contract_accepted = 0;
    let ingest_bin = match &args.ingest_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("ingest"),
    };
    let ceiling = Target {
        addr: ceiling_addr,
        processes: cpu::Processes::new(ceiling_child.id().unwrap_or(0)).with_nats(Vec::new()),
    };
    let mut levels = Vec::new();
    for &level in &args.security {
        let secured = Secured::prepare(level, &dir)?;
        let level_dir = dir.join(format!("{level:?}").to_lowercase());
        std::fs::create_dir_all(&level_dir)?;
        let nats = OwnNats::start(&secured, &level_dir).await?;
        let (child, addr) =
            start_ingest(&ingest_bin, &secured, nats.url(), 1, &tenants, &level_dir).await?;
        let processes = cpu::Processes::new(child.id().unwrap_or(0))
            .with_nats(nats.pid().into_iter().collect());
        levels.push(Level::new(
            level.label().to_string(),
            secured,
            LevelNats::Own(Box::new(nats)),
            child,
            Target { addr, processes },
        ));
    }

    if args.r3 {
        // Second, right after the first level, against which its cost is stated.
        let secured = Secured::prepare(Security::Off, &dir)?;
        let level_dir = dir.join("off-r3");
        std::fs::create_dir_all(&level_dir)?;
        let mut cluster = common::LocalCluster::new(&level_dir, args.r3_base);
        cluster.start_fresh().await?;
        let (child, addr) = start_ingest(
            &ingest_bin,
            &secured,
            cluster.urls(),
            3,
            &tenants,
            &level_dir,
        )
        .await?;
        let processes = cpu::Processes::new(child.id().unwrap_or(0)).with_nats(cluster.pids());
        levels.insert(
            1.min(levels.len()),
            Level::new(
                format!("{} R3", Security::Off.label()),
                secured,
                LevelNats::Cluster(cluster),
                child,
                Target { addr, processes },
            ),
        );
    }

    let payloads = Arc::new(Payloads::new(&namespace)?);
    let counter = Arc::new(AtomicU64::new(0));
    let full_speed = Plan {
        connections: args.connections,
        duration: Duration::from_secs(args.duration_secs),
        rate: None,
    };

    // Warm each up (connections, caches, JetStream's file) before measuring.
    let warm_up = Plan {
        duration: Duration::from_secs(2),
        ..full_speed
    };
    ceiling.measure(&payloads, &counter, warm_up).await?;
    contract_accepted += contract
        .measure(&payloads, &counter, warm_up)
        .await?
        .outcome
        .count(202);
    // Every request an ingest accepted, warm-up included, must be in its stream.
    for level in &mut levels {
        let m = level.target.measure(&payloads, &counter, warm_up).await?;
        level.tally(&m);
    }

    // Round r starts at level r (mod the levels), so each level runs first, second, … alike.
    let mut ceiling_runs = Vec::new();
    let mut contract_runs = Vec::new();
    let mut contract_failures = 0;
    let n = levels.len();
    for round in 0..args.rounds {
        let c = ceiling.measure(&payloads, &counter, full_speed).await?;
        let k = contract.measure(&payloads, &counter, full_speed).await?;
        let mut line = format!(
            "round {}: ceiling {:.0} req/s, contract ceiling {:.0} req/s",
            round + 1,
            c.outcome.accepted_per_sec(),
            k.outcome.accepted_per_sec()
        );
        ceiling_runs.push(c);
        contract_accepted += k.outcome.count(202);
        contract_failures += k.outcome.failures();
        contract_runs.push(k);
        for i in 0..n {
            let level = &mut levels[(round + i) % n];
            let m = level
                .target
                .measure(&payloads, &counter, full_speed)
                .await?;
            level.tally(&m);
            line += &format!(
                ", {} {:.0} req/s",
                level.label.as_str(),
                m.outcome.accepted_per_sec()
            );
            level.full_speed.push(m);
        }
        eprintln!("{line} (load {})", common::load_average());
    }
    let ceiling_rate = median(ceiling_runs.iter().map(|m| m.outcome.accepted_per_sec()));
    let contract_rate = median(contract_runs.iter().map(|m| m.outcome.accepted_per_sec()));
    let rates: Vec<f64> = levels
        .iter()
        .map(|l| median(l.full_speed.iter().map(|m| m.outcome.accepted_per_sec())))
        .collect();
    // Latency at the same offered rate for every level: half the slowest one's.
    let half_rate = args
        .half_rate
        .unwrap_or_else(|| rates.iter().copied().fold(f64::INFINITY, f64::min) / 2.0);
    let half = Plan {
        rate: Some(half_rate),
        duration: Duration::from_secs(args.half_rate_secs.unwrap_or(args.duration_secs)),
        ..full_speed
    };
    // The contract ceiling at the same rate too: whatever tail it shows is not ingest's. It runs
    // after the levels in even rounds and before them in odd ones, so neither side always meets
    // the other's writeback.
    let mut contract_half = Vec::new();
    if let Some(dir) = &args.timeline_dir {
        std::fs::create_dir_all(dir)?;
    }
    let timeline = |name: &str, round: usize, m: &Measured| -> anyhow::Result<()> {
        if let Some(dir) = &args.timeline_dir {
            let file = dir.join(format!("{name}-round{}.tsv", round + 1));
            std::fs::write(&file, m.outcome.timeline_tsv())?;
            eprintln!("timeline: {}", file.display());
        }
        Ok(())
    };
    let (with_ingest, with_contract) = (
        args.half_rate_only != HalfRate::Contract,
        args.half_rate_only != HalfRate::Ingest,
    );
    for round in 0..args.rounds {
        if round % 2 == 1 && with_contract {
            let k = contract.measure(&payloads, &counter, half).await?;
            timeline("contract", round, &k)?;
            contract_half.push(k);
        }
        for i in (0..n).filter(|_| with_ingest) {
            let level = &mut levels[(round + i) % n];
            let m = level.target.measure(&payloads, &counter, half).await?;
            let label: String = level
                .label
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            let name = format!("ingest-{label}");
            timeline(&name, round, &m)?;
            level.tally(&m);
            level.at_half.push(m);
        }
        if round % 2 == 0 && with_contract {
            let k = contract.measure(&payloads, &counter, half).await?;
            timeline("contract", round, &k)?;
            contract_half.push(k);
        }
    }
    // Every round's requests at half rate together, per server: the rounds alternate, so both
    // sides meet the machine's other work alike.
    if args.rounds > 1 {
        let pooled =
            |runs: &[Measured]| load::pooled_percentile_ms(runs.iter().map(|m| &m.outcome), 99.0);
        if with_contract {
            eprintln!(
                "half rate, all rounds: contract ceiling p99 {:.2} ms",
                pooled(&contract_half)
            );
        }
        for level in levels.iter().filter(|_| with_ingest) {
            eprintln!(
                "half rate, all rounds: ingest {} p99 {:.2} ms",
                level.label,
                pooled(&level.at_half)
            );
        }
    }
    for k in &contract_half {
        contract_accepted += k.outcome.count(202);
        contract_failures += k.outcome.failures();
    }
    let ceiling_run = median_run(&mut ceiling_runs, |m| m.outcome.accepted_per_sec());
    let contract_run = median_run(&mut contract_runs, |m| m.outcome.accepted_per_sec());

    let amplification = match levels.last_mut() {
        Some(level) if args.amplification_requests > 0 => {
            let comparison = amplification::run(
                level.target.addr,
                &level.target.processes,
                &namespace,
                args.amplification_requests,
            )
            .await?;
            level.accepted += comparison.accepted;
            Some(comparison)
        }
        _ => None,
    };
    let contract_stored = stream_messages(&contract_secured, contract_nats.url()).await?;
    let mut stored = Vec::new();
    for level in &levels {
        stored.push(stream_messages(&level.secured, &level.nats_url).await?);
    }

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# ingest benchmark, {}",
        started.format("%Y-%m-%d %H:%M UTC")
    )?;
    writeln!(
        out,
        "{} cores shared by the load generator ({} thread), the server and NATS JetStream (file \
         storage, a server of its own per security level); {} keep-alive connections; {} s per \
         run ({} s at half rate); medians of {} rounds, the ceiling and the levels alternating; \
         requests alternate \
         signed SimplyBook bookings (~1.1 KB) and Stripe events (~1.0 KB). NATS server: {}. Load \
         average (1, 5, 15 min) before: {load_before}; after: {}.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.generator_threads,
        args.connections,
        args.duration_secs,
        args.half_rate_secs.unwrap_or(args.duration_secs),
        args.rounds,
        common::OwnNats::server_version(),
        common::load_average()
    )?;
    writeln!(
        out,
        "| run | accepted req/s | p50 ms | p99 ms | non-2xx | CPU µs/req: generator | server | nats |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    let row = |out: &mut std::io::StdoutLock<'_>, name: &str, rate: f64, m: &Measured| {
        let [generator, server, nats] = m.cpu_per_request();
        writeln!(
            out,
            "| {name} | {rate:.0} | {:.2} | {:.2} | {} | {generator:.1} | {server:.1} | {nats:.1} |",
            m.outcome.percentile_ms(50.0),
            m.outcome.percentile_ms(99.0),
            m.outcome.failures()
        )
    };
    row(
        &mut out,
        "ceiling: bare axum + HMAC, full speed",
        ceiling_rate,
        &ceiling_run,
    )?;
    row(
        &mut out,
        "contract ceiling: axum + HMAC + JetStream publish awaiting the ack, full speed",
        contract_rate,
        &contract_run,
    )?;
    // CPU per accepted request at full speed, each process's median over the rounds: [ingest,
    // NATS], steadier than one round's.
    let cpu: Vec<[f64; 2]> = levels
        .iter()
        .map(|l| {
            let of = |i: usize| median(l.full_speed.iter().map(|m| m.cpu_per_request()[i]));
            [of(1), of(2)]
        })
        .collect();
    // Each level's median round at full speed, then at half rate (median by p99).
    for (level, rate) in levels.iter_mut().zip(&rates) {
        let run = median_run(&mut level.full_speed, |m| m.outcome.accepted_per_sec());
        row(
            &mut out,
            &format!("ingest, full speed, {}", level.label.as_str()),
            *rate,
            &run,
        )?;
    }
    let contract_half_run = median_run(&mut contract_half, |m| m.outcome.percentile_ms(99.0));
    if with_contract {
        row(
            &mut out,
            &format!("contract ceiling at {half_rate:.0} req/s offered"),
            contract_half_run.outcome.accepted_per_sec(),
            &contract_half_run,
        )?;
    }
    let mut half_runs = Vec::new();
    for level in levels.iter_mut() {
        let run = median_run(&mut level.at_half, |m| m.outcome.percentile_ms(99.0));
        if !with_ingest {
            half_runs.push(run);
            continue;
        }
        row(
            &mut out,
            &format!(
                "ingest at {half_rate:.0} req/s offered, {}",
                level.label.as_str()
            ),
            run.outcome.accepted_per_sec(),
            &run,
        )?;
        half_runs.push(run);
    }
    writeln!(out)?;
    for ((level, rate), at_half) in levels.iter().zip(&rates).zip(&half_runs) {
        let ratio = rate / ceiling_rate;
        let contract_ratio = rate / contract_rate;
        let p99_half = at_half.outcome.percentile_ms(99.0);
        writeln!(
            out,
            "{}: ingest / ceiling {ratio:.2} (goal >= 0.50) {}; ingest / contract ceiling \
             {contract_ratio:.2} (goal >= 0.90) {}; p99 at {half_rate:.0} req/s {p99_half:.2} ms \
             (goal <= 25 ms) {}",
            level.label.as_str(),
            verdict(ratio >= 0.5),
            verdict(contract_ratio >= 0.9),
            verdict(p99_half <= 25.0)
        )?;
    }
    for i in 1..levels.len() {
        writeln!(
            out,
            "cost of {} against {}: throughput x{:.2} ({:+.1}%); CPU per accepted request at \
             full speed (median of the rounds) {:.1} → {:.1} µs in ingest ({:+.1}), {:.1} → \
             {:.1} µs in NATS ({:+.1}); p99 at {half_rate:.0} req/s {:+.2} ms",
            levels[i].label.as_str(),
            levels[0].label.as_str(),
            rates[i] / rates[0],
            (rates[i] / rates[0] - 1.0) * 100.0,
            cpu[0][0],
            cpu[i][0],
            cpu[i][0] - cpu[0][0],
            cpu[0][1],
            cpu[i][1],
            cpu[i][1] - cpu[0][1],
            half_runs[i].outcome.percentile_ms(99.0) - half_runs[0].outcome.percentile_ms(99.0)
        )?;
    }
    writeln!(
        out,
        "contract ceiling: stream messages {contract_stored}, accepted (202): \
         {contract_accepted}, failed requests: {contract_failures} {}",
        verdict(contract_stored == contract_accepted && contract_failures == 0)
    )?;
    for (level, stored) in levels.iter().zip(&stored) {
        writeln!(
            out,
            "{}: stream messages {stored}, accepted (202): {}, failed requests: {} {}",
            level.label.as_str(),
            level.accepted,
            level.failures,
            verdict(*stored == level.accepted && level.failures == 0)
        )?;
    }
    writeln!(out, "\nSecurity levels: {}.", Security::explain())?;
    if let Some(comparison) = &amplification {
        writeln!(
            out,
            "\n## Signature amplification (issue 17): the attack against a genuine request\n\n\
             The same ~250 KiB booking body each time, {} requests per case, one per connection, \
             one at a time, against the same ingest ({}) in the same run.\n",
            args.amplification_requests,
            levels.last().map_or("", |l| l.label.as_str())
        )?;
        writeln!(
            out,
            "| request | answers | server CPU µs/req | median µs | p99 µs |"
        )?;
        writeln!(out, "|---|---|---:|---:|---:|")?;
        for row in &comparison.rows {
            let answers: Vec<String> = row
                .statuses
                .iter()
                .map(|(status, n)| match status {
                    0 => format!("{n} closed"),
                    s => format!("{n}× {s}"),
                })
                .collect();
            writeln!(
                out,
                "| {} | {} | {:.0} | {:.0} | {:.0} |",
                row.name,
                answers.join(", "),
                row.server_cpu_us,
                row.median_us,
                row.p99_us
            )?;
        }
        let worst = comparison.worst_ratio();
        writeln!(
            out,
            "\ncostliest attack / genuine, server CPU per request: {worst:.2} (goal <= 1.0) {}",
            verdict(worst <= 1.0)
        )?;
    }
    drop(out);
    for ((level, rate), at_half) in levels.iter().zip(&rates).zip(&half_runs) {
        let label = level.label.as_str();
        summary::record(&summary::Figure {
            bench: "ingest",
            figure: &format!("webhooks accepted per second at full speed, {label}"),
            value: *rate,
            unit: "req/s",
            ceiling: ceiling_rate,
            ceiling_source: "bare axum endpoint verifying the same HMAC, same run, same load",
            higher_is_better: true,
        })?;
        summary::record(&summary::Figure {
            bench: "ingest",
            figure: &format!("webhooks accepted per second against the contract ceiling, {label}"),
            value: *rate,
            unit: "req/s",
            ceiling: contract_rate,
            ceiling_source: "axum + the same HMAC + JetStream publish awaiting its ack, same run",
            higher_is_better: true,
        })?;
        summary::record(&summary::Figure {
            bench: "ingest",
            figure: &format!("p99 latency at half the slowest level's full-speed rate, {label}"),
            value: at_half.outcome.percentile_ms(99.0),
            unit: "ms",
            ceiling: 25.0,
            ceiling_source: "goal",
            higher_is_better: false,
        })?;
    }
    let lost = levels
        .iter()
        .zip(&stored)
        .find(|(level, stored)| **stored != level.accepted)
        .map(|(level, stored)| {
            format!(
                "{}: the stream holds {stored} messages but ingest accepted {}",
                level.label.as_str(),
                level.accepted
            )
        });
    // The levels' ingests and NATS servers stop before their directory goes: a cluster's nodes
    // are stopped through the pid files in it.
    drop(levels);
    let _ = std::fs::remove_dir_all(&dir);
    match lost {
        Some(lost) => anyhow::bail!(lost),
        None => Ok(()),
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Starts this binary's `ceiling` subcommand (or the one `args` name) and reads the address it
/// bound.
async fn start_ceiling(args: &[&str]) -> anyhow::Result<(Child, SocketAddr)> {
    let args = if args.is_empty() {
        &["ceiling"][..]
    } else {
        args
    };
    let mut child = Command::new(std::env::current_exe()?)
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("ceiling stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .context("ceiling server did not start")??
        .context("ceiling server exited")?;
    let addr = line
        .strip_prefix("listening ")
        .context("unexpected ceiling output")?
        .parse()?;
    Ok((child, addr))
}

/// Starts the release ingest on `nats_url`, secured as `secured` says, and waits until it is
/// ready.
async fn start_ingest(
    bin: &PathBuf,
    secured: &Secured,
    nats_url: &str,
    replicas: usize,
    tenants: &std::path::Path,
    dir: &std::path::Path,
) -> anyhow::Result<(Child, SocketAddr)> {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let log = std::fs::File::create(dir.join("ingest.log"))?;
    let env = secured.service_env(
        "ingest",
        [
            ("INGEST_LISTEN_ADDR", addr.to_string()),
            ("INGEST_NATS_URL", nats_url.to_string()),
            ("INGEST_NATS_STREAM_REPLICAS", replicas.to_string()),
            ("INGEST_TENANTS_FILE", tenants.display().to_string()),
            ("INGEST_STRIPE_WEBHOOK_SECRETS", STRIPE_SECRET.to_string()),
            // The limiter runs, but far above what one machine can send.
            ("INGEST_RATE_LIMIT_PER_SEC", "10000000".to_string()),
            ("INGEST_RATE_LIMIT_BURST", "10000000".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    )?;
    let child = Command::new(bin)
        .envs(env)
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} (build it with --release)", bin.display()))?;
    ready::wait_ready(addr, Duration::from_secs(10))
        .await
        .with_context(|| format!("ingest; see {}", dir.join("ingest.log").display()))?;
    Ok((child, addr))
}

/// Webhooks in the WEBHOOKS stream (not counting the audit records of refused requests, which
/// share it), asked as the ingest user.
async fn stream_messages(secured: &Secured, nats_url: &str) -> anyhow::Result<u64> {
    use futures::TryStreamExt;
    let js = secured.jetstream(nats_url, "ingest").await?;
    let subjects = Subjects::new("");
    let mut stream = js.get_stream(subjects.stream_name("WEBHOOKS")).await?;
    let messages = stream.info().await?.state.messages;
    let rejected: usize = stream
        .info_with_subjects(subjects.rejected_all())
        .await?
        .map_ok(|(_, n)| n)
        .try_fold(0, |sum, n| async move { Ok(sum + n) })
        .await?;
    Ok(messages - rejected as u64)
}
