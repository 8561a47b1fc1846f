//! `billingctl reconcile deposits`: a deposits export (HNRY's, a bank's or a payment
//! processor's) read like a bank statement, each line matched by the ledger to the booking whose
//! SimplyBook id it names, and stored there.
//!
//! HNRY's export format could not be confirmed from a published source: the column flags
//! (`--date-column`, `--amount-column`, `--reference-column`, `--description-column`,
//! `--date-format`, `--decimal-comma`) say where each value is, as `reconcile bank` does.

use std::collections::HashMap;

use anyhow::Context as _;
use billing_domain::bank::Statement;
use billing_proto::ledger::{DepositLine, DepositLineMatch, ImportDepositsRequest};

use crate::clients::Conn;
use crate::output::{self, Table, amount, last, left, outln, right, utc_minute};
use crate::progress::Progress;

const MATCHES: Table<7> = Table::new([
    right("LINE", 5),
    left("DATE", 10),
    right("AMOUNT", 12),
    left("OUTCOME", 16),
    left("BOOKING", 12),
    left("PERIOD", 7),
    last("DETAIL"),
]);

/// Lines sent per call (each call's receipts are stored before the next).
const CHUNK: usize = 500;

/// Imports a tenant's deposits export; true when every line matched a booking.
pub async fn run(
    conn: &Conn,
    json: bool,
    tenant: &str,
    statement: Statement,
    dry_run: bool,
) -> anyhow::Result<bool> {
    let lines: Vec<DepositLine> = statement
        .lines
        .into_iter()
        .map(|l| DepositLine {
            line: l.line,
            received_on: l.received_on.to_string(),
            amount: l.amount.to_string(),
            currency: l.currency,
            reference: l.reference,
            description: l.description,
            occurrence: l.occurrence,
        })
        .collect();
    let mut ledger = conn.ledger()?;
    let mut matches: Vec<DepositLineMatch> = Vec::with_capacity(lines.len());
    let mut progress = Progress::new("deposit lines matched", Some(lines.len() as u64));
    for chunk in lines.chunks(CHUNK) {
        let reply = ledger
            .import_deposits(ImportDepositsRequest {
                tenant_id: tenant.to_string(),
                lines: chunk.to_vec(),
                dry_run,
            })
            .await
            .context("importing deposits")?
            .into_inner();
        matches.extend(reply.matches);
        progress.set(matches.len() as u64);
    }
    progress.done();
    let by_line: HashMap<u32, &DepositLine> = lines.iter().map(|l| (l.line, l)).collect();
    let all_matched = matches.iter().all(|m| {
        matches!(
            m.outcome.as_str(),
            "matched" | "already_imported" | "would_match"
        )
    });
    let match_json = |m: &DepositLineMatch| {
        let l = by_line.get(&m.line);
        serde_json::json!({
            "line": m.line, "tenant": tenant, "outcome": m.outcome, "booking_ref": m.booking_ref,
            "period": m.period, "detail": m.detail,
            "amount": l.map(|l| l.amount.clone()), "reference": l.map(|l| l.reference.clone()),
            "received_on": l.map(|l| l.received_on.clone()),
            "candidates": m.candidates.iter().map(|c| serde_json::json!({
                "booking_ref": c.booking_ref, "session_at": output::json_time(c.session_at.as_ref()),
                "deposit": amount(c.deposit.as_ref()), "same_client": c.same_client,
            })).collect::<Vec<_>>(),
        })
    };
    output::print_list(json, &matches, match_json, |matches| {
        MATCHES.header();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for m in matches {
            *counts.entry(m.outcome.as_str()).or_default() += 1;
            let l = by_line.get(&m.line);
            MATCHES.row([
                &m.line,
                &l.map_or("", |l| l.received_on.as_str()),
                &l.map_or("", |l| l.amount.as_str()),
                &m.outcome,
                &m.booking_ref,
                &m.period,
                &m.detail,
            ]);
            for c in &m.candidates {
                outln!(
                    "        could be booking {} (session {}, deposit {}){}: check, never applied",
                    c.booking_ref,
                    utc_minute(c.session_at.as_ref()),
                    amount(c.deposit.as_ref()),
                    if c.same_client { ", same client" } else { "" }
                );
            }
        }
        let count = |k: &str| counts.get(k).copied().unwrap_or(0);
        outln!(
            "{} line(s): {} matched, {} already imported, {} would match, {} unmatched, {} refused; {} debit(s) skipped",
            matches.len(),
            count("matched"),
            count("already_imported"),
            count("would_match"),
            count("unmatched"),
            count("refused"),
            statement.debits
        );
    })?;
    Ok(all_matched)
}
