//! `billingctl reconcile`: SimplyBook against the ledger, and a bank statement against the
//! invoices.

use std::collections::HashMap;
use std::io::Read;

use anyhow::Context as _;
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
        if !r.error.is_empty() {
            println!(
                "{} {}: SimplyBook could not be asked: {}",
                r.tenant_id, r.period, r.error
            );
            continue;
        }
        println!(
            "{} {}: SimplyBook {} bookings, ledger {}, matched {}, {} gap(s)",
            r.tenant_id,
            r.period,
            r.simplybook_bookings,
            r.ledger_bookings,
            r.matched,
            r.gaps.len()
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
}

/// A statement read: the credits to match, and how many debits were skipped.
#[derive(Debug, Default)]
pub struct Statement {
    pub transfers: Vec<BankTransfer>,
    pub debits: usize,
}

/// An amount as banks write it (`$1,234.50`, `+75.10`, `(12.00)` for a debit), as a plain
/// decimal; `None` for a debit or an empty cell.
fn credit(cell: &str) -> Result<Option<String>, String> {
    let mut text: String = cell
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, ',' | '$' | '€' | '£' | '¥'))
        .collect();
    if text.is_empty() {
        return Ok(None);
    }
    if text.starts_with('-') || (text.starts_with('(') && text.ends_with(')')) {
        return Ok(None);
    }
    if let Some(rest) = text.strip_prefix('+') {
        text = rest.to_string();
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || text.ends_with('.') {
        return Err(format!("amount {cell:?} is not a number"));
    }
    Ok(Some(text))
}

/// Reads a statement with a header row; any unreadable row fails the whole file, so a statement
/// is never half imported.
pub fn read_statement(input: impl Read, columns: &Columns) -> Result<Statement, InputError> {
    let delimiter = u8::try_from(columns.delimiter)
        .map_err(|_| InputError("the delimiter must be one ASCII character".into()))?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(input);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| InputError(format!("reading the header: {e}")))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let find = |name: &str| {
        header
            .iter()
            .position(|h| h == &name.trim().to_ascii_lowercase())
    };
    let required = |name: &str| {
        find(name).ok_or_else(|| {
            InputError(format!(
                "column {name:?} is not in the header (it has: {})",
                header.join(", ")
            ))
        })
    };
    let date = required(&columns.date_column)?;
    let amount = required(&columns.amount_column)?;
    let reference = required(&columns.reference_column)?;
    let description = find(&columns.description_column);
    let currency = match &columns.currency_column {
        Some(name) => Some(required(name)?),
        None => None,
    };
    let mut statement = Statement::default();
    for record in reader.records() {
        let record = record.map_err(|e| InputError(format!("reading the statement: {e}")))?;
        let line = record.position().map_or(0, |p| p.line()) as u32;
        let cell = |i: Option<usize>| {
            i.and_then(|i| record.get(i))
                .unwrap_or("")
                .trim()
                .to_string()
        };
        let Some(value) =
            credit(&cell(Some(amount))).map_err(|e| InputError(format!("line {line}: {e}")))?
        else {
            statement.debits += 1;
            continue;
        };
        let day = chrono::NaiveDate::parse_from_str(&cell(Some(date)), &columns.date_format)
            .map_err(|_| {
                InputError(format!(
                    "line {line}: date {:?} does not match {} (set --date-format)",
                    cell(Some(date)),
                    columns.date_format
                ))
            })?;
        statement.transfers.push(BankTransfer {
            line,
            received_on: day.format("%Y-%m-%d").to_string(),
            amount: value,
            currency: cell(currency),
            reference: cell(Some(reference)),
            description: cell(description),
        });
    }
    Ok(statement)
}

/// Transfers sent per call (each call's matches are recorded before the next).
const CHUNK: usize = 500;

/// Matches a statement's transfers to invoices; true when every transfer matched.
pub async fn bank(
    conn: &Conn,
    json: bool,
    statement: Statement,
    dry_run: bool,
) -> anyhow::Result<bool> {
    let mut invoicing = conn.invoicing()?;
    let mut matches: Vec<TransferMatch> = Vec::with_capacity(statement.transfers.len());
    let mut progress = Progress::new("transfers matched", Some(statement.transfers.len() as u64));
    for chunk in statement.transfers.chunks(CHUNK) {
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
    let by_line: HashMap<u32, &BankTransfer> =
        statement.transfers.iter().map(|t| (t.line, t)).collect();
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
        statement.debits
    );
    Ok(all_matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Columns {
        Columns {
            date_column: "Date".into(),
            amount_column: "Credit".into(),
            reference_column: "Reference".into(),
            description_column: "Narrative".into(),
            currency_column: None,
            date_format: "%d/%m/%Y".into(),
            delimiter: ';',
        }
    }

    #[test]
    fn amounts_are_read_as_banks_write_them() {
        assert_eq!(credit("$1,234.50"), Ok(Some("1234.50".into())));
        assert_eq!(credit(" +75.1 "), Ok(Some("75.1".into())));
        assert_eq!(credit("7500"), Ok(Some("7500".into())));
        assert_eq!(credit(""), Ok(None));
        assert_eq!(credit("-20.00"), Ok(None));
        assert_eq!(credit("(20.00)"), Ok(None));
        for bad in ["ten", "1.2.3", "1e5", ".5", "5."] {
            assert!(credit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_statement_is_read_by_its_configured_columns() {
        let text = "Date;Narrative;Credit;Debit;Reference\n\
                    05/11/2026;TRANSFER FROM CLAIRE H;75.10;;CLAIRE-2026-0001\n\
                    06/11/2026;CARD FEE;;2.00;\n\
                    07/11/2026;\"TRANSFER; FROM K\";\"1,500\";;KENJI 2026 0001\n";
        let s = read_statement(text.as_bytes(), &columns()).expect("statement");
        assert_eq!(s.debits, 1);
        assert_eq!(s.transfers.len(), 2);
        let t = &s.transfers[0];
        assert_eq!(
            (t.line, t.received_on.as_str(), t.amount.as_str()),
            (2, "2026-11-05", "75.10")
        );
        assert_eq!(t.reference, "CLAIRE-2026-0001");
        assert_eq!(t.description, "TRANSFER FROM CLAIRE H");
        assert_eq!(s.transfers[1].amount, "1500");
        assert_eq!(s.transfers[1].description, "TRANSFER; FROM K");
        assert_eq!(s.transfers[1].line, 4);
    }

    #[test]
    fn a_bad_statement_is_refused_whole_with_the_line() {
        let missing = "Date;Credit\n05/11/2026;1\n";
        let err = read_statement(missing.as_bytes(), &columns()).expect_err("no reference");
        assert!(err.0.contains("\"Reference\""), "{}", err.0);
        let bad_date = "Date;Credit;Reference\n05/11/2026;1;a\n2026-11-06;2;b\n";
        let err = read_statement(bad_date.as_bytes(), &columns()).expect_err("bad date");
        assert!(err.0.starts_with("line 3:"), "{}", err.0);
        let bad_amount = "Date;Credit;Reference\n05/11/2026;ten;a\n";
        let err = read_statement(bad_amount.as_bytes(), &columns()).expect_err("bad amount");
        assert!(
            err.0.contains("line 2") && err.0.contains("ten"),
            "{}",
            err.0
        );
    }
}
