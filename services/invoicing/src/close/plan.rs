//! What an invoice bills, decided without I/O: the lines from the ledger's bookings and what
//! live invoices already billed for them (the rule in the [module docs](super)), and the tax.

use std::collections::{HashMap, HashSet};

use billing_domain::{BillingPeriod, Currency};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::store::{Billed, LINE_ADJUSTMENT, LINE_BOOKING, LineRow};

/// A booking as the ledger reports it now, with amounts in the tenant's currency.
#[derive(Debug, Clone)]
pub struct LedgerBooking {
    pub id: Uuid,
    pub booking_ref: String,
    pub status: String,
    pub session_at: DateTime<Utc>,
    pub service_name: String,
    pub total: Decimal,
    pub fee: Decimal,
}

impl LedgerBooking {
    /// Confirmed and completed bookings are billed; cancelled and no-show ones are not.
    fn billable(&self) -> bool {
        matches!(self.status.as_str(), "confirmed" | "completed")
    }
}

/// The lines of an invoice: booking lines for the period's billable bookings never billed
/// before (oldest session first), then an adjustment line for each booking whose worth now
/// differs from what live invoices billed for it. Positions are given when the invoice is made.
pub fn plan_lines(
    in_period: &[LedgerBooking],
    changed: &[LedgerBooking],
    billed: &HashMap<Uuid, Billed>,
    tz: Tz,
) -> Vec<LineRow> {
    let mut bookings = Vec::new();
    let mut adjustments = Vec::new();
    let in_period_ids: HashSet<Uuid> = in_period.iter().map(|b| b.id).collect();
    let others = changed.iter().filter(|b| !in_period_ids.contains(&b.id));
    for b in in_period.iter().chain(others) {
        let (total, fee) = if b.billable() {
            (b.total, b.fee)
        } else {
            (Decimal::ZERO, Decimal::ZERO)
        };
        let line = |kind: &str, booking_amount, platform_fee, description| LineRow {
            position: 0,
            kind: kind.to_string(),
            booking_id: b.id,
            booking_ref: b.booking_ref.clone(),
            session_at: b.session_at,
            service_name: b.service_name.clone(),
            booking_amount,
            platform_fee,
            description,
        };
        match billed.get(&b.id) {
            None if in_period_ids.contains(&b.id) => {
                bookings.push(line(LINE_BOOKING, total, fee, String::new()));
            }
            None if b.billable() => {
                let month = BillingPeriod::containing(b.session_at, tz);
                let description = format!("session in {month}, recorded after {month} was closed");
                adjustments.push(line(LINE_ADJUSTMENT, total, fee, description));
            }
            None => {}
            Some(prior) if prior.fee != fee || prior.amount != total => {
                // Neutral wording: the same difference arises from a cancellation, a price
                // revision, or a month invoiced again after a void.
                let now = if b.billable() {
                    format!("booking now {total}")
                } else {
                    b.status.replace('_', "-")
                };
                let description = format!(
                    "{now}; {} billed up to invoice {}",
                    prior.amount, prior.last_number
                );
                adjustments.push(line(
                    LINE_ADJUSTMENT,
                    total - prior.amount,
                    fee - prior.fee,
                    description,
                ));
            }
            Some(_) => {}
        }
    }
    adjustments.sort_by(|a, b| (a.session_at, &a.booking_ref).cmp(&(b.session_at, &b.booking_ref)));
    bookings.extend(adjustments);
    bookings
}

/// Tax on the fees, rounded half up at the currency's exponent.
pub(super) fn tax_on(subtotal: Decimal, rate: Decimal, currency: Currency) -> Decimal {
    currency.round(subtotal * rate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn booking(n: u128, status: &str, total: i64, fee: i64) -> LedgerBooking {
        LedgerBooking {
            id: Uuid::from_u128(n),
            booking_ref: format!("B{n}"),
            status: status.into(),
            session_at: Utc
                .with_ymd_and_hms(2026, 10, 10, 1, 0, 0)
                .single()
                .expect("time"),
            service_name: "Massage".into(),
            total: Decimal::new(total, 2),
            fee: Decimal::new(fee, 2),
        }
    }

    fn billed(fee: i64, amount: i64) -> Billed {
        Billed {
            fee: Decimal::new(fee, 2),
            amount: Decimal::new(amount, 2),
            last_number: "CLAIRE-2026-0001".into(),
        }
    }

    const TZ: Tz = chrono_tz::Australia::Sydney;

    #[test]
    fn new_bookings_of_the_period_are_booking_lines() {
        let lines = plan_lines(
            &[booking(1, "confirmed", 15000, 3000)],
            &[],
            &HashMap::new(),
            TZ,
        );
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].kind, LINE_BOOKING);
        assert_eq!(lines[0].platform_fee, Decimal::new(3000, 2));
    }

    #[test]
    fn a_cancellation_after_invoicing_credits_what_was_billed() {
        let billed = HashMap::from([(Uuid::from_u128(7), billed(3000, 15000))]);
        let lines = plan_lines(&[], &[booking(7, "cancelled", 15000, 3000)], &billed, TZ);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].kind, LINE_ADJUSTMENT);
        assert_eq!(lines[0].platform_fee, Decimal::new(-3000, 2));
        assert_eq!(lines[0].booking_amount, Decimal::new(-15000, 2));
        assert_eq!(
            lines[0].description,
            "cancelled; 150.00 billed up to invoice CLAIRE-2026-0001"
        );
    }

    #[test]
    fn a_price_revision_bills_the_difference_and_an_unchanged_booking_nothing() {
        let billed = HashMap::from([
            (Uuid::from_u128(7), billed(3000, 15000)),
            (Uuid::from_u128(8), billed(3000, 15000)),
        ]);
        let revised = booking(7, "confirmed", 20000, 4000);
        let same = booking(8, "completed", 15000, 3000);
        let lines = plan_lines(&[], &[revised, same], &billed, TZ);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].platform_fee, Decimal::new(1000, 2));
        assert_eq!(
            lines[0].description,
            "booking now 200.00; 150.00 billed up to invoice CLAIRE-2026-0001"
        );
    }

    #[test]
    fn a_booking_already_billed_is_never_billed_again_as_a_booking_line() {
        // E.g. billed late as an adjustment, then its own month is closed again after a void.
        let billed = HashMap::from([(Uuid::from_u128(1), billed(3000, 15000))]);
        let lines = plan_lines(&[booking(1, "confirmed", 15000, 3000)], &[], &billed, TZ);
        assert!(lines.is_empty(), "{lines:?}");
    }

    #[test]
    fn a_late_booking_in_a_closed_month_is_an_adjustment_and_cancelled_unbilled_is_nothing() {
        let late = booking(3, "confirmed", 10001, 2000);
        let never = booking(4, "cancelled", 10000, 2000);
        let lines = plan_lines(&[], &[late, never], &HashMap::new(), TZ);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].platform_fee, Decimal::new(2000, 2));
        assert_eq!(
            lines[0].description,
            "session in 2026-10, recorded after 2026-10 was closed"
        );
    }

    #[test]
    fn tax_rounds_half_up_at_the_currency_exponent() {
        let aud: Currency = "AUD".parse().expect("AUD");
        let jpy: Currency = "JPY".parse().expect("JPY");
        assert_eq!(
            tax_on(Decimal::new(7505, 2), Decimal::new(10, 2), aud),
            Decimal::new(751, 2)
        );
        assert_eq!(
            tax_on(Decimal::new(4005, 0), Decimal::new(10, 2), jpy),
            Decimal::new(401, 0)
        );
    }
}
