//! Bank statements: reading the credits out of a CSV export, and the rules that match a transfer
//! to an invoice.
//!
//! Banks write amounts their own way (`$1,234.50`, `1.234,50`, `+75.10`, `(12.00)` for a debit);
//! a separator that could be read two ways is refused rather than guessed, because a decimal
//! comma read as a thousands separator books 100× the money. References come mangled (case,
//! spaces, dashes dropped), so invoice numbers are compared as letters and digits only, but must
//! start and end where a word does: `JOANN-2026-0001` does not name `ANN-2026-0001`.

use std::collections::HashMap;
use std::io::Read;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

/// Which columns hold what (header names, matched case-insensitively) and how values are written.
#[derive(Debug, Clone)]
pub struct StatementFormat {
    pub date_column: String,
    pub amount_column: String,
    pub reference_column: String,
    /// Optional: searched for invoice numbers too.
    pub description_column: String,
    pub currency_column: Option<String>,
    /// strftime, e.g. `%Y-%m-%d` or `%d/%m/%Y`.
    pub date_format: String,
    pub delimiter: u8,
    /// `1.234,50` rather than `1,234.50`.
    pub decimal_comma: bool,
}

impl Default for StatementFormat {
    fn default() -> Self {
        StatementFormat {
            date_column: "date".into(),
            amount_column: "amount".into(),
            reference_column: "reference".into(),
            description_column: "description".into(),
            currency_column: None,
            date_format: "%Y-%m-%d".into(),
            delimiter: b',',
            decimal_comma: false,
        }
    }
}

/// One credit of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    /// The line in the file (the header is line 1).
    pub line: u32,
    pub received_on: NaiveDate,
    /// Positive.
    pub amount: Decimal,
    /// Empty when the statement has no currency column.
    pub currency: String,
    pub reference: String,
    pub description: String,
    /// 1 for the first line with this date, amount and reference in the statement, 2 for an
    /// identical second transfer, and so on: what tells two real transfers apart from one
    /// transfer imported twice.
    pub occurrence: u32,
}

#[derive(Debug, Default)]
pub struct Statement {
    pub lines: Vec<StatementLine>,
    /// Debits and empty amounts, skipped.
    pub debits: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StatementError(pub String);

/// An amount cell: `Some(credit)`, `None` for a debit or an empty cell, or why it is unreadable.
pub fn parse_amount(cell: &str, decimal_comma: bool) -> Result<Option<Decimal>, String> {
    let unreadable = || format!("amount {cell:?} is not a number");
    let text: String = cell
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '$' | '€' | '£' | '¥'))
        .collect();
    if text.is_empty() || text.starts_with('-') || (text.starts_with('(') && text.ends_with(')')) {
        return Ok(None);
    }
    let text = text.strip_prefix('+').unwrap_or(&text);
    let (decimal, thousands) = if decimal_comma {
        (',', '.')
    } else {
        ('.', ',')
    };
    let (whole, fraction) = match text.split_once(decimal) {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if fraction.is_some_and(|f| !digits(f)) {
        return Err(unreadable());
    }
    // Thousands separators only in groups of three: `1,234` yes, `120,50` never.
    let groups: Vec<&str> = whole.split(thousands).collect();
    let grouped =
        groups.len() == 1 || (groups[0].len() <= 3 && groups[1..].iter().all(|g| g.len() == 3));
    if !grouped || !groups.iter().all(|g| digits(g)) {
        return Err(if groups.len() > 1 && fraction.is_none() {
            format!(
                "amount {cell:?} is ambiguous: is {thousands:?} a decimal separator? (see the \
                 decimal comma setting)"
            )
        } else {
            unreadable()
        });
    }
    let plain = match fraction {
        Some(f) => format!("{}.{f}", groups.concat()),
        None => groups.concat(),
    };
    let amount = Decimal::from_str_exact(&plain).map_err(|_| unreadable())?;
    Ok((amount > Decimal::ZERO).then_some(amount))
}

/// Upper-case ASCII letters and digits of `s`, nothing else.
pub fn normalize(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Whether `text` names invoice `number`, however separators were changed: its letters and
/// digits appear in order, starting where a word starts and not running on into more digits.
pub fn mentions(text: &str, number: &str) -> bool {
    let wanted = normalize(number);
    if wanted.is_empty() {
        return false;
    }
    // The normalized text, and for each of its characters whether a word starts there.
    let mut normalized = String::new();
    let mut starts = Vec::new();
    let mut previous_alnum = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            normalized.push(c.to_ascii_uppercase());
            starts.push(!previous_alnum);
            previous_alnum = true;
        } else {
            previous_alnum = c.is_alphanumeric();
        }
    }
    normalized.match_indices(&wanted).any(|(at, _)| {
        let after = normalized[at + wanted.len()..].chars().next();
        starts[at] && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

/// The payment idempotency key of a statement line: the same date, amount, reference (or, with
/// none, description) and occurrence are the same transfer, however the bank wrote them.
pub fn transfer_key(
    received_on: NaiveDate,
    amount: Decimal,
    reference: &str,
    description: &str,
    occurrence: u32,
) -> String {
    let mut sha = Sha256::new();
    let payer_text = match normalize(reference) {
        r if r.is_empty() => normalize(description),
        r => r,
    };
    for field in [
        received_on.to_string(),
        amount.normalize().to_string(),
        payer_text,
        occurrence.to_string(),
    ] {
        sha.update(field.as_bytes());
        sha.update([0]);
    }
    format!("statement:{}", hex::encode(sha.finalize()))
}

/// Reads a statement with a header row. Any unreadable row refuses the whole file, so a
/// statement is never half read.
pub fn read_statement(
    input: impl Read,
    format: &StatementFormat,
) -> Result<Statement, StatementError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(format.delimiter)
        .flexible(true)
        .from_reader(input);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| StatementError(format!("reading the header: {e}")))?
        .iter()
        .map(|h| h.trim().to_lowercase())
        .collect();
    let find = |name: &str| header.iter().position(|h| *h == name.trim().to_lowercase());
    let required = |name: &str| {
        find(name).ok_or_else(|| {
            StatementError(format!(
                "column {name:?} is not in the header (it has: {})",
                header.join(", ")
            ))
        })
    };
    let date = required(&format.date_column)?;
    let amount = required(&format.amount_column)?;
    let reference = required(&format.reference_column)?;
    let description = find(&format.description_column);
    let currency = match &format.currency_column {
        Some(name) => Some(required(name)?),
        None => None,
    };
    let mut statement = Statement::default();
    let mut seen: HashMap<String, u32> = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| StatementError(format!("reading the statement: {e}")))?;
        let line = record
            .position()
            .map_or(0, |p| u32::try_from(p.line()).unwrap_or(u32::MAX));
        let cell = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or("").trim();
        let Some(value) = parse_amount(cell(Some(amount)), format.decimal_comma)
            .map_err(|e| StatementError(format!("line {line}: {e}")))?
        else {
            statement.debits += 1;
            continue;
        };
        let received_on = NaiveDate::parse_from_str(cell(Some(date)), &format.date_format)
            .map_err(|_| {
                StatementError(format!(
                    "line {line}: date {:?} does not match {}",
                    cell(Some(date)),
                    format.date_format
                ))
            })?;
        let (reference, description) = (cell(Some(reference)), cell(description));
        let occurrence = seen
            .entry(transfer_key(received_on, value, reference, description, 0))
            .or_default();
        *occurrence += 1;
        statement.lines.push(StatementLine {
            line,
            received_on,
            amount: value,
            currency: cell(currency).to_string(),
            reference: reference.to_string(),
            description: description.to_string(),
            occurrence: *occurrence,
        });
    }
    Ok(statement)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().expect("decimal")
    }

    #[test]
    fn amounts_are_read_as_banks_write_them_and_never_guessed() {
        let point = |s| parse_amount(s, false);
        assert_eq!(point("$1,234.50"), Ok(Some(d("1234.50"))));
        assert_eq!(point(" +75.1 "), Ok(Some(d("75.1"))));
        assert_eq!(point("7500"), Ok(Some(d("7500"))));
        assert_eq!(point("1,234,567"), Ok(Some(d("1234567"))));
        assert_eq!(point(""), Ok(None));
        assert_eq!(point("-20.00"), Ok(None));
        assert_eq!(point("(20.00)"), Ok(None));
        assert_eq!(point("0.00"), Ok(None));
        // A decimal comma in a decimal-point statement is refused, not read as 12050.
        let err = point("120,50").expect_err("ambiguous");
        assert!(err.contains("ambiguous"), "{err}");
        for bad in ["ten", "1.2.3", "1e5", ".5", "5.", "12,34.5", "1,2345"] {
            assert!(point(bad).is_err(), "{bad}");
        }
        let comma = |s| parse_amount(s, true);
        assert_eq!(comma("120,50"), Ok(Some(d("120.50"))));
        assert_eq!(comma("1.234,56 €"), Ok(Some(d("1234.56"))));
        assert!(comma("1,234.56").is_err());
    }

    #[test]
    fn invoice_numbers_are_found_whatever_the_bank_did_to_them() {
        for text in [
            "CLAIRE-2026-0001",
            "claire 2026 0001",
            "Inv CLAIRE20260001 thanks",
            "PAYMENT/claire-2026-0001/",
        ] {
            assert!(mentions(text, "CLAIRE-2026-0001"), "{text}");
        }
        for text in [
            "CLAIRE-2026-00011",
            "CLAIRE-2026-001",
            "KENJI-2026-0001",
            "",
        ] {
            assert!(!mentions(text, "CLAIRE-2026-0001"), "{text}");
        }
        // Another tenant whose prefix ends with this one's.
        assert!(!mentions("JOANN-2026-0001", "ANN-2026-0001"));
        assert!(mentions("for ANN-2026-0001", "ANN-2026-0001"));
    }

    #[test]
    fn a_transfer_key_ignores_how_it_was_written_but_not_what_it_says() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 5).expect("date");
        let key = transfer_key(day, d("75.10"), "CLAIRE-2026-0001", "Transfer", 1);
        assert_eq!(
            key,
            transfer_key(day, d("75.1"), "claire 2026 0001", "TFR", 1)
        );
        assert_ne!(
            key,
            transfer_key(day, d("75.11"), "CLAIRE-2026-0001", "Transfer", 1)
        );
        assert_ne!(
            key,
            transfer_key(day, d("75.10"), "CLAIRE-2026-0001", "Transfer", 2)
        );
        // Without a reference the description tells transfers apart.
        assert_ne!(
            transfer_key(day, d("10"), "", "FROM A", 1),
            transfer_key(day, d("10"), "", "FROM B", 1)
        );
    }

    #[test]
    fn a_statement_is_read_by_its_columns_and_repeats_are_numbered() {
        let format = StatementFormat {
            date_column: "Date".into(),
            amount_column: "Credit".into(),
            reference_column: "Reference".into(),
            description_column: "Narrative".into(),
            date_format: "%d/%m/%Y".into(),
            delimiter: b';',
            decimal_comma: true,
            currency_column: None,
        };
        let text = "Date;Narrative;Credit;Debit;Reference\n\
                    05/11/2026;TRANSFER FROM CLAIRE H;75,10;;CLAIRE-2026-0001\n\
                    06/11/2026;CARD FEE;;2,00;\n\
                    07/11/2026;\"TRANSFER; FROM K\";\"1.500\";;KENJI 2026 0001\n\
                    07/11/2026;TRANSFER FROM K;1.500,00;;kenji-2026-0001\n";
        let s = read_statement(text.as_bytes(), &format).expect("statement");
        assert_eq!(s.debits, 1);
        assert_eq!(s.lines.len(), 3);
        let first = &s.lines[0];
        assert_eq!((first.line, first.amount), (2, d("75.10")));
        assert_eq!(first.received_on.to_string(), "2026-11-05");
        assert_eq!(first.description, "TRANSFER FROM CLAIRE H");
        assert_eq!(s.lines[1].description, "TRANSFER; FROM K");
        assert_eq!((s.lines[1].amount, s.lines[1].occurrence), (d("1500"), 1));
        // The same transfer written differently on the next line: a second one.
        assert_eq!((s.lines[2].line, s.lines[2].occurrence), (5, 2));
    }

    #[test]
    fn a_bad_statement_is_refused_whole_with_the_line() {
        let format = StatementFormat::default();
        let missing = "date,amount\n2026-11-05,1\n";
        let err = read_statement(missing.as_bytes(), &format).expect_err("no reference");
        assert!(err.0.contains("\"reference\""), "{}", err.0);
        let bad_date = "date,amount,reference\n2026-11-05,1,a\n05/11/2026,2,b\n";
        let err = read_statement(bad_date.as_bytes(), &format).expect_err("bad date");
        assert!(err.0.starts_with("line 3:"), "{}", err.0);
        let bad_amount = "date,amount,reference\n2026-11-05,ten,a\n";
        let err = read_statement(bad_amount.as_bytes(), &format).expect_err("bad amount");
        assert!(
            err.0.contains("line 2") && err.0.contains("ten"),
            "{}",
            err.0
        );
    }
}
