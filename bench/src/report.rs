//! Writes `bench/RESULTS.md` from one `bench/run.sh report` run: the machine, the date, every
//! headline figure with its ratio to its ceiling, then each benchmark's own report.
//!   bench-report <run dir> <output file>
//! The run dir holds `summary.jsonl` (see `summary.rs`) and `<bench>.md`, each benchmark's
//! standard output.
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

/// The benchmarks in the order they run and are reported.
const BENCHES: [(&str, &str); 4] = [
    ("ingest", "Webhook ingestion (ingest-bench)"),
    ("ledger", "Ledger throughput and latency (ledger-bench)"),
    ("close", "Monthly close at scale (close-bench)"),
    ("pdf", "Invoice PDF rendering (pdf-bench)"),
];

/// The first line a command prints, or why it could not run.
fn version(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
        Ok(out) => format!("{program} exited with {}", out.status),
        Err(err) => format!("{program}: {err}"),
    }
}

/// The value of `key` in a `key: value` file such as /proc/cpuinfo.
fn proc_field(path: &str, key: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .context("usage: bench-report <run dir> <output>")?,
    );
    let output = PathBuf::from(
        args.next()
            .context("usage: bench-report <run dir> <output>")?,
    );
    let figures: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("summary.jsonl"))
        .context("reading summary.jsonl")?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let text = render(&dir, &figures)?;
    std::fs::write(&output, text).with_context(|| format!("writing {}", output.display()))?;
    println!("wrote {} ({} figures)", output.display(), figures.len());
    Ok(())
}

fn render(dir: &Path, figures: &[serde_json::Value]) -> anyhow::Result<String> {
    let mut md = String::new();
    writeln!(md, "# Benchmark results")?;
    writeln!(md)?;
    writeln!(
        md,
        "Written by `bench/run.sh report` on {}. Each figure is judged by its ratio to a ceiling: \
         a bound measured in the same run where one exists (ingest), otherwise an estimate from \
         the probes of these machines in `docs/performance.md` (which a figure can beat) \
         or a goal, as the table says. For throughputs the ratio is value / ceiling, for times \
         ceiling / value: 1.0 is at the ceiling, more is better.",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    )?;
    writeln!(md)?;
    writeln!(md, "## Machine")?;
    writeln!(md)?;
    let memory = proc_field("/proc/meminfo", "MemTotal");
    for (what, value) in [
        ("CPU", proc_field("/proc/cpuinfo", "model name")),
        (
            "cores",
            std::thread::available_parallelism().map_or("unknown".into(), |n| n.get().to_string()),
        ),
        ("memory", memory),
        (
            "kernel",
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or("unknown".into(), |s| s.trim().to_string()),
        ),
        ("rustc", version("rustc", &["--version"])),
        ("PostgreSQL", version("psql", &["--version"])),
        ("NATS", version("nats-server", &["--version"])),
        ("commit", version("git", &["rev-parse", "--short", "HEAD"])),
    ] {
        writeln!(md, "- {what}: {value}")?;
    }
    writeln!(
        md,
        "- everything on this one machine: load generators, services, PostgreSQL and NATS share \
         the cores, so figures are lower bounds for a deployment"
    )?;
    writeln!(md)?;
    writeln!(md, "## Figures")?;
    writeln!(md)?;
    writeln!(
        md,
        "| benchmark | figure | value | ceiling | ratio | ceiling from |"
    )?;
    writeln!(md, "|---|---|---:|---:|---:|---|")?;
    for f in figures {
        let unit = f["unit"].as_str().unwrap_or("");
        let num = |v: &serde_json::Value| {
            let x = v.as_f64().unwrap_or(f64::NAN);
            if x >= 100.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.2}")
            }
        };
        writeln!(
            md,
            "| {} | {} | {} {unit} | {} {unit} | {:.2} | {} |",
            f["bench"].as_str().unwrap_or(""),
            f["figure"].as_str().unwrap_or(""),
            num(&f["value"]),
            num(&f["ceiling"]),
            f["ratio"].as_f64().unwrap_or(f64::NAN),
            f["ceiling_source"].as_str().unwrap_or(""),
        )?;
    }
    for (bench, title) in BENCHES {
        let path = dir.join(format!("{bench}.md"));
        let Ok(body) = std::fs::read_to_string(&path) else {
            continue;
        };
        writeln!(md)?;
        writeln!(md, "## {title}")?;
        writeln!(md)?;
        // Each benchmark's own heading becomes a line of text under ours.
        for line in body.lines() {
            match line.strip_prefix("# ") {
                Some(heading) => writeln!(md, "_{heading}_")?,
                None => writeln!(md, "{line}")?,
            }
        }
    }
    Ok(md)
}
