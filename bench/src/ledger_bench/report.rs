//! The report: each variant's (security level, NATS R1 or R3, client encryption) medians over
//! its rounds, the cost of each level against the first, of R3 against R1 and of client
//! encryption against none, the services' database sessions, and the headline figures for
//! bench/RESULTS.md.

use std::io::Write;

use chrono::{DateTime, Utc};

use crate::common::{self, Encryption, Security};
use crate::measure::Measured;
use crate::nats::Nats;
use crate::{Args, TENANTS, Variant, summary};

/// Issue 19's goal: the drain with client encryption on at least this share of the rate
/// without it.
const ENCRYPTION_GOAL: f64 = 0.9;

/// A variant's medians over its rounds.
struct Medians<'a> {
    variant: &'a Variant,
    drained: f64,
    /// The fastest round's drain rate: some rounds' drains stall for seconds at the start,
    /// whatever the level (see bench/RESULTS.md), and the best round is free of that.
    best: f64,
    /// CPU µs per booking drained: ledger, PostgreSQL, NATS.
    cpu: [f64; 3],
    p50: f64,
    p99: f64,
    /// Every round stored and measured every event, and kept its clients as the setting says.
    complete: bool,
}

impl Medians<'_> {
    fn level(&self) -> Security {
        self.variant.secured.level
    }

    fn nats(&self) -> Nats {
        self.variant.nats
    }

    fn cpu_total(&self) -> f64 {
        self.cpu.iter().sum()
    }

    /// `self` against `base`: drain rate, best round, CPU per booking by process, latencies.
    fn cost(&self, base: &Medians) -> String {
        format!(
            "drain rate x{:.2} ({:+.1}%), best round x{:.2} ({:+.1}%); CPU per booking {:.1} → \
             {:.1} µs ({:+.1}%: ledger {:+.1}, PostgreSQL {:+.1}, NATS {:+.1}); steady p50 \
             {:+.1} ms, p99 {:+.1} ms",
            self.drained / base.drained,
            (self.drained / base.drained - 1.0) * 100.0,
            self.best / base.best,
            (self.best / base.best - 1.0) * 100.0,
            base.cpu_total(),
            self.cpu_total(),
            (self.cpu_total() / base.cpu_total() - 1.0) * 100.0,
            self.cpu[0] - base.cpu[0],
            self.cpu[1] - base.cpu[1],
            self.cpu[2] - base.cpu[2],
            self.p50 - base.p50,
            self.p99 - base.p99
        )
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

/// Whether a measurement kept its clients as its setting says: with encryption, every booking
/// sealed under one key per client and nothing in plaintext; without, nothing at all.
fn clients_as_expected(encryption: Encryption, m: &Measured) -> bool {
    match encryption {
        Encryption::On => m.sealed == m.stored && m.client_keys == m.clients && m.plaintext == 0,
        Encryption::Off => m.sealed == 0 && m.client_keys == 0 && m.plaintext == 0,
    }
}

pub fn report(
    args: &Args,
    variants: &[Variant],
    started: DateTime<Utc>,
    load_before: &str,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# ledger benchmark, {}",
        started.format("%Y-%m-%d %H:%M UTC")
    )?;
    let events = args.backlog + usize::try_from(args.rate * args.duration_secs)?;
    writeln!(
        out,
        "{} cores shared with PostgreSQL and NATS; {TENANTS} tenants; batch size {}; signed \
         booking payloads published straight to JetStream (as the ingest user when auth is on), \
         each naming its client (name, email, phone; one client per three bookings of a tenant, \
         {} clients in {events} events: a third of the bookings a client's first, the others \
         clients first seen in the same or an earlier batch). Each measurement: a fresh \
         database and {}, a backlog of {} events drained, then {} events/s for {} s. {} rounds \
         per security level, NATS and client encryption setting, the levels interleaved and a \
         level's settings one after the other; medians (CPU: each process's median over the \
         rounds). NATS server (R1): {}. Load average (1, 5, 15 min) before: {load_before}; \
         after: {}.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.batch_size,
        variants
            .first()
            .and_then(|v| v.results.first())
            .map_or(0, |m| m.clients),
        if args.nats.contains(&Nats::R3) {
            "a NATS server of its own (R1) or a fresh 3-node NATS cluster (R3)"
        } else {
            "a NATS server of its own"
        },
        args.backlog,
        args.rate,
        args.duration_secs,
        args.rounds,
        common::OwnNats::server_version(),
        common::load_average()
    )?;
    writeln!(
        out,
        "| security | NATS | client encryption | drain a backlog: bookings/s committed, median (each round) | best round | CPU µs per booking drained: ledger | PostgreSQL | NATS | steady {}/s: publish → written p50 ms | p99 ms | bookings stored | client keys, bookings sealed |",
        args.rate
    )?;
    writeln!(
        out,
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
    )?;
    let mut medians = Vec::new();
    for variant in variants {
        let results = &variant.results;
        let of = |f: &dyn Fn(&Measured) -> f64| median(results.iter().map(f));
        let stored_all = results
            .iter()
            .all(|m| m.stored == m.expected && m.measured + args.backlog == m.expected);
        let clients_kept = results
            .iter()
            .all(|m| clients_as_expected(variant.encryption, m));
        let m = Medians {
            variant,
            drained: of(&|m| m.drained_per_sec),
            best: results
                .iter()
                .map(|m| m.drained_per_sec)
                .fold(f64::NAN, f64::max),
            cpu: [0, 1, 2].map(|i| of(&|m| m.cpu_per_booking[i])),
            p50: of(&|m| m.p50),
            p99: of(&|m| m.p99),
            complete: stored_all
                && clients_kept
                && results
                    .iter()
                    .all(|m| m.stream_replicas == variant.nats.replicas()),
        };
        let rounds: Vec<String> = results
            .iter()
            .map(|m| format!("{:.0}", m.drained_per_sec))
            .collect();
        let first = results.first();
        writeln!(
            out,
            "| {} | {} (streams R{}) | {} | {:.0} ({}) | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} of {} each round {} | {} keys for {} clients, {} sealed, {} in plaintext, each round {} |",
            variant.secured.level.label(),
            match variant.nats {
                Nats::R1 => "1 server",
                Nats::R3 => "3-node cluster",
            },
            results.iter().map(|m| m.stream_replicas).min().unwrap_or(0),
            match variant.encryption {
                Encryption::Off => "off",
                Encryption::On => "on",
            },
            m.drained,
            rounds.join(", "),
            m.best,
            m.cpu[0],
            m.cpu[1],
            m.cpu[2],
            m.p50,
            m.p99,
            first.map_or(0, |m| m.stored),
            first.map_or(0, |m| m.expected),
            verdict(stored_all),
            first.map_or(0, |m| m.client_keys),
            first.map_or(0, |m| m.clients),
            first.map_or(0, |m| m.sealed),
            first.map_or(0, |m| m.plaintext),
            verdict(clients_kept)
        )?;
        medians.push(m);
    }
    writeln!(out)?;
    let spread = variants
        .iter()
        .map(|v| {
            let rates = v.results.iter().map(|m| m.drained_per_sec);
            rates.clone().fold(f64::NAN, f64::max) / rates.fold(f64::NAN, f64::min)
        })
        .fold(f64::NAN, f64::max);
    if spread > 1.5 {
        writeln!(
            out,
            "The rounds of one variant differ by up to x{spread:.1} in drain rate. A drain may \
             stall for seconds at its start (the ledger gets partial batches while the backlog \
             waits), at any level and on the shared NATS without auth as well: compare the best \
             rounds and the CPU per booking rather than one round with another.\n"
        )?;
    }
    for m in &medians {
        writeln!(
            out,
            "{}: drain {:.0} bookings/s (goal >= 8000) {}, p99 {:.1} ms (goal <= 250) {}",
            m.variant.label(),
            m.drained,
            verdict(m.drained >= 8000.0),
            m.p99,
            verdict(m.p99 <= 250.0)
        )?;
    }
    // Client encryption against none, at each level and NATS.
    let mut encryption_ratios = Vec::new();
    for (level, nats) in args
        .security
        .iter()
        .flat_map(|l| args.nats.iter().map(move |n| (*l, *n)))
    {
        let at = |e: Encryption| {
            medians
                .iter()
                .find(|m| m.level() == level && m.nats() == nats && m.variant.encryption == e)
        };
        let (Some(off), Some(on)) = (at(Encryption::Off), at(Encryption::On)) else {
            continue;
        };
        let ratio = on.drained / off.drained;
        let name = match nats {
            Nats::R1 => level.label().to_string(),
            Nats::R3 => format!("{}, {}", level.label(), nats.label()),
        };
        writeln!(
            out,
            "{name}: drain with client encryption on {:.0} / off {:.0} bookings/s = x{ratio:.2} \
             (goal >= {ENCRYPTION_GOAL:.2}) {}; cost of client encryption: {}",
            on.drained,
            off.drained,
            verdict(ratio >= ENCRYPTION_GOAL),
            on.cost(off)
        )?;
        encryption_ratios.push((name, ratio));
    }
    // R3 against R1, at the same level with the same client encryption.
    for m in medians.iter().filter(|m| m.nats() == Nats::R3) {
        let Some(base) = medians.iter().find(|b| {
            b.nats() == Nats::R1
                && b.level() == m.level()
                && b.variant.encryption == m.variant.encryption
        }) else {
            continue;
        };
        writeln!(
            out,
            "R3 against R1 ({}, {}): drain {:.0} / {:.0} bookings/s, {}",
            m.level().label(),
            m.variant.encryption.label(),
            m.drained,
            base.drained,
            m.cost(base)
        )?;
    }
    // Each level against the first, with the same client encryption.
    if let Some(first) = args.security.first() {
        for m in medians.iter().filter(|m| m.level() != *first) {
            let Some(base) = medians.iter().find(|b| {
                b.level() == *first
                    && b.nats() == m.nats()
                    && b.variant.encryption == m.variant.encryption
            }) else {
                continue;
            };
            writeln!(
                out,
                "cost of {} against {} ({}{}): {}",
                m.level().label(),
                first.label(),
                m.variant.encryption.label(),
                match m.nats() {
                    Nats::R1 => "",
                    Nats::R3 => ", NATS R3",
                },
                m.cost(base)
            )?;
        }
    }
    for variant in variants {
        if let Some(first) = variant.results.first() {
            writeln!(
                out,
                "{}: the ledger's database sessions: {}",
                variant.label(),
                first.sessions
            )?;
        }
    }
    writeln!(
        out,
        "\nSecurity levels: {}.\nClient encryption: {}.",
        Security::explain(),
        common::Encryption::explain()
    )?;
    if args.nats.contains(&Nats::R3) {
        writeln!(out, "NATS: {}.", Nats::explain(args.nats_cluster_base))?;
    }
    if let Some(m) = medians.iter().find(|m| m.level() == Security::Tls) {
        writeln!(
            out,
            "PostgreSQL over TLS here: the machine's shared cluster with its own self-signed \
             certificate ({}; it names the machine, not 127.0.0.1, so the host name is not \
             matched). NATS over TLS: a CA made for the run, the server's certificate \
             verified by name.",
            m.variant.secured.postgres_tls()
        )?;
    }
    drop(out);
    for m in &medians {
        summary::record(&summary::Figure {
            bench: "ledger",
            figure: &format!(
                "backlog drained, bookings committed per second, {}",
                m.variant.label()
            ),
            value: m.drained,
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
                m.variant.label()
            ),
            value: m.p99,
            unit: "ms",
            ceiling: 250.0,
            ceiling_source: "goal",
            higher_is_better: false,
        })?;
    }
    for (name, ratio) in encryption_ratios {
        summary::record(&summary::Figure {
            bench: "ledger",
            figure: &format!("drain with client encryption on / off, {name}"),
            value: ratio,
            unit: "x",
            ceiling: ENCRYPTION_GOAL,
            ceiling_source: "goal (issue 19: encryption keeps at least 0.9 of the drain rate)",
            higher_is_better: true,
        })?;
    }
    anyhow::ensure!(
        medians.iter().all(|m| m.complete),
        "a measurement stored or measured fewer events than it published, did not keep its \
         clients' details as its encryption setting says, or its streams had other replicas \
         than its NATS setting"
    );
    Ok(())
}
