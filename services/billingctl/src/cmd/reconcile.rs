//! `billingctl reconcile`: SimplyBook against the ledger, a bank statement against the
//! invoices, and a deposits export against the bookings ([`deposits`]).

mod deposits;

use std::collections::HashMap;

use anyhow::Context as _;
use billing_domain::bank::{self, StatementFormat};
use billing_proto::invoicing::{BankTransfer, MatchBankTransfersRequest, TransferMatch};
use billing_proto::ledger::{ReconcileSimplyBookRequest, TenantReconciliation};

use crate::clients::Conn;
use crate::exit::{InputError, Outcome};
use crate::output::{self, Table, amount, last, left, outln, right};
use crate::progress::Progress;

#[derive(clap::Subcommand)]
pub enum ReconcileCmd {
    /// SimplyBook's bookings of a month against the ledger's. Exits 3 when they differ.
    Simplybook {
        /// Default: every tenant with SimplyBook admin credentials.
        #[arg(long)]
        tenant: Option<String>,
        /// YYYY-MM, `current` or `previous` (each tenant's month in its time zone).
        #[arg(long, default_value = "previous")]
        period: String,
        /// Put each missing or differing booking on the webhook stream, where the ledger
        /// confirms it with SimplyBook's admin API and records it as a repair.
        #[arg(long)]
        repair: bool,
        /// Raise an operator alert when gaps are found (the nightly CronJob does).
        #[arg(long)]
        alert: bool,
    },
    /// Match a bank statement (CSV with a header row) to open invoices and record the
    /// payments. Exits 3 when some transfers did not match.
    Bank {
        /// The statement; `-` for standard input.
        file: std::path::PathBuf,
        #[command(flatten)]
        columns: Columns,
        /// Show what would be recorded without recording anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Match a deposits export (HNRY's, a bank's or a payment processor's CSV with a header
    /// row) to the tenant's bookings by the SimplyBook booking id each line names, and store
    /// the receipts in the ledger. Lines naming no booking are listed with the bookings they
    /// could be (never applied). Importing again changes nothing. Exits 3 when some lines did
    /// not match.
    Deposits {
        #[arg(long)]
        tenant: String,
        /// The export; `-` for standard input.
        file: std::path::PathBuf,
        #[command(flatten)]
        columns: Columns,
        /// Show what would be matched without storing anything.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Needs attention when a tenant has gaps (or could not be reconciled), or a transfer did not
/// match.
pub async fn run(conn: &Conn, json: bool, cmd: ReconcileCmd) -> anyhow::Result<Outcome> {
    let ok = match cmd {
        ReconcileCmd::Simplybook {
            tenant,
            period,
            repair,
            alert,
        } => {
            let request = ReconcileSimplyBookRequest {
                tenant_id: tenant.unwrap_or_default(),
                period,
                repair,
                alert,
            };
            simplybook(conn, json, request).await?
        }
        ReconcileCmd::Bank {
            file,
            columns,
            dry_run,
        } => {
            let (transfers, debits) = read_statement(&file, &columns)?;
            bank(conn, json, transfers, debits, dry_run).await?
        }
        ReconcileCmd::Deposits {
            tenant,
            file,
            columns,
            dry_run,
        } => {
            let statement = read_lines(&file, &columns)?;
            deposits::run(conn, json, &tenant, statement, dry_run).await?
        }
    };
    Ok(Outcome::attention_unless(ok))
}

const GAPS: Table<5> = Table::indented(
    "  ",
    [
        left("BOOKING", 12),
        left("GAP", 24),
        left("SIMPLYBOOK", 40),
        left("LEDGER", 40),
        last("REPAIR"),
    ],
);

const MATCHES: Table<8> = Table::new([
    right("LINE", 5),
    left("DATE", 10),
    right("AMOUNT", 12),
    left("REFERENCE", 24),
    left("OUTCOME", 16),
    left("INVOICE", 18),
    right("BALANCE AFTER", 16),
    last("DETAIL"),
]);

/// Runs the SimplyBook reconciliation; true when every tenant reconciled without a gap.
async fn simplybook(
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
    output::print_list(json, &reports, report_json, print_reports)?;
    Ok(clean)
}

/// The reports as a person reads them: one line a tenant, then its gaps.
fn print_reports(reports: &[TenantReconciliation]) {
    if reports.is_empty() {
        outln!("no tenant has SimplyBook admin credentials to reconcile with");
    }
    for r in reports {
        if r.outcome == "not_possible" {
            outln!("{} {}: {}", r.tenant_id, r.period, r.error);
            continue;
        }
        if !r.error.is_empty() {
            outln!(
                "{} {}: SimplyBook could not be asked: {}",
                r.tenant_id,
                r.period,
                r.error
            );
            continue;
        }
        outln!(
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
        GAPS.header();
        for g in &r.gaps {
            GAPS.row([&g.booking_ref, &g.kind, &g.simplybook, &g.ledger, &g.repair]);
        }
    }
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
    /// Column with the bank's description (searched for invoice numbers or booking ids too);
    /// optional.
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

/// Reads a statement file (`-` for standard input): its credits, and the debits skipped.
fn read_lines(path: &std::path::Path, columns: &Columns) -> anyhow::Result<bank::Statement> {
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
        let file = std::fs::File::open(path)
            .map_err(|e| InputError(format!("opening {}: {e}", path.display())))?;
        bank::read_statement(std::io::BufReader::new(file), &format)
    }
    .map_err(|e| InputError(format!("{}: {e}", path.display())))?;
    Ok(statement)
}

/// Reads a statement file (`-` for standard input) into the transfers to match.
fn read_statement(
    path: &std::path::Path,
    columns: &Columns,
) -> anyhow::Result<(Vec<BankTransfer>, usize)> {
    let statement = read_lines(path, columns)?;
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
async fn bank(
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
    let match_json = |m: &TransferMatch| {
        let t = by_line.get(&m.line);
        serde_json::json!({
            "line": m.line, "outcome": m.outcome, "invoice_id": m.invoice_id,
            "invoice_number": m.invoice_number, "detail": m.detail,
            "amount": t.map(|t| t.amount.clone()), "reference": t.map(|t| t.reference.clone()),
            "received_on": t.map(|t| t.received_on.clone()),
            "balance_after": amount(m.balance_after.as_ref()),
        })
    };
    output::print_list(json, &matches, match_json, |matches| {
        MATCHES.header();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for m in matches {
            *counts.entry(m.outcome.as_str()).or_default() += 1;
            let t = by_line.get(&m.line);
            MATCHES.row([
                &m.line,
                &t.map_or("", |t| t.received_on.as_str()),
                &t.map_or("", |t| t.amount.as_str()),
                &t.map_or("", |t| t.reference.as_str()),
                &m.outcome,
                &m.invoice_number,
                &amount(m.balance_after.as_ref()),
                &m.detail,
            ]);
        }
        let count = |k: &str| counts.get(k).copied().unwrap_or(0);
        outln!(
            "{} transfer(s): {} recorded, {} already recorded, {} would be recorded, {} unmatched; {} debit(s) skipped",
            matches.len(),
            count("recorded"),
            count("already_recorded"),
            count("would_record"),
            count("unmatched"),
            debits
        );
    })?;
    Ok(all_matched)
}
