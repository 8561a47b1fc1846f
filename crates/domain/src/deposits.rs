//! Deposits received: which booking a statement line names, and what a booking's deposits add up
//! to.
//!
//! A client pays a booking's deposit into the practitioner's account (HNRY, a bank, a payment
//! processor); the export of that account is read like a bank statement ([`crate::bank`]). A line
//! names a booking by SimplyBook's booking id in its reference or description. Banks mangle
//! references (case, spaces, punctuation, a prefix glued on: `BK9301`, `bk-9301`, `93 01`), so
//! an id is looked for among the text's digit runs, letters and punctuation being separators, and
//! digit groups split by one space or hyphen joined again; but an id must be a whole run or
//! group, never a part of one: `12` is not named by `123`, nor by `2026-12-05`.
//! Alphanumeric references are compared as [`crate::bank::mentions`] compares invoice numbers.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::bank::mentions;

/// The numbers of `text` an id could be: each run of digits (letters and punctuation end it),
/// where runs glued by a single hyphen are one number written without its hyphens, and runs
/// glued by `.`, `,` or `/` are an amount or a date and name nothing; then each chain of numbers
/// separated by exactly one space, joined (a bank's line wrap or spacing).
fn digit_runs(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let digit_at = |i: usize| chars.get(i).is_some_and(char::is_ascii_digit);
    // (number, usable as an id, followed by one space and another number)
    let mut numbers: Vec<(String, bool, bool)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let (mut digits, mut usable) = (String::new(), true);
        while i < chars.len() {
            let c = chars[i];
            if c.is_ascii_digit() {
                digits.push(c);
            } else if matches!(c, '-' | '.' | ',' | '/')
                && i > 0
                && digit_at(i - 1)
                && digit_at(i + 1)
            {
                usable &= c == '-';
            } else {
                break;
            }
            i += 1;
        }
        let spaced = chars.get(i) == Some(&' ') && digit_at(i + 1);
        numbers.push((digits, usable, spaced));
    }
    let mut found: Vec<String> = numbers
        .iter()
        .filter(|(_, usable, _)| *usable)
        .map(|(n, _, _)| n.clone())
        .collect();
    for start in 0..numbers.len() {
        let mut joined = numbers[start].0.clone();
        let mut usable = numbers[start].1;
        let mut j = start;
        while numbers[j].2 && j + 1 < numbers.len() {
            j += 1;
            joined.push_str(&numbers[j].0);
            usable &= numbers[j].1;
            if usable {
                found.push(joined.clone());
            }
        }
    }
    found
}

/// Whether `text` names booking `booking_ref`, however the bank mangled it, but never by a part
/// of a longer id.
pub fn names_booking(text: &str, booking_ref: &str) -> bool {
    let wanted = booking_ref.trim();
    if wanted.is_empty() {
        return false;
    }
    if wanted.bytes().all(|b| b.is_ascii_digit()) {
        return digit_runs(text).iter().any(|run| run == wanted);
    }
    mentions(text, wanted)
}

/// What in `text` could be a booking reference: its digit runs and groups (see
/// [`names_booking`]) and its words' letters and digits, upper-cased. The ledger looks these up
/// among a tenant's bookings, then confirms each with [`names_booking`].
pub fn reference_tokens(text: &str) -> Vec<String> {
    let mut tokens = digit_runs(text);
    for word in text.split(|c: char| c.is_whitespace() || c == '/') {
        let letters = crate::bank::normalize(word);
        if !letters.is_empty() && !letters.bytes().all(|b| b.is_ascii_digit()) {
            tokens.push(letters.to_lowercase());
            tokens.push(letters);
            tokens.push(word.trim().to_string());
        }
    }
    tokens.sort();
    tokens.dedup();
    tokens
}

/// A booking's deposit, as received against what was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepositOutcome {
    /// Received in full.
    Received,
    /// Less than the deposit received.
    Short,
    /// More than the deposit received (paid twice?).
    Overpaid,
    /// The session has passed and nothing was received.
    Missing,
    /// Nothing received yet, and the session is still to come.
    Awaiting,
    /// Money received for a booking that was cancelled: a refund may be due.
    RefundDue,
    /// Cancelled (or not billable) and nothing received: nothing due.
    NotDue,
}

impl DepositOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            DepositOutcome::Received => "received",
            DepositOutcome::Short => "short",
            DepositOutcome::Overpaid => "overpaid",
            DepositOutcome::Missing => "missing",
            DepositOutcome::Awaiting => "awaiting",
            DepositOutcome::RefundDue => "refund_due",
            DepositOutcome::NotDue => "not_due",
        }
    }

    /// Whether this is a difference a person must look at.
    pub fn is_difference(&self) -> bool {
        matches!(
            self,
            DepositOutcome::Short
                | DepositOutcome::Overpaid
                | DepositOutcome::Missing
                | DepositOutcome::RefundDue
        )
    }

    /// The outcome for a booking in `status` whose session is at `session_at`, with `expected`
    /// as its deposit and `received` the sum of the lines matched to it, as of `now`.
    pub fn of(
        status: &str,
        session_at: DateTime<Utc>,
        expected: Decimal,
        received: Decimal,
        now: DateTime<Utc>,
    ) -> Self {
        // Cancelled bookings owe no deposit; a no-show's deposit is the practitioner's to keep,
        // so it is due like a confirmed booking's.
        if status == "cancelled" {
            return if received > Decimal::ZERO {
                DepositOutcome::RefundDue
            } else {
                DepositOutcome::NotDue
            };
        }
        if received == Decimal::ZERO {
            return if session_at <= now {
                DepositOutcome::Missing
            } else {
                DepositOutcome::Awaiting
            };
        }
        match received.cmp(&expected) {
            std::cmp::Ordering::Equal => DepositOutcome::Received,
            std::cmp::Ordering::Less => DepositOutcome::Short,
            std::cmp::Ordering::Greater => DepositOutcome::Overpaid,
        }
    }
}

/// Whether a line received on `received_on` for `amount` could be the deposit of a booking with
/// session `session_date` and deposit `deposit`: the same amount, paid at most
/// [`CANDIDATE_DAYS_BEFORE`] days before the session and at most [`CANDIDATE_DAYS_AFTER`] after.
/// Only ever offered to a person, never applied.
pub fn could_be_deposit(
    received_on: NaiveDate,
    amount: Decimal,
    session_date: NaiveDate,
    deposit: Decimal,
) -> bool {
    let days = (session_date - received_on).num_days();
    amount == deposit && (-CANDIDATE_DAYS_AFTER..=CANDIDATE_DAYS_BEFORE).contains(&days)
}

/// How long before a session its deposit may be paid and still be offered as a candidate.
pub const CANDIDATE_DAYS_BEFORE: i64 = 90;
/// How long after a session its deposit may arrive and still be offered as a candidate.
pub const CANDIDATE_DAYS_AFTER: i64 = 14;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_booking_id_is_found_however_the_bank_wrote_it() {
        for text in [
            "9301",
            "Deposit booking 9301",
            "BK9301",
            "bk-9301 thanks",
            "SB#9301/DEP",
            "93 01",
            "ref: 9301.",
        ] {
            assert!(names_booking(text, "9301"), "{text}");
        }
    }

    #[test]
    fn a_longer_id_never_names_a_shorter_one() {
        for text in [
            "123",
            "9123",
            "2026-12-05",
            "1234 deposit",
            "12.50",
            "",
            "twelve",
        ] {
            assert!(!names_booking(text, "12"), "{text}");
        }
        assert!(names_booking("booking 12 paid", "12"));
        assert!(names_booking("bk12", "12"));
        // A two-group id needs both groups.
        assert!(!names_booking("93 01", "93011"));
        assert!(!names_booking("", ""));
    }

    #[test]
    fn codes_with_letters_are_compared_as_letters_and_digits() {
        assert!(names_booking("deposit AB-12cd", "ab12cd"));
        assert!(!names_booking("deposit XAB12CD", "ab12cd"));
        assert!(!names_booking("deposit AB12CD9", "ab12cd"));
    }

    #[test]
    fn tokens_hold_every_id_a_line_could_name() {
        let tokens = reference_tokens("Deposit BK-93 01 for 2026-11-05, code Ab12");
        // A date is one number, never its parts.
        assert!(!tokens.iter().any(|t| t == "2026"), "{tokens:?}");
        for wanted in ["93", "01", "9301", "20261105", "AB12", "ab12"] {
            assert!(tokens.iter().any(|t| t == wanted), "{wanted}: {tokens:?}");
        }
    }

    fn d(s: &str) -> Decimal {
        s.parse().expect("decimal")
    }

    #[test]
    fn each_booking_has_one_deposit_outcome() {
        let now: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().expect("time");
        let past: DateTime<Utc> = "2026-11-10T00:00:00Z".parse().expect("time");
        let future: DateTime<Utc> = "2026-12-10T00:00:00Z".parse().expect("time");
        let cases = [
            (
                "confirmed",
                past,
                "20.00",
                "20.00",
                DepositOutcome::Received,
            ),
            ("confirmed", past, "20.00", "10.00", DepositOutcome::Short),
            (
                "completed",
                past,
                "20.00",
                "40.00",
                DepositOutcome::Overpaid,
            ),
            ("confirmed", past, "20.00", "0", DepositOutcome::Missing),
            ("no_show", past, "20.00", "0", DepositOutcome::Missing),
            ("confirmed", future, "20.00", "0", DepositOutcome::Awaiting),
            (
                "cancelled",
                past,
                "20.00",
                "20.00",
                DepositOutcome::RefundDue,
            ),
            ("cancelled", past, "20.00", "0", DepositOutcome::NotDue),
        ];
        for (status, at, expected, received, outcome) in cases {
            assert_eq!(
                DepositOutcome::of(status, at, d(expected), d(received), now),
                outcome,
                "{status} {expected} {received}"
            );
        }
        assert!(DepositOutcome::Missing.is_difference());
        assert!(!DepositOutcome::Awaiting.is_difference());
    }

    #[test]
    fn a_candidate_has_the_amount_and_a_date_near_the_session() {
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        let session = day("2026-11-20");
        assert!(could_be_deposit(
            day("2026-11-01"),
            d("20"),
            session,
            d("20.00")
        ));
        assert!(could_be_deposit(
            day("2026-12-04"),
            d("20"),
            session,
            d("20.00")
        ));
        assert!(!could_be_deposit(
            day("2026-12-05"),
            d("20"),
            session,
            d("20.00")
        ));
        assert!(!could_be_deposit(
            day("2026-11-01"),
            d("20.01"),
            session,
            d("20.00")
        ));
    }
}
