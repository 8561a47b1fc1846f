//! How amounts, rates and dates read in PDFs and emails.

use chrono::NaiveDate;
use rust_decimal::Decimal;

/// 0.1 → "10%", 0.0825 → "8.25%".
pub fn percent(rate: Decimal) -> String {
    format!("{}%", (rate * Decimal::ONE_HUNDRED).normalize())
}

/// "CUR 1,234.50"
pub fn money(m: Option<&billing_proto::Money>) -> String {
    m.map(|m| format!("{} {}", m.currency_code, group_thousands(&m.amount)))
        .unwrap_or_default()
}

/// "1,234.50" (the currency is in the column header).
pub fn amount(m: Option<&billing_proto::Money>) -> String {
    m.map(|m| group_thousands(&m.amount)).unwrap_or_default()
}

fn group_thousands(amount: &str) -> String {
    let (sign, digits) = match amount.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", amount),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let mut grouped = String::with_capacity(amount.len() + int.len() / 3);
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// "2026-11-01" → "1 November 2026"; anything else unchanged.
pub fn long_date(date: &str) -> String {
    NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map(|d| d.format("%-d %B %Y").to_string())
        .unwrap_or_else(|_| date.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_group_thousands_and_rates_print_as_percent() {
        assert_eq!(group_thousands("2999900.00"), "2,999,900.00");
        assert_eq!(group_thousands("-1000"), "-1,000");
        assert_eq!(group_thousands("999.99"), "999.99");
        assert_eq!(group_thousands("0.50"), "0.50");
        assert_eq!(percent("0.1".parse().expect("rate")), "10%");
        assert_eq!(percent("0.0825".parse().expect("rate")), "8.25%");
        assert_eq!(long_date("2026-11-01"), "1 November 2026");
    }
}
