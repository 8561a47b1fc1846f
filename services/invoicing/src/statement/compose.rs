//! The month statement composed: a pure function of the ledger's month and the invoice, tested
//! over every kind of difference.

use std::collections::{BTreeMap, HashMap};

use billing_domain::{BookingStatus, Currency};
use billing_proto::Money;
use billing_proto::convert::{amount, money};
use billing_proto::invoicing::{StatementBooking, StatementLeg};
use billing_proto::ledger::GetMonthDepositsResponse;
use rust_decimal::Decimal;

use crate::store::{Found, InvoiceRow, InvoiceStatus, LINE_BOOKING, LineRow};

/// A deposit outcome that is a difference (see `billing_domain::deposits::DepositOutcome`).
const DEPOSIT_DIFFERENCES: [&str; 4] = ["missing", "short", "overpaid", "refund_due"];

/// A statement as composed, before its differences are recorded.
#[derive(Debug, Default)]
pub struct Composed {
    pub booking_legs: Vec<StatementLeg>,
    pub fee_legs: Vec<StatementLeg>,
    pub bookings: Vec<StatementBooking>,
    pub found: Vec<Found>,
    pub missing_deposits: usize,
}

fn leg(
    name: &str,
    count: usize,
    sum: Option<Decimal>,
    currency: Currency,
    detail: String,
) -> StatementLeg {
    StatementLeg {
        name: name.into(),
        count: u32::try_from(count).unwrap_or(u32::MAX),
        amount: sum.map(|s| money(currency.code(), currency.format(s))),
        detail,
    }
}

fn value(m: Option<&Money>) -> Decimal {
    amount(m).unwrap_or_default()
}

/// The statement of `month` (the ledger's) and `invoice` (the month's live invoice and its
/// lines, if the month was closed).
pub fn compose(
    month: &GetMonthDepositsResponse,
    invoice: Option<(&InvoiceRow, &[LineRow])>,
    payments: usize,
    currency: Currency,
) -> Composed {
    let mut c = Composed::default();
    let fmt = |d: Decimal| currency.format(d);
    let mut found = |subject: &str, kind: &str, detail: String| {
        c.found
            .push((subject.to_string(), kind.to_string(), detail));
    };

    // SimplyBook, as last reconciled.
    let gaps: HashMap<&str, &str> = month
        .reconciliation
        .iter()
        .flat_map(|r| r.gaps.iter())
        .map(|g| (g.booking_ref.as_str(), g.kind.as_str()))
        .collect();
    match &month.reconciliation {
        None => found(
            "simplybook",
            "not_reconciled",
            "SimplyBook was not asked about this month (billingctl reconcile simplybook)".into(),
        ),
        Some(r) if !r.error.is_empty() => found("simplybook", "not_reconciled", r.error.clone()),
        Some(r) => {
            for g in &r.gaps {
                found(
                    &g.booking_ref,
                    &g.kind,
                    format!(
                        "SimplyBook: {}; ledger: {}",
                        or_none(&g.simplybook),
                        or_none(&g.ledger)
                    ),
                );
            }
        }
    }
    let simplybook_detail = match &month.reconciliation {
        None => "not reconciled".to_string(),
        Some(r) => format!(
            "as of {}: {} gap(s), {} matched",
            r.ran_at
                .as_ref()
                .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default(),
            r.gaps.len(),
            r.matched
        ),
    };

    // The ledger's bookings, by status.
    let mut by_status: BTreeMap<&str, (usize, Decimal)> = BTreeMap::new();
    for b in &month.bookings {
        let entry = by_status.entry(b.status.as_str()).or_default();
        entry.0 += 1;
        entry.1 += value(b.total.as_ref());
    }
    let billable = |status: &str| BookingStatus::parse(status).is_some_and(|s| s.is_billable());

    // The invoice's booking lines of this month (adjustments bill other months' changes).
    let lines: HashMap<&str, Decimal> = invoice
        .map(|(_, lines)| {
            lines
                .iter()
                .filter(|l| l.kind == LINE_BOOKING)
                .map(|l| (l.booking_ref.as_str(), l.platform_fee))
                .collect()
        })
        .unwrap_or_default();
    let invoiced_value: Decimal = invoice
        .map(|(_, lines)| {
            lines
                .iter()
                .filter(|l| l.kind == LINE_BOOKING)
                .map(|l| l.booking_amount)
                .sum()
        })
        .unwrap_or_default();

    let (mut expected_n, mut expected_sum) = (0usize, Decimal::ZERO);
    let (mut received_n, mut received_sum) = (0usize, Decimal::ZERO);
    let (mut billable_n, mut fees) = (0usize, Decimal::ZERO);
    for b in &month.bookings {
        let fee = value(b.platform_fee.as_ref());
        let expected = value(b.expected.as_ref());
        let received = value(b.received.as_ref());
        if b.outcome != "not_due" && b.outcome != "refund_due" {
            expected_n += 1;
            expected_sum += expected;
        }
        if received > Decimal::ZERO {
            received_n += 1;
            received_sum += received;
        }
        let is_billable = billable(&b.status);
        if is_billable {
            billable_n += 1;
            fees += fee;
        }
        let mut kinds: Vec<String> = Vec::new();
        if let Some(kind) = gaps.get(b.booking_ref.as_str()) {
            kinds.push((*kind).to_string());
        }
        if DEPOSIT_DIFFERENCES.contains(&b.outcome.as_str()) {
            let kind = format!("deposit_{}", b.outcome);
            found(
                &b.booking_ref,
                &kind,
                format!("expected {}, received {}", fmt(expected), fmt(received)),
            );
            kinds.push(kind);
            if b.outcome == "missing" {
                c.missing_deposits += 1;
            }
        }
        let invoiced = lines.get(b.booking_ref.as_str()).copied();
        if invoice.is_some() {
            let kind = match (is_billable, invoiced) {
                (true, None) => Some(("billable_not_invoiced", format!("fee {}", fmt(fee)))),
                (true, Some(f)) if f != fee => Some((
                    "fee_differs",
                    format!("invoiced {}, ledger {}", fmt(f), fmt(fee)),
                )),
                (false, Some(f)) => Some((
                    "invoiced_not_billable",
                    format!("invoiced {}; ledger status {}", fmt(f), b.status),
                )),
                _ => None,
            };
            if let Some((kind, detail)) = kind {
                found(&b.booking_ref, kind, detail);
                kinds.push(kind.into());
            }
        }
        c.bookings.push(StatementBooking {
            booking_ref: b.booking_ref.clone(),
            session_at: b.session_at,
            simplybook: match &month.reconciliation {
                Some(r) if r.error.is_empty() => gaps
                    .get(b.booking_ref.as_str())
                    .map_or("matched", |k| k)
                    .to_string(),
                _ => "not_reconciled".into(),
            },
            ledger_status: b.status.clone(),
            total: b.total.clone(),
            platform_fee: b.platform_fee.clone(),
            billable: is_billable,
            invoiced_fee: invoiced.map(|f| money(currency.code(), fmt(f))),
            deposit_expected: b.expected.clone(),
            deposit_received: b.received.clone(),
            deposit_received_on: b.last_received_on.clone(),
            deposit_outcome: b.outcome.clone(),
            differences: kinds,
        });
    }
    // SimplyBook's bookings the ledger does not have, after the ledger's.
    for (booking_ref, kind) in &gaps {
        if !month.bookings.iter().any(|b| b.booking_ref == *booking_ref) {
            c.bookings.push(StatementBooking {
                booking_ref: (*booking_ref).to_string(),
                simplybook: (*kind).to_string(),
                differences: vec![(*kind).to_string()],
                ..Default::default()
            });
        }
    }
    c.bookings[month.bookings.len()..].sort_by(|a, b| a.booking_ref.cmp(&b.booking_ref));
    // Invoice lines for bookings the ledger has not got this month.
    for (booking_ref, fee) in &lines {
        if !month.bookings.iter().any(|b| b.booking_ref == *booking_ref) {
            found(
                booking_ref,
                "invoiced_not_billable",
                format!(
                    "invoiced {}; not a booking of this month in the ledger",
                    fmt(*fee)
                ),
            );
        }
    }

    // Deposit lines that name no booking.
    let unmatched_sum: Decimal = month
        .unmatched
        .iter()
        .map(|u| value(u.amount.as_ref()))
        .sum();
    for u in &month.unmatched {
        found(
            &format!(
                "line {} ({}, {})",
                u.line,
                u.received_on,
                fmt(value(u.amount.as_ref()))
            ),
            "deposit_unmatched",
            "names no booking: match it by hand or refund it".into(),
        );
    }

    // The invoice.
    match invoice {
        None if billable_n > 0 => found(
            "invoice",
            "not_invoiced",
            format!(
                "{billable_n} billable booking(s), fees {}: the month is not closed",
                fmt(fees)
            ),
        ),
        Some((i, _)) if i.status == InvoiceStatus::Overdue => found(
            "invoice",
            "invoice_unpaid",
            format!(
                "{} total {}, paid {}, due {}",
                i.number,
                fmt(i.total),
                fmt(i.amount_paid),
                i.due_date
            ),
        ),
        _ => {}
    }

    let statuses = by_status
        .iter()
        .map(|(s, (n, _))| format!("{s} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let total_value: Decimal = by_status.values().map(|(_, v)| *v).sum();
    c.booking_legs.push(leg(
        "simplybook",
        month
            .reconciliation
            .as_ref()
            .map_or(0, |r| r.simplybook_bookings as usize),
        None,
        currency,
        simplybook_detail,
    ));
    c.booking_legs.push(leg(
        "ledger",
        month.bookings.len(),
        Some(total_value),
        currency,
        statuses,
    ));
    for (status, (n, v)) in &by_status {
        c.booking_legs.push(leg(
            &format!("ledger_{status}"),
            *n,
            Some(*v),
            currency,
            String::new(),
        ));
    }
    c.booking_legs.push(leg(
        "invoice_billable",
        lines.len(),
        invoice.map(|_| invoiced_value),
        currency,
        match invoice {
            Some((i, _)) => format!("{} ({})", i.number, i.status),
            None => "no invoice: the month is not closed".into(),
        },
    ));
    c.booking_legs.push(leg(
        "deposits_expected",
        expected_n,
        Some(expected_sum),
        currency,
        "bookings not cancelled".into(),
    ));
    c.booking_legs.push(leg(
        "deposits_received",
        received_n,
        Some(received_sum),
        currency,
        "matched to the month's bookings".into(),
    ));
    c.booking_legs.push(leg(
        "deposits_unmatched",
        month.unmatched.len(),
        Some(unmatched_sum),
        currency,
        "lines naming no booking".into(),
    ));
    c.fee_legs.push(leg(
        "fees_billable",
        billable_n,
        Some(fees),
        currency,
        "confirmed and completed".into(),
    ));
    if let Some((i, lines)) = invoice {
        let adjustments: Decimal = lines
            .iter()
            .filter(|l| l.kind != LINE_BOOKING)
            .map(|l| l.platform_fee)
            .sum();
        c.fee_legs.push(leg(
            "invoice_total",
            lines.len(),
            Some(i.total),
            currency,
            format!(
                "subtotal {}, adjustments {}, tax {}",
                fmt(i.subtotal),
                fmt(adjustments),
                fmt(i.tax)
            ),
        ));
        c.fee_legs.push(leg(
            "payments_received",
            payments,
            Some(i.amount_paid),
            currency,
            format!("balance {}", fmt(i.total - i.amount_paid)),
        ));
    }
    c
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "none" } else { s }
}

#[cfg(test)]
mod tests {
    use billing_proto::ledger::{
        BookingDeposit, MonthReconciliation, ReconciliationGap, UnmatchedDeposit,
    };
    use uuid::Uuid;

    use super::*;
    use crate::store::example_invoice;

    fn aud(a: &str) -> Option<Money> {
        Some(money("AUD", a.to_string()))
    }

    fn booking(
        r: &str,
        status: &str,
        fee: &str,
        expected: &str,
        received: &str,
        outcome: &str,
    ) -> BookingDeposit {
        BookingDeposit {
            booking_ref: r.into(),
            status: status.into(),
            total: aud("100.00"),
            platform_fee: aud(fee),
            expected: aud(expected),
            received: aud(received),
            outcome: outcome.into(),
            ..Default::default()
        }
    }

    fn line(r: &str, fee: &str) -> LineRow {
        LineRow {
            position: 0,
            booking_id: Uuid::nil(),
            booking_ref: r.into(),
            session_at: chrono::DateTime::UNIX_EPOCH,
            service_name: String::new(),
            booking_amount: "100.00".parse().expect("amount"),
            platform_fee: fee.parse().expect("fee"),
            kind: LINE_BOOKING.into(),
            description: String::new(),
        }
    }

    fn month() -> GetMonthDepositsResponse {
        GetMonthDepositsResponse {
            tenant_id: "claire".into(),
            period: "2026-10".into(),
            currency: "AUD".into(),
            bookings: vec![
                booking("1", "confirmed", "20.00", "20.00", "20.00", "received"),
                booking("2", "confirmed", "20.00", "20.00", "0.00", "missing"),
                booking("3", "cancelled", "20.00", "20.00", "20.00", "refund_due"),
                booking("4", "completed", "20.00", "20.00", "10.00", "short"),
            ],
            unmatched: vec![UnmatchedDeposit {
                line: 7,
                received_on: "2026-10-02".into(),
                amount: aud("5.00"),
                imported_at: None,
            }],
            reconciliation: Some(MonthReconciliation {
                simplybook_bookings: 5,
                gaps: vec![ReconciliationGap {
                    booking_ref: "9".into(),
                    kind: "missing_in_ledger".into(),
                    simplybook: "confirmed".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn kinds(c: &Composed) -> Vec<(&str, &str)> {
        let mut found: Vec<(&str, &str)> = c
            .found
            .iter()
            .map(|(s, k, _)| (s.as_str(), k.as_str()))
            .collect();
        found.sort_unstable();
        found
    }

    #[test]
    fn each_leg_that_disagrees_is_a_difference_by_booking() {
        let currency: Currency = "AUD".parse().expect("AUD");
        let mut invoice = example_invoice();
        invoice.total = "60.00".parse().expect("total");
        // Booking 2 is billed at another fee; booking 4 is missing from the invoice; the
        // cancelled 3 was billed.
        let lines = [line("1", "20.00"), line("2", "25.00"), line("3", "20.00")];
        let c = compose(&month(), Some((&invoice, &lines)), 1, currency);
        assert_eq!(
            kinds(&c),
            [
                ("2", "deposit_missing"),
                ("2", "fee_differs"),
                ("3", "deposit_refund_due"),
                ("3", "invoiced_not_billable"),
                ("4", "billable_not_invoiced"),
                ("4", "deposit_short"),
                ("9", "missing_in_ledger"),
                ("line 7 (2026-10-02, 5.00)", "deposit_unmatched"),
            ]
        );
        assert_eq!(c.missing_deposits, 1);
        // SimplyBook's booking the ledger lacks is listed after the ledger's.
        let refs: Vec<&str> = c.bookings.iter().map(|b| b.booking_ref.as_str()).collect();
        assert_eq!(refs, ["1", "2", "3", "4", "9"]);
        let leg = |name: &str| {
            c.booking_legs
                .iter()
                .chain(&c.fee_legs)
                .find(|l| l.name == name)
                .map(|l| (l.count, amount(l.amount.as_ref())))
        };
        let d = |s: &str| s.parse::<Decimal>().ok();
        assert_eq!(leg("ledger"), Some((4, d("400.00"))));
        assert_eq!(leg("ledger_confirmed"), Some((2, d("200.00"))));
        assert_eq!(leg("invoice_billable"), Some((3, d("300.00"))));
        assert_eq!(leg("deposits_expected"), Some((3, d("60.00"))));
        assert_eq!(leg("deposits_received"), Some((3, d("50.00"))));
        assert_eq!(leg("deposits_unmatched"), Some((1, d("5.00"))));
        assert_eq!(leg("fees_billable"), Some((3, d("60.00"))));
        assert_eq!(leg("invoice_total"), Some((3, d("60.00"))));
        assert_eq!(leg("payments_received"), Some((1, d("10.00"))));
    }

    #[test]
    fn a_month_that_agrees_has_no_difference_and_an_unclosed_one_says_so() {
        let currency: Currency = "AUD".parse().expect("AUD");
        let mut agreeing = month();
        agreeing.bookings.truncate(1);
        agreeing.unmatched.clear();
        if let Some(r) = agreeing.reconciliation.as_mut() {
            r.gaps.clear();
        }
        let invoice = example_invoice();
        let lines = [line("1", "20.00")];
        let c = compose(&agreeing, Some((&invoice, &lines)), 0, currency);
        assert!(c.found.is_empty(), "{:?}", c.found);
        let c = compose(&agreeing, None, 0, currency);
        assert_eq!(kinds(&c), [("invoice", "not_invoiced")]);
        agreeing.reconciliation = None;
        let c = compose(&agreeing, None, 0, currency);
        assert_eq!(
            kinds(&c),
            [
                ("invoice", "not_invoiced"),
                ("simplybook", "not_reconciled")
            ]
        );
    }
}
