//! `billingctl report`: the month statement an accountant signs off (issue 21), composed by
//! invoicing from the ledger's month and the invoice: SimplyBook = ledger = invoice = deposits
//! expected = deposits received, fees = invoice total = payments received, and each difference
//! with its status; and a person's explanation of a difference.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use billing_proto::Money;
use billing_proto::invoicing::{
    ExplainStatementDifferenceRequest, GetMonthStatementRequest, ListTenantProfilesRequest,
    MonthStatement, StatementLeg,
};
use billing_proto::notifier::RenderStatementPdfRequest;

use crate::clients::Conn;
use crate::exit::Outcome;
use crate::output::{self, Table, amount, json_time, last, left, outln, right, utc_minute};

#[derive(clap::Subcommand)]
pub enum ReportCmd {
    /// A tenant's month statement. Exits 3 while a difference is open (neither explained nor
    /// fixed).
    Month {
        #[arg(long)]
        tenant: String,
        /// YYYY-MM, `previous` or `current` (the tenant's month in its time zone).
        #[arg(long, default_value = "previous")]
        period: String,
        /// `table` to read here; `json`; `csv` (one row per booking, every leg's value); `pdf`
        /// (rendered by the notifier, like the invoice).
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Write here instead of standard output (a PDF needs it unless stdout is redirected).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Compose every tenant's month statement again (the nightly CronJob after the
    /// reconciliation does), so the gauges and alerts follow the latest imports, repairs and
    /// payments. One line a tenant; exits 3 while any has an open difference.
    Refresh {
        /// YYYY-MM, `previous` or `current` (each tenant's month in its time zone).
        #[arg(long, default_value = "previous")]
        period: String,
    },
    /// Record why a difference on a month statement is as it is (shown as `explained`).
    Explain {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        period: String,
        /// The difference's subject as the statement lists it (a booking id, `line 8 (…)`,
        /// `invoice`).
        #[arg(long)]
        subject: String,
        /// The difference's kind, e.g. deposit_refund_due.
        #[arg(long)]
        kind: String,
        /// The explanation (at most 500 characters).
        #[arg(long)]
        note: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
    Pdf,
}

/// The statement CSV's columns (one row per booking); new ones only ever at the end.
pub const STATEMENT_COLUMNS: [&str; 16] = [
    "tenant_id",
    "period",
    "booking_ref",
    "session_at_utc",
    "simplybook",
    "ledger_status",
    "total",
    "platform_fee",
    "billable",
    "invoiced_fee",
    "deposit_expected",
    "deposit_received",
    "deposit_received_on",
    "deposit_outcome",
    "differences",
    "difference_status",
];

const LEGS: Table<4> = Table::new([
    left("LEG", 20),
    right("COUNT", 6),
    right("AMOUNT", 14),
    last("DETAIL"),
]);

const DIFFERENCES: Table<4> = Table::new([
    left("SUBJECT", 28),
    left("KIND", 22),
    left("STATUS", 10),
    last("DETAIL"),
]);

pub async fn run(conn: &Conn, json: bool, cmd: ReportCmd) -> anyhow::Result<Outcome> {
    match cmd {
        ReportCmd::Month {
            tenant,
            period,
            format,
            out,
        } => {
            let statement = conn
                .invoicing()?
                .get_month_statement(GetMonthStatementRequest {
                    tenant_id: tenant,
                    period,
                })
                .await
                .context("composing the month statement")?
                .into_inner();
            let format = if json { Format::Json } else { format };
            let bytes = match format {
                Format::Table => {
                    print_statement(&statement);
                    None
                }
                Format::Json => {
                    let mut text = serde_json::to_vec_pretty(&statement_json(&statement))?;
                    text.push(b'\n');
                    Some(text)
                }
                Format::Csv => Some(statement_csv(&statement)?),
                Format::Pdf => Some(
                    conn.notifier()?
                        .render_statement_pdf(RenderStatementPdfRequest {
                            statement: Some(statement.clone()),
                        })
                        .await
                        .context("rendering the statement")?
                        .into_inner()
                        .pdf,
                ),
            };
            if let Some(bytes) = bytes {
                match out {
                    Some(path) => std::fs::write(&path, &bytes)
                        .with_context(|| format!("writing {}", path.display()))?,
                    None => output::stdout().write_all(&bytes)?,
                }
            }
            Ok(Outcome::attention_unless(statement.open_differences == 0))
        }
        ReportCmd::Refresh { period } => refresh(conn, json, &period).await,
        ReportCmd::Explain {
            tenant,
            period,
            subject,
            kind,
            note,
        } => {
            let d = conn
                .invoicing()?
                .explain_statement_difference(ExplainStatementDifferenceRequest {
                    tenant_id: tenant,
                    period,
                    subject,
                    kind,
                    explanation: note,
                })
                .await
                .context("explaining the difference")?
                .into_inner();
            if json {
                output::print_json_line(&serde_json::json!({
                    "subject": d.subject, "kind": d.kind, "status": d.status,
                    "explanation": d.explanation, "detail": d.detail,
                }));
            } else {
                outln!("{} {}: {} ({})", d.subject, d.kind, d.status, d.explanation);
            }
            Ok(Outcome::Done)
        }
    }
}

const REFRESHED: Table<4> = Table::new([
    left("TENANT", 16),
    left("PERIOD", 8),
    right("OPEN", 6),
    last("MISSING DEPOSITS"),
]);

/// Composes every tenant's statement of `period`; attention while one has an open difference.
async fn refresh(conn: &Conn, json: bool, period: &str) -> anyhow::Result<Outcome> {
    let mut invoicing = conn.invoicing()?;
    let profiles = invoicing
        .list_tenant_profiles(ListTenantProfilesRequest {})
        .await
        .context("listing tenants")?
        .into_inner()
        .profiles;
    let mut statements = Vec::with_capacity(profiles.len());
    for p in &profiles {
        let s = invoicing
            .get_month_statement(GetMonthStatementRequest {
                tenant_id: p.tenant_id.clone(),
                period: period.to_string(),
            })
            .await
            .with_context(|| format!("composing {}'s month statement", p.tenant_id))?
            .into_inner();
        statements.push(s);
    }
    let missing = |s: &MonthStatement| {
        s.bookings
            .iter()
            .filter(|b| b.deposit_outcome == "missing")
            .count()
    };
    let row_json = |s: &MonthStatement| {
        serde_json::json!({
            "tenant": s.tenant_id, "period": s.period, "open_differences": s.open_differences,
            "missing_deposits": missing(s),
        })
    };
    output::print_list(json, &statements, row_json, |statements| {
        REFRESHED.header();
        for s in statements {
            REFRESHED.row([&s.tenant_id, &s.period, &s.open_differences, &missing(s)]);
        }
    })?;
    Ok(Outcome::attention_unless(
        statements.iter().all(|s| s.open_differences == 0),
    ))
}

fn print_statement(s: &MonthStatement) {
    outln!(
        "Month statement of {} ({}) for {}: {} open difference(s); invoice {}",
        s.tenant_id,
        s.tenant_name,
        s.period,
        s.open_differences,
        if s.invoice_number.is_empty() {
            "none".to_string()
        } else {
            format!("{} ({})", s.invoice_number, s.invoice_status)
        }
    );
    LEGS.header();
    for l in s.booking_legs.iter().chain(&s.fee_legs) {
        LEGS.row([&l.name, &l.count, &amount(l.amount.as_ref()), &l.detail]);
    }
    if s.differences.is_empty() {
        outln!("no differences");
        return;
    }
    outln!();
    DIFFERENCES.header();
    for d in &s.differences {
        let detail = if d.explanation.is_empty() {
            d.detail.clone()
        } else {
            format!("{} — {}", d.detail, d.explanation)
        };
        DIFFERENCES.row([&d.subject, &d.kind, &d.status, &detail]);
    }
}

fn leg_json(l: &StatementLeg) -> serde_json::Value {
    serde_json::json!({
        "name": l.name, "count": l.count, "amount": amount(l.amount.as_ref()), "detail": l.detail,
    })
}

fn statement_json(s: &MonthStatement) -> serde_json::Value {
    serde_json::json!({
        "tenant": s.tenant_id, "period": s.period, "tenant_name": s.tenant_name,
        "currency": s.currency, "composed_at": json_time(s.composed_at.as_ref()),
        "invoice_number": s.invoice_number, "invoice_status": s.invoice_status,
        "open_differences": s.open_differences,
        "booking_legs": s.booking_legs.iter().map(leg_json).collect::<Vec<_>>(),
        "fee_legs": s.fee_legs.iter().map(leg_json).collect::<Vec<_>>(),
        "bookings": s.bookings.iter().map(|b| serde_json::json!({
            "booking_ref": b.booking_ref, "session_at": json_time(b.session_at.as_ref()),
            "simplybook": b.simplybook, "ledger_status": b.ledger_status,
            "total": amount(b.total.as_ref()), "platform_fee": amount(b.platform_fee.as_ref()),
            "billable": b.billable, "invoiced_fee": amount(b.invoiced_fee.as_ref()),
            "deposit_expected": amount(b.deposit_expected.as_ref()),
            "deposit_received": amount(b.deposit_received.as_ref()),
            "deposit_received_on": b.deposit_received_on, "deposit_outcome": b.deposit_outcome,
            "differences": b.differences,
        })).collect::<Vec<_>>(),
        "differences": s.differences.iter().map(|d| serde_json::json!({
            "subject": d.subject, "kind": d.kind, "detail": d.detail, "status": d.status,
            "explanation": d.explanation, "first_seen": json_time(d.first_seen.as_ref()),
            "fixed_at": json_time(d.fixed_at.as_ref()),
        })).collect::<Vec<_>>(),
    })
}

/// A plain decimal, as the exports write amounts (the currency is the tenant's).
fn plain(m: Option<&Money>) -> String {
    m.map(|m| m.amount.clone()).unwrap_or_default()
}

fn statement_csv(s: &MonthStatement) -> anyhow::Result<Vec<u8>> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(STATEMENT_COLUMNS)?;
    for b in &s.bookings {
        let statuses: Vec<&str> = s
            .differences
            .iter()
            .filter(|d| d.subject == b.booking_ref)
            .map(|d| d.status.as_str())
            .collect();
        csv.write_record([
            s.tenant_id.as_str(),
            s.period.as_str(),
            b.booking_ref.as_str(),
            utc_minute(b.session_at.as_ref()).as_str(),
            b.simplybook.as_str(),
            b.ledger_status.as_str(),
            plain(b.total.as_ref()).as_str(),
            plain(b.platform_fee.as_ref()).as_str(),
            if b.billable { "yes" } else { "no" },
            plain(b.invoiced_fee.as_ref()).as_str(),
            plain(b.deposit_expected.as_ref()).as_str(),
            plain(b.deposit_received.as_ref()).as_str(),
            b.deposit_received_on.as_str(),
            b.deposit_outcome.as_str(),
            b.differences.join(";").as_str(),
            statuses.join(";").as_str(),
        ])?;
    }
    Ok(csv.into_inner()?)
}
