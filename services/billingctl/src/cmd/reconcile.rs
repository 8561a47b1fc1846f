//! `billingctl reconcile`: SimplyBook against the ledger, and a bank statement against the
//! invoices.

use std::collections::HashMap;

use anyhow::Context as _;
use billing_domain::bank::{self, StatementFormat};
use billing_proto::invoicing::{BankTransfer, MatchBankTransfersRequest, TransferMatch};
use billing_proto::ledger::{ReconcileSimplyBookRequest, TenantReconciliation};

use crate::progress::Progress;
use crate::{Conn, InputError};

/// Exit status when something needs a person: gaps found, transfers left unmatched.
pub const EXIT_ATTENTION: u8 = 3;

/// Runs the SimplyBook reconciliation; true when every tenant reconciled without a gap.
pub async fn simplybook(
    conn: &Conn,
    json: bool,
    request: ReconcileSimplyBookRequest,
) -> anyhow::Result<bool> {
    let reports = conn
        .ledger()?
        .reconcile_simply_book(request)
        .await
        .context("reconciling with SimplyBook")?
        .into_inner()
        .tenants;
    let clean = reports
        .iter()
        .all(|r| r.gaps.is_empty() && r.error.is_empty());
    if json {
        let rows: Vec<_> = reports.iter().map(report_json).collect();
        crate::print_json(&rows)?;
        return Ok(clean);
    }
    if reports.is_empty() {
        println!("no tenant has SimplyBook admin credentials to reconcile with");
    }
    for r in &reports {
        if r.outcome == "not_possible" {
            println!("{} {}: {}", r.tenant_id, r.period, r.error);
            continue;
        }
        if !r.error.is_empty() {
            println!(
                "{} {}: SimplyBook could not be asked: {}",
                r.tenant_id, r.period, r.error
            );
            continue;
        }
        println!(
            "{} {}: SimplyBook {} bookings ({} not billable), ledger {}, matched {}, {} gap(s); \
             {} SimplyBook calls; company time zone {}",
            r.tenant_id,
            r.period,
            r.simplybook_bookings,
            r.not_billable,
            r.ledger_bookings,
            r.matched,
            r.gaps.len(),
            r.simplybook_calls,
            if r.simplybook_time_zone.is_empty() {
                "unknown"
            } else {
                r.simplybook_time_zone.as_str()
            }
        );
        if r.gaps.is_empty() {
            continue;
        }
        println!(
            "  {:<12} {:<24} {:<40} {:<40} REPAIR",
            "BOOKING", "GAP", "SIMPLYBOOK", "LEDGER"
        );
        for g in &r.gaps {
            println!(
                "  {:<12} {:<24} {:<40} {:<40} {}",
                g.booking_ref, g.kind, g.simplybook, g.ledger, g.repair
            );
        }
    }
    Ok(clean)
}

fn report_json(r: &TenantReconciliation) -> serde_json::Value {
    serde_json::json!({
        "tenant": r.tenant_id, "period": r.period, "simplybook_bookings": r.simplybook_bookings,
        "ledger_bookings": r.ledger_bookings, "matched": r.matched, "error": r.error,
    "not_billable": r.not_billable, "outcome": r.outcome,
        "simplybook_calls": r.simplybook_calls, "simplybook_time_zone": r.simplybook_time_zone,
        "gaps": r.gaps.iter().map(|g| serde_json::json!({
            "booking_ref": g.booking_ref, "kind": g.kind, "simplybook": g.simplybook,
            "ledger": g.ledger, "repair": g.repair,
        })).collect::<Vec<_>>(),
    })
}

/// Which columns of a bank statement hold what (header names, matched case-insensitively).
#[derive(Debug, Clone, clap::Args)]
pub struct Columns {
    /// Column with the date the money arrived.
    #[arg(long, default_value = "date")]
    pub date_column: String,
    /// Column with the amount; an empty or negative amount is a debit and is skipped.
    #[arg(long, default_value = "amount")]
    pub amount_column: String,
    /// Column with the payer's reference.
    #[arg(long, default_value = "reference")]
    pub reference_column: String,
    /// Column with the bank's description (searched for invoice numbers too); optional.
    #[arg(long, default_value = "description")]
    pub description_column: String,
    /// Column with the currency code, if the statement has one.
    #[arg(long)]
    pub currency_column: Option<String>,
    /// How dates are written (strftime), e.g. %d/%m/%Y.
    #[arg(long, default_value = "%Y-%m-%d")]
    pub date_format: String,
    /// Field separator.
    #[arg(long, default_value_t = ',')]
    pub delimiter: char,
    /// Amounts are written 1.234,50 (decimal comma) rather than 1,234.50.
    #[arg(long)]
    pub decimal_comma: bool,
}

/// Reads a statement file (`-` for standard input) into the transfers to match.
pub fn read_statement(
    path: &std::path::Path,
    columns: &Columns,
) -> anyhow::Result<(Vec<BankTransfer>, usize)> {
    let delimiter = u8::try_from(columns.delimiter)
        .ok()
        .filter(u8::is_ascii)
        .ok_or_else(|| InputError("the delimiter must be one ASCII character".into()))?;
    let format = StatementFormat {
        date_column: columns.date_column.clone(),
        amount_column: columns.amount_column.clone(),
        reference_column: columns.reference_column.clone(),
        description_column: columns.description_column.clone(),
        currency_column: columns.currency_column.clone(),
        date_format: columns.date_format.clone(),
        delimiter,
        decimal_comma: columns.decimal_comma,
    };
    let statement = if path.as_os_str() == "-" {
        bank::read_statement(std::io::stdin().lock(), &format)
    } else {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        bank::read_statement(std::io::BufReader::new(file), &format)
    }
    .map_err(|e| InputError(format!("{}: {e}", path.display())))?;
    let transfers = statement
        .lines
        .into_iter()
        .map(|l| BankTransfer {
            line: l.line,
            received_on: l.received_on.to_string(),
            amount: l.amount.to_string(),
            currency: l.currency,
            reference: l.reference,
            description: l.description,
            occurrence: l.occurrence,
        })
        .collect();
    Ok((transfers, statement.debits))
}

/// Transfers sent per call (each call's matches are recorded before the next).
const CHUNK: usize = 500;

/// Matches a statement's transfers to invoices; true when every transfer matched.
pub async fn bank(
    conn: &Conn,
    json: bool,
    transfers: Vec<BankTransfer>,
    debits: usize,
    dry_run: bool,
) -> anyhow::Result<bool> {
    let mut invoicing = conn.invoicing()?;
    let mut matches: Vec<TransferMatch> = Vec::with_capacity(transfers.len());
    let mut progress = Progress::new("transfers matched", Some(transfers.len() as u64));
    for chunk in transfers.chunks(CHUNK) {
        let reply = invoicing
            .match_bank_transfers(MatchBankTransfersRequest {
                transfers: chunk.to_vec(),
                dry_run,
            })
            .await
            .context("matching bank transfers")?
            .into_inner();
        matches.extend(reply.matches);
        progress.set(matches.len() as u64);
    }
    progress.done();
    let by_line: HashMap<u32, &BankTransfer> = transfers.iter().map(|t| (t.line, t)).collect();
    let all_matched = matches.iter().all(|m| m.outcome != "unmatched");
    if json {
        let rows: Vec<_> = matches
            .iter()
            .map(|m| {
                let t = by_line.get(&m.line);
                serde_json::json!({
                    "line": m.line, "outcome": m.outcome, "invoice_id": m.invoice_id,
                    "invoice_number": m.invoice_number, "detail": m.detail,
                    "amount": t.map(|t| t.amount.clone()), "reference": t.map(|t| t.reference.clone()),
                    "received_on": t.map(|t| t.received_on.clone()),
                    "balance_after": crate::amount(m.balance_after.as_ref()),
                })
            })
            .collect();
        crate::print_json(&rows)?;
        return Ok(all_matched);
    }
    println!(
        "{:>5} {:<10} {:>12} {:<24} {:<16} {:<18} {:>16} DETAIL",
        "LINE", "DATE", "AMOUNT", "REFERENCE", "OUTCOME", "INVOICE", "BALANCE AFTER"
    );
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for m in &matches {
        *counts.entry(m.outcome.as_str()).or_default() += 1;
        let t = by_line.get(&m.line);
        println!(
            "{:>5} {:<10} {:>12} {:<24} {:<16} {:<18} {:>16} {}",
            m.line,
            t.map_or("", |t| t.received_on.as_str()),
            t.map_or("", |t| t.amount.as_str()),
            t.map_or("", |t| t.reference.as_str()),
            m.outcome,
            m.invoice_number,
            crate::amount(m.balance_after.as_ref()),
            m.detail
        );
    }
    let count = |k: &str| counts.get(k).copied().unwrap_or(0);
    println!(
        "{} transfer(s): {} recorded, {} already recorded, {} would be recorded, {} unmatched; {} debit(s) skipped",
        matches.len(),
        count("recorded"),
        count("already_recorded"),
        count("would_record"),
        count("unmatched"),
        debits
    );
    Ok(all_matched)
}
