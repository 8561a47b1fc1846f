//! The result: one row per scenario, whether it is clean, and the table printed at the end.

use std::time::Duration;

use chrono::Utc;

use crate::checks::Compared;
use crate::cluster::FREEZE_FOR;
use crate::common::{self, Secured, Security};
use crate::sender::AnswerCounts;
use crate::{Args, DOWN_FOR, STRIKE_AT, Scenario};

/// One scenario's row.
pub struct Row {
    pub scenario: Scenario,
    pub sent: u64,
    pub events: usize,
    pub compared: Compared,
    pub stream_messages: u64,
    pub given_up: u64,
    pub chains_ok: bool,
    pub invoices_ok: bool,
    pub emails_ok: bool,
    pub recovered_in: Duration,
    pub caught_up_in: Duration,
    /// From the last delivery until the ledger's consumer had nothing pending and nothing
    /// awaiting an ack; `None` if it never did within the recovery limit.
    pub drained_in: Option<Duration>,
    /// Messages in the dead-letter stream.
    pub dead_letters: u64,
    /// Every request the sender made, and those made or answered while the fault lasted.
    pub answers: AnswerCounts,
    pub window_answers: AnswerCounts,
    /// How long the fault lasted (from striking until the part was back and current).
    pub window: Duration,
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
            && self.drained_in.is_some()
            && self.dead_letters == 0
    }
}

pub fn print_table(
    args: &Args,
    cluster: bool,
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
         the other); 2 ledger replicas; the fault strikes at {:.0}% of the deliveries; a part \
         killed or stopped stays down {} s (a frozen node {} s). {} {:.0} s in all.\n",
        args.tenants,
        args.bookings,
        STRIKE_AT * 100.0,
        DOWN_FOR.as_secs(),
        FREEZE_FOR.as_secs(),
        if cluster {
            format!(
                "NATS: a fresh 3-node cluster per scenario (scripts/nats-cluster.sh, client ports \
                 {}-{}), every stream R3 (<SVC>_NATS_STREAM_REPLICAS=3), the services given the \
                 three URLs.",
                args.cluster_base,
                args.cluster_base + 2
            )
        } else {
            "NATS: one server of the scenario's own.".to_string()
        },
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
        "| scenario | deliveries accepted | requests | 503 | other non-2xx, no answer | 2xx \
         during the fault | events in the stream | dead letters | bookings stored | lost | wrong \
         | applied twice | chains | invoices once, right total | emails once | ledger complete \
         after last delivery | drained | time to recover |"
    );
    println!(
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|"
    );
    for r in rows {
        let c = &r.compared;
        let ok = |b: bool| if b { "ok" } else { "FAILED" };
        let w = &r.window_answers;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} of {} | {} | {} | {} | {} | {} | {} | {} | {} | \
             {:.1} s | {} | {} |",
            r.scenario.describe(),
            r.sent,
            r.answers.sent,
            r.answers.unavailable,
            r.answers.other + r.answers.failed,
            if matches!(r.scenario, Scenario::Baseline | Scenario::StopSmtp) {
                "-".to_string()
            } else {
                format!(
                    "{:.2}% of {} in {:.1} s",
                    w.ok_percent(),
                    w.sent,
                    r.window.as_secs_f64()
                )
            },
            r.stream_messages,
            r.events,
            r.dead_letters,
            c.stored,
            c.lost + usize::try_from(r.given_up).unwrap_or(usize::MAX),
            c.wrong + c.extra,
            c.applied_twice,
            ok(r.chains_ok),
            ok(r.invoices_ok),
            ok(r.emails_ok),
            r.caught_up_in.as_secs_f64(),
            r.drained_in.map_or("NOT DRAINED".to_string(), |d| format!(
                "{:.1} s",
                d.as_secs_f64()
            )),
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
    for r in rows {
        let (a, w) = (&r.answers, &r.window_answers);
        if a.other + a.failed + w.other + w.failed > 0 {
            println!(
                "\n{}: requests answered otherwise: {} with another status, {} unanswered \
                 (connection refused or reset, or the sender's 10 s timeout); during the fault {} \
                 and {}",
                r.scenario.describe(),
                a.other,
                a.failed,
                w.other,
                w.failed
            );
        }
    }
    println!(
        "\nrequests: every HTTP request the sender made (a delivery refused or unanswered is sent \
         again to the other ingest replica until accepted). 2xx during the fault: the requests \
         made or answered from the fault striking until the part was back (for the cluster's \
         nodes: started and current again). lost: expected bookings the ledger lacks, and \
         deliveries never accepted. applied twice: the workload's own verdict after the ledger's \
         consumer drained (nothing pending, nothing awaiting an ack): an event of the workload \
         with two price revisions or two status-history rows, a row naming another booking's \
         event, or more rows than a booking's events can make. drained: from the last delivery \
         until the ledger's consumer had nothing pending or unacknowledged."
    );
    println!(
        "\nledger complete after last delivery: from the sender's last accepted delivery to the \
         ledger holding every expected booking in its last state. time to recover: from the \
         fault healing (the part back up) to the same point, deliveries still arriving \
         meanwhile; for SMTP, from the mail server's return to every invoice email delivered."
    );
}
