//! What billingctl prints on stdout: JSON (pretty, or compact on one line), fixed-width
//! tables, and the money and time formats they share. Everything on stdout goes through
//! [`out!`] and [`outln!`] (`print!` and `println!`, which clippy refuses here) or [`stdout`], so
//! that a reader closing the pipe early ends the run quietly ([`exit::stdout_failed`]).
//!
//! # JSON (`--json`, and `export --format json`)
//!
//! One rule for every command, so a script reads each the same way:
//! - A command that answers with a list prints a bare JSON array of objects, `[]` when there is
//!   nothing, even when it asked for one tenant or one invoice: `bookings list`, `clients show`
//!   (each booking with its `details`, `null` once erased, and `erased_at`), `dlq list`,
//!   `events list`, `invoices generate`, `invoices list`, `invoices sweep-overdue`,
//!   `invoices emails`, `tenants list`, `reconcile simplybook`, `reconcile bank`,
//!   `simplybook check`, and `export … --format json` (written element by element as pages
//!   arrive).
//! - A command about one thing prints one object: `bookings show` (`{"booking", "history",
//!   "revisions"}`), `bookings verify`, `invoices show`, `invoices pay` (`{"recorded",
//!   "overpaid", "invoice"}`), `invoices void`, `invoices pdf`, `tenants show`, `tenants set`,
//!   `dlq replay` (`{"replayed", "dead_letter"}`), `clients erase` (`{"tenant", "outcome",
//!   "keys_erased", "keys_already_erased", "bookings"}`), `clients rewrap` (`{"rewrapped",
//!   "remaining", "current_kek"}`, with `--all` `rewrapped` counting every call's). `show`
//!   prints it pretty; the others, which act, on one compact line.
//! - Field names are `snake_case`. The tenant's id is `tenant`; a record's own id is `id`, any
//!   other id `<thing>_id` (`invoice_id`, `event_id`). A thing printed in several places is built
//!   by one function ([`invoice_json`], each command's `*_json`), so it has the same fields
//!   wherever it appears.
//! - Values: money as [`amount`] writes it (`"AUD 54.02"`, `""` when missing); times RFC 3339
//!   in UTC, `null` when missing ([`json_time`]); dates `YYYY-MM-DD`; statuses, outcomes and
//!   kinds as the lowercase `snake_case` words the services use (`partially_paid`,
//!   `already_issued`), never the tables' words.
//! - Two exceptions, each mirroring a file from or for outside: `export bookings --format json`
//!   is the CSV in JSON for accountants, each row an object keyed by the CSV's fixed columns
//!   (`tenant_id`, `session_at_local`, amounts without their currency, every value a string), so
//!   the two formats of one export agree; and `reconcile bank` gives each transfer's `amount`,
//!   `reference` and `received_on` as the statement had them (the amount without a currency,
//!   which a statement need not name).

use std::fmt::{Display, Write as _};
use std::io::Write as _;

use billing_proto::convert::datetime;
use billing_proto::invoicing::Invoice;

use crate::exit;

/// `print!` for billingctl's output: a failed write ends the run as [`exit::stdout_failed`] says
/// (quietly, status 0, when the reader has gone) where `print!` would panic.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*), false)
    };
}

/// `println!` for billingctl's output, as [`out!`].
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*), true)
    };
}

pub(crate) use {out, outln};

/// What [`out!`] and [`outln!`] do: `args` (and a newline) on stdout, or the end of the run.
pub fn write_stdout(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout.write_fmt(args).and_then(|()| {
        if newline {
            stdout.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    if let Err(err) = written {
        exit::stdout_failed(&err);
    }
}

/// Standard output as a writer, for what is streamed as it comes (exports).
pub struct Stdout(std::io::StdoutLock<'static>);

/// Standard output as a writer: a reader that went away ends the run as
/// [`exit::stdout_failed`] says; any other error is returned to the command, as before.
pub fn stdout() -> Stdout {
    Stdout(std::io::stdout().lock())
}

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).inspect_err(end_if_gone)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().inspect_err(end_if_gone)
    }
}

fn end_if_gone(err: &std::io::Error) {
    if err.kind() == std::io::ErrorKind::BrokenPipe {
        exit::stdout_failed(err);
    }
}

/// Pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Compact JSON on one line of stdout (the single result of a command that acts).
pub fn print_json_line(value: &serde_json::Value) {
    outln!("{value}");
}

/// `items` as one pretty JSON array when `json`, else as `table` prints them.
pub fn print_list<T>(
    json: bool,
    items: &[T],
    to_json: impl Fn(&T) -> serde_json::Value,
    table: impl FnOnce(&[T]),
) -> anyhow::Result<()> {
    if json {
        print_json(&items.iter().map(to_json).collect::<Vec<_>>())
    } else {
        table(items);
        Ok(())
    }
}

/// How a column's cells line up.
#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// A table column: its title and width (cells are padded to it, never cut).
#[derive(Clone, Copy)]
pub struct Column {
    title: &'static str,
    width: usize,
    align: Align,
}

/// A left-aligned column.
pub const fn left(title: &'static str, width: usize) -> Column {
    Column {
        title,
        width,
        align: Align::Left,
    }
}

/// A right-aligned column (amounts, counts).
pub const fn right(title: &'static str, width: usize) -> Column {
    Column {
        title,
        width,
        align: Align::Right,
    }
}

/// The last column: not padded, so lines carry no trailing spaces.
pub const fn last(title: &'static str) -> Column {
    left(title, 0)
}

/// A fixed-width table: columns separated by one space, each line after `indent`.
pub struct Table<const N: usize> {
    indent: &'static str,
    columns: [Column; N],
}

impl<const N: usize> Table<N> {
    pub const fn new(columns: [Column; N]) -> Self {
        Table {
            indent: "",
            columns,
        }
    }

    /// The same table, each line starting with `indent`.
    pub const fn indented(indent: &'static str, columns: [Column; N]) -> Self {
        Table { indent, columns }
    }

    /// Prints the titles.
    pub fn header(&self) {
        let titles = self.columns.each_ref().map(|c| &c.title as &dyn Display);
        outln!("{}", self.line(titles));
    }

    /// Prints one row.
    pub fn row(&self, cells: [&dyn Display; N]) {
        outln!("{}", self.line(cells));
    }

    fn line(&self, cells: [&dyn Display; N]) -> String {
        let mut line = String::from(self.indent);
        for (i, (column, cell)) in self.columns.iter().zip(cells).enumerate() {
            if i > 0 {
                line.push(' ');
            }
            let width = column.width;
            let _ = match column.align {
                Align::Left => write!(line, "{cell:<width$}"),
                Align::Right => write!(line, "{cell:>width$}"),
            };
        }
        line
    }
}

/// `AUD 54.02`, or empty when the amount is missing.
pub fn amount(m: Option<&billing_proto::Money>) -> String {
    m.map(|m| format!("{} {}", m.currency_code, m.amount))
        .unwrap_or_default()
}

/// `2026-10-14 23:30` (UTC), or empty when the timestamp is missing.
pub fn utc_minute(t: Option<&prost_types::Timestamp>) -> String {
    datetime(t)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// A time in JSON output: RFC 3339, or null when the timestamp is missing.
pub fn json_time(t: Option<&prost_types::Timestamp>) -> Option<String> {
    datetime(t).map(|t| t.to_rfc3339())
}

/// An invoice with its lines, history and payments, as every `invoices` command and the JSON
/// export print it.
pub fn invoice_json(i: &Invoice) -> serde_json::Value {
    serde_json::json!({
        "id": i.id, "number": i.number, "tenant": i.tenant_id, "period": i.period,
        "status": i.status, "issue_date": i.issue_date, "due_date": i.due_date,
        "booking_count": i.booking_count, "total_booking_value": amount(i.total_booking_value.as_ref()),
        "subtotal": amount(i.subtotal.as_ref()), "tax": amount(i.tax.as_ref()),
        "total": amount(i.total.as_ref()), "amount_paid": amount(i.amount_paid.as_ref()),
        "balance": amount(i.balance.as_ref()), "stripe_invoice_id": i.stripe_invoice_id,
        "payment_instructions": i.payment_instructions,
        "lines": i.lines.iter().map(|l| serde_json::json!({
            "position": l.position, "booking_ref": l.booking_ref,
            "session_at": json_time(l.session_at.as_ref()),
            "service": l.service_name, "booking_amount": amount(l.booking_amount.as_ref()),
            "platform_fee": amount(l.platform_fee.as_ref()), "kind": l.kind,
            "description": l.description,
        })).collect::<Vec<_>>(),
        "history": i.history.iter().map(|h| serde_json::json!({
            "from": h.from_status, "to": h.to_status, "reason": h.reason,
            "at": json_time(h.changed_at.as_ref()),
        })).collect::<Vec<_>>(),
        "payments": i.payments.iter().map(|p| serde_json::json!({
            "method": p.method, "amount": amount(p.amount.as_ref()), "received_on": p.received_on,
            "reference": p.reference,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_lines_up_as_format_would() {
        const T: Table<4> = Table::new([
            left("ID", 4),
            right("TOTAL", 8),
            left("NAME", 6),
            last("WHY"),
        ]);
        let (id, total, name, why) = (7u64, "AUD 1.00", "Zoë", "late");
        assert_eq!(
            T.line([&"ID", &"TOTAL", &"NAME", &"WHY"]),
            format!("{:<4} {:>8} {:<6} WHY", "ID", "TOTAL", "NAME")
        );
        assert_eq!(
            T.line([&id, &total, &name, &why]),
            format!("{id:<4} {total:>8} {name:<6} {why}")
        );
        // A cell wider than its column pushes the rest right; it is never cut.
        let long = "a name longer than six";
        assert_eq!(
            T.line([&12345u64, &total, &long, &why]),
            format!("12345 {total:>8} {long:<6} {why}")
        );
        const I: Table<2> = Table::indented("  ", [left("A", 3), last("B")]);
        assert_eq!(I.line([&"x", &"y"]), "  x   y");
    }
}
