//! `billingctl export`: a tenant's bookings or invoices (with their lines) for a month, as CSV or
//! JSON an accountant can import. Rows are written as pages arrive, so memory stays flat however
//! large the month. The CSV columns are fixed: new ones may be added at the end, none renamed.
//!
//! CSV cells are safe to open in a spreadsheet ([`spreadsheet_safe`]): a client's or service's
//! name such as `=HYPERLINK(…)` arrives as text, never as a formula. JSON is written as is.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;

use anyhow::Context as _;
use billing_domain::BillingPeriod;
use billing_proto::Money;
use billing_proto::convert::{datetime, timestamp};
use billing_proto::invoicing::{GetInvoiceRequest, Invoice, ListInvoicesRequest};
use billing_proto::ledger::{
    Booking, BookingDeposit, GetBookingDepositsRequest, ListBookingsRequest,
};

use crate::clients::{self, Conn};
use crate::exit::{InputError, Outcome};
use crate::output::{self, invoice_json};
use crate::progress::Progress;

#[derive(clap::Subcommand)]
pub enum ExportWhat {
    /// Bookings with sessions in the month (tenant's time zone), one row each.
    Bookings(ExportArgs),
    /// The month's invoices, one row per invoice line.
    Invoices(ExportArgs),
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[arg(long)]
    tenant: String,
    /// YYYY-MM
    #[arg(long)]
    period: String,
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
    /// Write here instead of standard output.
    #[arg(long, short)]
    out: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

/// Writes the export to standard output, or to `--out` under a temporary name renamed when
/// complete, so a failed export never leaves a partial month that looks whole.
pub async fn run(conn: &Conn, what: ExportWhat) -> anyhow::Result<Outcome> {
    let (is_bookings, args) = match what {
        ExportWhat::Bookings(args) => (true, args),
        ExportWhat::Invoices(args) => (false, args),
    };
    let partial = args.out.as_ref().map(|path| {
        let mut name = path.as_os_str().to_owned();
        name.push(".partial");
        std::path::PathBuf::from(name)
    });
    let out: Box<dyn Write> = match &partial {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(output::stdout())),
    };
    let written = if is_bookings {
        bookings(conn, &args.tenant, &args.period, args.format, out).await
    } else {
        invoices(conn, &args.tenant, &args.period, args.format, out).await
    };
    let written = match (written, &partial) {
        (Ok(n), _) => n,
        (Err(err), Some(path)) => {
            let _ = std::fs::remove_file(path);
            return Err(err);
        }
        (Err(err), None) => return Err(err),
    };
    if let (Some(partial), Some(path)) = (&partial, &args.out) {
        std::fs::rename(partial, path)
            .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
        eprintln!("wrote {written} record(s) to {}", path.display());
    }
    Ok(Outcome::Done)
}

/// The bookings CSV's columns, in order.
pub const BOOKING_COLUMNS: [&str; 20] = [
    "tenant_id",
    "booking_ref",
    "status",
    "session_at_utc",
    "session_at_local",
    "service",
    "currency",
    "total",
    "deposit",
    "cash",
    "platform_fee",
    "deposit_rate",
    "platform_fee_rate",
    "revision",
    "recorded_at_utc",
    "record_hash",
    // The deposit received (the ledger's deposit receipts: `reconcile deposits`).
    "deposit_received",
    "deposit_received_on",
    "deposit_outcome",
    "deposit_lines",
];

/// The invoices CSV's columns: one row per invoice line, the invoice's fields repeated.
pub const INVOICE_COLUMNS: [&str; 23] = [
    "invoice_number",
    "invoice_id",
    "tenant_id",
    "period",
    "status",
    "issue_date",
    "due_date",
    "currency",
    "booking_value",
    "subtotal",
    "tax_rate",
    "tax",
    "total",
    "amount_paid",
    "balance",
    "line",
    "line_kind",
    "booking_ref",
    "session_at_utc",
    "service",
    "booking_amount",
    "platform_fee",
    "line_description",
];

fn amount(m: Option<&Money>) -> String {
    m.map(|m| m.amount.clone()).unwrap_or_default()
}

fn rfc3339(t: Option<&prost_types::Timestamp>) -> String {
    datetime(t)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A CSV cell as a spreadsheet must show it: as text, never a formula (OWASP, CSV injection).
/// A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return (or the full-width
/// `＝＋－＠` some spreadsheets also read as one) gets a leading `'`, which spreadsheets hide
/// and which makes the rest plain text. A plain negative decimal (`-12.50`, a credit or an
/// adjustment) is left as it is: it is a number, not a formula, and must add up as one.
pub fn spreadsheet_safe(cell: &str) -> Cow<'_, str> {
    let formula_like = cell.starts_with(['=', '+', '-', '@', '\t', '\r', '＝', '＋', '－', '＠']);
    if formula_like && !is_negative_decimal(cell) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// `-` then digits, optionally `.` and digits: `-12.50`, `-3`; not `-1+1`, `-`, `-.5`.
fn is_negative_decimal(cell: &str) -> bool {
    let Some(number) = cell.strip_prefix('-') else {
        return false;
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && digits(fraction)
}

/// Writes CSV records or the elements of one JSON array, as they come.
struct Sink<W: Write> {
    csv: Option<csv::Writer<W>>,
    json: Option<W>,
    first: bool,
}

impl<W: Write> Sink<W> {
    fn new(out: W, format: Format, header: &[&str]) -> anyhow::Result<Self> {
        match format {
            Format::Csv => {
                let mut csv = csv::Writer::from_writer(out);
                csv.write_record(header)?;
                Ok(Sink {
                    csv: Some(csv),
                    json: None,
                    first: true,
                })
            }
            Format::Json => {
                let mut out = out;
                out.write_all(b"[")?;
                Ok(Sink {
                    csv: None,
                    json: Some(out),
                    first: true,
                })
            }
        }
    }

    fn csv_row(&mut self, row: &[String]) -> anyhow::Result<()> {
        if let Some(csv) = &mut self.csv {
            csv.write_record(row.iter().map(|cell| spreadsheet_safe(cell).into_owned()))?;
        }
        Ok(())
    }

    fn json_item(&mut self, item: &serde_json::Value) -> anyhow::Result<()> {
        if let Some(out) = &mut self.json {
            if !self.first {
                out.write_all(b",")?;
            }
            out.write_all(b"\n")?;
            serde_json::to_writer(&mut *out, item)?;
            self.first = false;
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        if let Some(mut csv) = self.csv {
            csv.flush()?;
        }
        if let Some(mut out) = self.json {
            out.write_all(b"\n]\n")?;
            out.flush()?;
        }
        Ok(())
    }
}

/// The tenant's time zone (from its billing profile) and the month's bounds in it.
async fn month(
    conn: &Conn,
    tenant: &str,
    period: &str,
) -> anyhow::Result<(
    chrono_tz::Tz,
    prost_types::Timestamp,
    prost_types::Timestamp,
)> {
    let period: BillingPeriod = period
        .parse()
        .map_err(|e: billing_domain::period::PeriodParseError| InputError(e.to_string()))?;
    let profile = clients::profile(&mut conn.invoicing()?, tenant).await?;
    let tz: chrono_tz::Tz = profile
        .time_zone
        .parse()
        .map_err(|_| anyhow::anyhow!("tenant {tenant} has time zone {:?}", profile.time_zone))?;
    let (start, end) = period.bounds(tz);
    Ok((tz, timestamp(start), timestamp(end)))
}

/// Every booking of `tenant` with a session in `period`, oldest first.
async fn bookings(
    conn: &Conn,
    tenant: &str,
    period: &str,
    format: Format,
    out: impl Write,
) -> anyhow::Result<u64> {
    let (tz, from, to) = month(conn, tenant, period).await?;
    let mut ledger = conn.ledger()?;
    let mut sink = Sink::new(out, format, &BOOKING_COLUMNS)?;
    let mut progress = Progress::new("bookings exported", None);
    let mut page_token = String::new();
    let mut written = 0u64;
    loop {
        let page = ledger
            .list_bookings(ListBookingsRequest {
                tenant_id: tenant.to_string(),
                from: Some(from),
                to: Some(to),
                limit: 1000,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .context("listing bookings")?
            .into_inner();
        let refs: Vec<String> = page
            .bookings
            .iter()
            .map(|b| b.booking_ref.clone())
            .collect();
        let deposits: HashMap<String, BookingDeposit> = ledger
            .get_booking_deposits(GetBookingDepositsRequest {
                tenant_id: tenant.to_string(),
                booking_refs: refs,
            })
            .await
            .context("reading deposits received")?
            .into_inner()
            .bookings
            .into_iter()
            .map(|d| (d.booking_ref.clone(), d))
            .collect();
        for b in &page.bookings {
            write_booking(&mut sink, b, deposits.get(&b.booking_ref), tz)?;
            written += 1;
        }
        progress.set(written);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    progress.done();
    sink.finish()?;
    Ok(written)
}

fn write_booking<W: Write>(
    sink: &mut Sink<W>,
    b: &Booking,
    deposit: Option<&BookingDeposit>,
    tz: chrono_tz::Tz,
) -> anyhow::Result<()> {
    let local = datetime(b.session_at.as_ref())
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default();
    let currency = b
        .total
        .as_ref()
        .map(|m| m.currency_code.clone())
        .unwrap_or_default();
    let row = [
        b.tenant_id.clone(),
        b.booking_ref.clone(),
        b.status.clone(),
        rfc3339(b.session_at.as_ref()),
        local,
        b.service_name.clone(),
        currency,
        amount(b.total.as_ref()),
        amount(b.deposit.as_ref()),
        amount(b.cash.as_ref()),
        amount(b.platform_fee.as_ref()),
        b.deposit_rate.clone(),
        b.platform_fee_rate.clone(),
        b.revision.to_string(),
        rfc3339(b.recorded_at.as_ref()),
        b.record_hash.clone(),
        amount(deposit.and_then(|d| d.received.as_ref())),
        deposit
            .map(|d| d.last_received_on.clone())
            .unwrap_or_default(),
        deposit.map(|d| d.outcome.clone()).unwrap_or_default(),
        deposit.map(|d| d.lines.join("; ")).unwrap_or_default(),
    ];
    sink.csv_row(&row)?;
    let item: serde_json::Map<String, serde_json::Value> = BOOKING_COLUMNS
        .iter()
        .zip(row)
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
        .collect();
    sink.json_item(&serde_json::Value::Object(item))
}

/// Every invoice of `tenant` for `period` with its lines.
async fn invoices(
    conn: &Conn,
    tenant: &str,
    period: &str,
    format: Format,
    out: impl Write,
) -> anyhow::Result<u64> {
    period
        .parse::<BillingPeriod>()
        .map_err(|e| InputError(e.to_string()))?;
    let mut invoicing = conn.invoicing()?;
    // An unknown tenant is an error that names it, not an empty export.
    clients::profile(&mut invoicing, tenant).await?;
    let list = invoicing
        .list_invoices(ListInvoicesRequest {
            tenant_id: tenant.to_string(),
            period: period.to_string(),
            status: String::new(),
        })
        .await
        .context("listing invoices")?
        .into_inner()
        .invoices;
    let mut sink = Sink::new(out, format, &INVOICE_COLUMNS)?;
    let mut progress = Progress::new("invoices exported", Some(list.len() as u64));
    let mut written = 0u64;
    for summary in &list {
        let invoice = invoicing
            .get_invoice(GetInvoiceRequest {
                invoice_id: summary.id.clone(),
            })
            .await
            .with_context(|| format!("reading invoice {}", summary.number))?
            .into_inner();
        write_invoice(&mut sink, &invoice)?;
        written += 1;
        progress.set(written);
    }
    progress.done();
    sink.finish()?;
    Ok(written)
}

fn write_invoice<W: Write>(sink: &mut Sink<W>, i: &Invoice) -> anyhow::Result<()> {
    sink.json_item(&invoice_json(i))?;
    let head = [
        i.number.clone(),
        i.id.clone(),
        i.tenant_id.clone(),
        i.period.clone(),
        i.status.clone(),
        i.issue_date.clone(),
        i.due_date.clone(),
        i.total
            .as_ref()
            .map(|m| m.currency_code.clone())
            .unwrap_or_default(),
        amount(i.total_booking_value.as_ref()),
        amount(i.subtotal.as_ref()),
        i.tax_rate.clone(),
        amount(i.tax.as_ref()),
        amount(i.total.as_ref()),
        amount(i.amount_paid.as_ref()),
        amount(i.balance.as_ref()),
    ];
    if i.lines.is_empty() {
        let mut row = head.to_vec();
        row.resize(INVOICE_COLUMNS.len(), String::new());
        return sink.csv_row(&row);
    }
    for l in &i.lines {
        let mut row = head.to_vec();
        row.extend([
            l.position.to_string(),
            l.kind.clone(),
            l.booking_ref.clone(),
            rfc3339(l.session_at.as_ref()),
            l.service_name.clone(),
            amount(l.booking_amount.as_ref()),
            amount(l.platform_fee.as_ref()),
            l.description.clone(),
        ]);
        sink.csv_row(&row)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_negative_amounts_stay_numbers() {
        for (cell, safe) in [
            (
                "=HYPERLINK(\"http://evil.example\",\"Click\")",
                "'=HYPERLINK(\"http://evil.example\",\"Click\")",
            ),
            ("+61 400 000 000", "'+61 400 000 000"),
            ("-1+cmd|' /C calc'!A0", "'-1+cmd|' /C calc'!A0"),
            ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
            ("\t=1+1", "'\t=1+1"),
            ("\r=1+1", "'\r=1+1"),
            ("＝1+1", "'＝1+1"),
            ("-", "'-"),
            ("-.5", "'-.5"),
            ("-12.", "'-12."),
            ("-12.50e3", "'-12.50e3"),
            ("-12.50", "-12.50"),
            ("-3", "-3"),
            ("-0.01", "-0.01"),
            ("12.50", "12.50"),
            ("Remedial massage 60 min", "Remedial massage 60 min"),
            ("a=b", "a=b"),
            ("", ""),
            ("2026-10-31T12:30:00Z", "2026-10-31T12:30:00Z"),
        ] {
            assert_eq!(spreadsheet_safe(cell), safe, "{cell:?}");
        }
    }

    #[test]
    fn csv_rows_are_written_neutralised() {
        let mut out = Vec::new();
        let mut sink = Sink::new(&mut out, Format::Csv, &["service", "amount"]).expect("sink");
        sink.csv_row(&["=1+1".to_string(), "-12.50".to_string()])
            .expect("row");
        sink.finish().expect("finish");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "service,amount\n'=1+1,-12.50\n"
        );
    }
}
