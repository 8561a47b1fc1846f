//! The report: each security level's medians over its rounds, its cost against the first level,
//! the services' database sessions, and the headline figures for bench/RESULTS.md.

use std::io::Write;

use chrono::{DateTime, Utc};

use crate::common::{self, Secured, Security};
use crate::measure::Measured;
use crate::{Args, TENANTS, summary};

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

pub fn report(
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
