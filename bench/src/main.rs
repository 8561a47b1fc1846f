//! ingest-bench: how close ingest comes to a bare axum endpoint that only checks the HMAC.
//!
//! Starts the ceiling server and a release `ingest` (on the machine's NATS, in a namespace of its
//! own) as child processes, drives both with the same genuine signed SimplyBook and Stripe
//! requests, then drives ingest at half its measured rate for latency. Prints accepted requests
//! per second, p50/p99 latency, the ratio to the ceiling, and checks that the stream holds
//! exactly as many messages as ingest accepted. Then times the signature amplification attack
//! against a genuine request (`amplification`). Run it with `bench/run.sh`.

mod amplification;
mod ceiling;
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
}

#[derive(clap::Args)]
struct RunArgs {
    /// Seconds per measured run.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Threads of the load generator. One, like `wrk -t1` in the machine's reference probe: the
    /// generator shares the cores with the server and NATS, and more threads take cycles from
    /// them.
    #[arg(long, default_value_t = 1)]
    generator_threads: usize,
    /// Ceiling and ingest are measured alternately this many times; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// The ingest binary; defaults to the one next to this executable.
    #[arg(long)]
    ingest_bin: Option<PathBuf>,
    /// Requests per case of the amplification comparison (0: skip it).
    #[arg(long, default_value_t = 200)]
    amplification_requests: usize,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse() {
        // The ceiling server runs like ingest: tokio's default multi-threaded runtime.
        Cli::Ceiling => tokio::runtime::Runtime::new()?.block_on(ceiling::serve()),
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

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let started = chrono::Utc::now();
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

    let (ceiling_child, ceiling_addr) = start_ceiling().await?;
    let ingest_bin = match &args.ingest_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("ingest"),
    };
    let (ingest_child, ingest_addr) =
        start_ingest(&ingest_bin, &args.nats_url, &namespace, &tenants, &dir).await?;
    let ceiling = Target {
        addr: ceiling_addr,
        processes: cpu::Processes::new(ceiling_child.id().unwrap_or(0)),
    };
    let ingest = Target {
        addr: ingest_addr,
        processes: cpu::Processes::new(ingest_child.id().unwrap_or(0)),
    };

    let payloads = Arc::new(Payloads::new(&namespace)?);
    let counter = Arc::new(AtomicU64::new(0));
    let full_speed = Plan {
        connections: args.connections,
        duration: Duration::from_secs(args.duration_secs),
        rate: None,
    };
    let measure = |target, plan| Target::measure(target, &payloads, &counter, plan);

    // Warm both up (connections, caches, JetStream's file) before measuring.
    let warm_up = Plan {
        duration: Duration::from_secs(2),
        ..full_speed
    };
    measure(&ceiling, warm_up).await?;
    // Every request ingest accepted, warm-up included, must be in the stream.
    let (mut accepted, mut failures) = (0, 0);
    let mut tally = |m: &Measured| {
        accepted += m.outcome.count(202);
        failures += m.outcome.failures();
    };
    tally(&measure(&ingest, warm_up).await?);

    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let c = measure(&ceiling, full_speed).await?;
        let i = measure(&ingest, full_speed).await?;
        tally(&i);
        eprintln!(
            "round {round}: ceiling {:.0} req/s, ingest {:.0} req/s",
            c.outcome.accepted_per_sec(),
            i.outcome.accepted_per_sec()
        );
        rounds.push((c, i));
    }
    // Report the round with the median ingest rate, and the median of each target's rates.
    let ceiling_rate = median(rounds.iter().map(|r| r.0.outcome.accepted_per_sec()));
    let ingest_rate = median(rounds.iter().map(|r| r.1.outcome.accepted_per_sec()));
    rounds.sort_by(|a, b| {
        a.1.outcome
            .accepted_per_sec()
            .total_cmp(&b.1.outcome.accepted_per_sec())
    });
    let (ceiling_run, ingest_run) = rounds.swap_remove(rounds.len() / 2);

    let half = Plan {
        rate: Some(ingest_rate / 2.0),
        ..full_speed
    };
    let at_half = measure(&ingest, half).await?;
    tally(&at_half);
    let amplification = if args.amplification_requests > 0 {
        let comparison = amplification::run(
            ingest.addr,
            &ingest.processes,
            &namespace,
            args.amplification_requests,
        )
        .await?;
        accepted += comparison.accepted;
        Some(comparison)
    } else {
        None
    };
    let stored = stream_messages(&args.nats_url, &namespace).await?;

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# ingest benchmark, {}",
        started.format("%Y-%m-%d %H:%M UTC")
    )?;
    writeln!(
        out,
        "{} cores shared by the load generator ({} thread), the server and NATS JetStream (file \
         storage); {} keep-alive connections; {} s per run; median of {} alternating rounds; \
         requests alternate signed SimplyBook bookings (~1.1 KB) and Stripe events (~1.0 KB).\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.generator_threads,
        args.connections,
        args.duration_secs,
        args.rounds
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
    row(&mut out, "ingest, full speed", ingest_rate, &ingest_run)?;
    row(
        &mut out,
        &format!(
            "ingest at half rate ({:.0} req/s offered)",
            ingest_rate / 2.0
        ),
        at_half.outcome.accepted_per_sec(),
        &at_half,
    )?;
    let ratio = ingest_rate / ceiling_rate;
    let p99_half = at_half.outcome.percentile_ms(99.0);
    writeln!(out)?;
    writeln!(
        out,
        "ingest / ceiling: {ratio:.2} (goal >= 0.50) {}",
        verdict(ratio >= 0.5)
    )?;
    writeln!(
        out,
        "p99 at half rate: {p99_half:.2} ms (goal <= 25 ms) {}",
        verdict(p99_half <= 25.0)
    )?;
    writeln!(
        out,
        "stream messages: {stored}, accepted (202): {accepted}, failed requests: {failures} {}",
        verdict(stored == accepted && failures == 0)
    )?;
    if let Some(comparison) = &amplification {
        writeln!(
            out,
            "\n## Signature amplification (issue 17): the attack against a genuine request\n\n\
             The same ~250 KiB booking body each time, {} requests per case, one per connection, \
             one at a time, against the same ingest in the same run.\n",
            args.amplification_requests
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
    summary::record(&summary::Figure {
        bench: "ingest",
        figure: "webhooks accepted per second at full speed",
        value: ingest_rate,
        unit: "req/s",
        ceiling: ceiling_rate,
        ceiling_source: "bare axum endpoint verifying the same HMAC, same run, same load",
        higher_is_better: true,
    })?;
    summary::record(&summary::Figure {
        bench: "ingest",
        figure: "p99 latency at half the full-speed rate",
        value: p99_half,
        unit: "ms",
        ceiling: 25.0,
        ceiling_source: "goal",
        higher_is_better: false,
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        stored == accepted,
        "the stream holds {stored} messages but ingest accepted {accepted}"
    );
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Starts this binary's `ceiling` subcommand and reads the address it bound.
async fn start_ceiling() -> anyhow::Result<(Child, SocketAddr)> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("ceiling")
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

/// Starts the release ingest in its own namespace and waits until it is ready.
async fn start_ingest(
    bin: &PathBuf,
    nats_url: &str,
    namespace: &str,
    tenants: &PathBuf,
    dir: &std::path::Path,
) -> anyhow::Result<(Child, SocketAddr)> {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let log = std::fs::File::create(dir.join("ingest.log"))?;
    let child = Command::new(bin)
        .env("INGEST_LISTEN_ADDR", addr.to_string())
        .env("INGEST_NATS_URL", nats_url)
        .env("INGEST_NATS_NAMESPACE", namespace)
        .env("INGEST_TENANTS_FILE", tenants)
        .env("INGEST_STRIPE_WEBHOOK_SECRETS", STRIPE_SECRET)
        // The limiter runs, but far above what one machine can send.
        .env("INGEST_RATE_LIMIT_PER_SEC", "10000000")
        .env("INGEST_RATE_LIMIT_BURST", "10000000")
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

/// Webhooks in the namespace's WEBHOOKS stream (not counting the audit records of refused
/// requests, which share it); the streams are deleted afterwards.
async fn stream_messages(nats_url: &str, namespace: &str) -> anyhow::Result<u64> {
    use futures::TryStreamExt;
    let js = async_nats::jetstream::new(async_nats::connect(nats_url).await?);
    let subjects = Subjects::new(namespace);
    let mut stream = js.get_stream(subjects.stream_name("WEBHOOKS")).await?;
    let messages = stream.info().await?.state.messages;
    let rejected: usize = stream
        .info_with_subjects(subjects.rejected_all())
        .await?
        .map_ok(|(_, n)| n)
        .try_fold(0, |sum, n| async move { Ok(sum + n) })
        .await?;
    subjects.delete_streams(&js).await;
    Ok(messages - rejected as u64)
}
