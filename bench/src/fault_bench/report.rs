//! The result: one row per scenario, whether it is clean, and the table printed at the end.

use std::time::Duration;

use chrono::Utc;

use crate::checks::Compared;
use crate::common::{self, Secured, Security};
use crate::{Args, DOWN_FOR, STRIKE_AT, Scenario};

/// One scenario's row.
pub struct Row {
    pub scenario: Scenario,
    pub sent: u64,
    pub events: usize,
    pub compared: Compared,
    /// Accepted deliveries JetStream dropped as duplicates (Nats-Msg-Id).
    pub nats_duplicates: u64,
    pub stream_messages: u64,
    pub given_up: u64,
    pub retried: u64,
    pub chains_ok: bool,
    pub invoices_ok: bool,
    pub emails_ok: bool,
    pub recovered_in: Duration,
    pub caught_up_in: Duration,
    pub notes: Vec<String>,
}

impl Row {
    pub fn clean(&self) -> bool {
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

pub fn print_table(
    args: &Args,
    secured: &Secured,
    rows: &[Row],
    elapsed: Duration,
    load_before: &str,
) {
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
