//! What the close asks the ledger: the billable bookings of the period (checked against the
//! ledger's own totals) and the current state of bookings changed since they were invoiced.

use billing_domain::Currency;
use billing_proto::convert::{amount, datetime, timestamp};
use billing_proto::ledger::{Booking, GetBookingsRequest, SummarizePeriodRequest};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::plan::LedgerBooking;
use super::{CloseError, MonthlyClose};

/// Most booking ids per GetBookings call (the ledger's limit).
const IDS_PER_CALL: usize = 10_000;

impl MonthlyClose {
    /// The billable bookings with sessions in `[start, end)`, checked against the ledger's own
    /// totals.
    pub(super) async fn billable(
        &self,
        tenant: &str,
        currency: Currency,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<LedgerBooking>, CloseError> {
        let summary = self
            .ledger
            .clone()
            .summarize_period(SummarizePeriodRequest {
                tenant_id: tenant.to_string(),
                start: Some(timestamp(start)),
                end: Some(timestamp(end)),
            })
            .await
            .map_err(CloseError::Ledger)?
            .into_inner();
        let bookings = summary
            .billable
            .iter()
            .map(|b| LedgerBooking::read(b, currency))
            .collect::<Result<Vec<_>, _>>()?;
        let fees: Decimal = bookings.iter().map(|b| b.fee).sum();
        let value: Decimal = bookings.iter().map(|b| b.total).sum();
        if amount(summary.platform_fee_total.as_ref()) != Some(fees)
            || amount(summary.total_booking_value.as_ref()) != Some(value)
        {
            return Err(CloseError::Inconsistent(format!(
                "bookings add up to fees {fees} on {value}, ledger totals say {:?} on {:?}",
                summary.platform_fee_total.map(|m| m.amount),
                summary.total_booking_value.map(|m| m.amount)
            )));
        }
        Ok(bookings)
    }

    /// The current state of the given bookings.
    pub(super) async fn current(
        &self,
        tenant: &str,
        currency: Currency,
        ids: &[Uuid],
    ) -> Result<Vec<LedgerBooking>, CloseError> {
        let mut bookings = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_CALL) {
            let response = self
                .ledger
                .clone()
                .get_bookings(GetBookingsRequest {
                    tenant_id: tenant.to_string(),
                    booking_ids: chunk.iter().map(Uuid::to_string).collect(),
                })
                .await
                .map_err(CloseError::Ledger)?
                .into_inner();
            for b in &response.bookings {
                bookings.push(LedgerBooking::read(b, currency)?);
            }
        }
        Ok(bookings)
    }
}

impl LedgerBooking {
    /// A booking from the ledger, whose amounts must be in the tenant's billing `currency`.
    fn read(b: &Booking, currency: Currency) -> Result<Self, CloseError> {
        let bad =
            |what: &str| CloseError::Inconsistent(format!("booking {}: {what}", b.booking_ref));
        let in_currency = |m: Option<&billing_proto::Money>| {
            m.is_some_and(|m| m.currency_code == currency.code())
        };
        let total = b.total.as_ref();
        let fee = b.platform_fee.as_ref();
        if !in_currency(total) || !in_currency(fee) {
            return Err(bad(&format!(
                "amounts are not in the billing profile's currency {}",
                currency.code()
            )));
        }
        Ok(LedgerBooking {
            id: b.id.parse().map_err(|_| bad("bad id"))?,
            booking_ref: b.booking_ref.clone(),
            status: b.status.clone(),
            session_at: datetime(b.session_at.as_ref()).ok_or_else(|| bad("no session time"))?,
            service_name: b.service_name.clone(),
            total: amount(total).ok_or_else(|| bad("no total"))?,
            fee: amount(fee).ok_or_else(|| bad("no fee"))?,
        })
    }
}
