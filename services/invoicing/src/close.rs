//! The monthly close of one tenant: ask the ledger what is billable in the tenant's month and
//! what changed in months already invoiced, bill each booking's difference from what live
//! invoices already billed for it, and issue exactly one invoice.
//!
//! The rule that keeps every booking billed once: a line is always "what the booking is worth
//! now − what live invoices billed for it so far". A booking billed for the first time in its
//! own month is a booking line; any other difference (a cancellation or price revision after
//! the booking was invoiced, a booking recorded after its month was closed) is an adjustment
//! line on the next invoice. Issued invoices are never edited.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use billing_domain::{BillingPeriod, Currency};
use billing_proto::convert::{amount, datetime, timestamp};
use billing_proto::events::AlertV1;
use billing_proto::ledger::ledger_service_client::LedgerServiceClient;
use billing_proto::ledger::{Booking, GetBookingsRequest, SummarizePeriodRequest};
use billing_runtime::trace::TracedChannel;
use chrono::{DateTime, Days, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::profile::{Mode, Profile};
use crate::store::{
    Billed, InvoiceRow, LINE_ADJUSTMENT, LINE_BOOKING, LineRow, Mark, NewInvoice, Status, Store,
};
use crate::stripe::{PushError, StripeBilling};

/// What the close did (or, in a dry run, would do) for one tenant.
#[derive(Debug)]
pub enum Closed {
    Issued(InvoiceRow),
    AlreadyIssued(InvoiceRow),
    NothingBillable,
    WouldIssue(Box<NewInvoice>),
}

#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    #[error("period {period} has not ended yet in {zone}")]
    PeriodNotOver { period: BillingPeriod, zone: String },
    #[error("the ledger is unavailable: {0}")]
    Ledger(tonic::Status),
    #[error("the ledger's data does not add up: {0}")]
    Inconsistent(String),
    #[error(
        "invoice {number} is kept as a draft because Stripe failed ({source}); run the close again to finish it"
    )]
    Stripe {
        number: String,
        invoice: Box<InvoiceRow>,
        source: PushError,
    },
    #[error("tenant is in Stripe mode but no Stripe API key is configured")]
    StripeNotConfigured,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl CloseError {
    /// A refusal of the request itself (a month not over yet), not a failure to alert on.
    pub fn is_refusal(&self) -> bool {
        matches!(self, CloseError::PeriodNotOver { .. })
    }
}

/// Most booking ids per GetBookings call (the ledger's limit).
const IDS_PER_CALL: usize = 10_000;

#[derive(Clone)]
pub struct MonthlyClose {
    store: Store,
    ledger: LedgerServiceClient<TracedChannel>,
    stripe: Option<StripeBilling>,
    /// Printed on manual-mode invoices; `{number}` becomes the invoice number.
    bank_instructions: String,
    relay: Arc<Notify>,
}

impl MonthlyClose {
    pub fn new(
        store: Store,
        ledger: LedgerServiceClient<TracedChannel>,
        stripe: Option<StripeBilling>,
        bank_details: &str,
        relay: Arc<Notify>,
    ) -> Self {
        let bank_instructions = match bank_details.trim() {
            "" => "Pay by bank transfer, quoting reference {number}.".to_string(),
            details => format!("Pay by bank transfer to {details}, quoting reference {{number}}."),
        };
        MonthlyClose {
            store,
            ledger,
            stripe,
            bank_instructions,
            relay,
        }
    }

    #[tracing::instrument(skip_all, fields(tenant = %profile.tenant_id, %period, dry_run))]
    pub async fn close(
        &self,
        profile: &Profile,
        period: BillingPeriod,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Closed, CloseError> {
        let tenant = profile.tenant_id.as_str();
        let period_key = period.to_string();
        let (start, end) = period.bounds(profile.time_zone);
        if now < end {
            return Err(CloseError::PeriodNotOver {
                period,
                zone: profile.time_zone.to_string(),
            });
        }
        {
            let mut conn = self.store.pool().acquire().await?;
            if let Some(existing) = self.store.find_live(&mut conn, tenant, &period_key).await? {
                drop(conn);
                return self.finish(profile, existing, now, dry_run).await;
            }
        }

        // Marks first, then the ledger (both before taking the tenant's lock: no lock across
        // RPCs). In this order a change is never lost: one marked before the marks were read is
        // already in the ledger's answer; one marked later keeps its mark for the next close.
        let closed = self.store.closed_periods(tenant).await?;
        let marks = self.store.marks_before(tenant, end).await?;
        let in_period = self.billable(tenant, profile.currency, start, end).await?;
        let in_period_ids: HashSet<Uuid> = in_period.iter().map(|b| b.id).collect();
        let month_of = |m: &Mark| BillingPeriod::containing(m.session_at, profile.time_zone);
        // Marks this close settles: every mark in the period (its booking is billed or not
        // billed right here), and marks in earlier months that were already closed.
        let settled: Vec<&Mark> = marks
            .iter()
            .filter(|m| {
                let month = month_of(m);
                month == period || (month < period && closed.contains(&month.to_string()))
            })
            .collect();
        let to_fetch: Vec<Uuid> = settled
            .iter()
            .map(|m| m.booking_id)
            .filter(|id| !in_period_ids.contains(id))
            .collect();
        let changed = self.current(tenant, profile.currency, &to_fetch).await?;

        let mut tx = self.store.begin().await?;
        self.store.lock_tenant(&mut tx, tenant).await?;
        if let Some(existing) = self.store.find_live(&mut tx, tenant, &period_key).await? {
            tx.rollback().await?;
            return self.finish(profile, existing, now, dry_run).await;
        }
        let ids: Vec<Uuid> = in_period_ids
            .iter()
            .copied()
            .chain(changed.iter().map(|b| b.id))
            .collect();
        let billed = self.store.billed(&mut tx, tenant, &ids).await?;
        let lines = plan_lines(&in_period, &changed, &billed, profile.time_zone);
        if lines.is_empty() {
            if !dry_run {
                self.store.clear_marks(&mut tx, tenant, &settled).await?;
                self.store
                    .record_outcome(&mut tx, tenant, &period_key, "nothing_billable", None, "")
                    .await?;
                tx.commit().await?;
            }
            return Ok(Closed::NothingBillable);
        }

        let invoice = self.new_invoice(profile, period, start, end, now, lines);
        if dry_run {
            tx.rollback().await?;
            return Ok(Closed::WouldIssue(Box::new(invoice)));
        }
        if profile.mode == Mode::Stripe && self.stripe.is_none() {
            return Err(CloseError::StripeNotConfigured);
        }
        let mut row = self.store.insert_draft(&mut tx, &invoice).await?;
        self.store.clear_marks(&mut tx, tenant, &settled).await?;
        if profile.mode == Mode::Manual {
            row = self
                .store
                .transition(
                    &mut tx,
                    &row,
                    Status::Issued,
                    "issued by the monthly close",
                    now,
                )
                .await?;
            // Credits outweigh the month's fees: nothing is owed, so nothing can fall overdue.
            if row.total <= Decimal::ZERO {
                let reason = if row.total.is_zero() {
                    "nothing to pay".to_string()
                } else {
                    format!(
                        "nothing to pay; a credit of {} is owed to the tenant",
                        -row.total
                    )
                };
                row = self
                    .store
                    .transition(&mut tx, &row, Status::Paid, &reason, now)
                    .await?;
            }
        }
        self.store
            .record_outcome(
                &mut tx,
                tenant,
                &period_key,
                "issued",
                Some(row.id),
                &row.number,
            )
            .await?;
        tx.commit().await?;
        self.relay.notify_one();
        metrics::counter!("invoicing_invoices_issued_total").increment(1);
        tracing::info!(number = %row.number, total = %row.total, "invoice made");
        match self.finish(profile, row, now, false).await? {
            Closed::AlreadyIssued(row) => Ok(Closed::Issued(row)),
            other => Ok(other),
        }
    }

    /// Records a failed close and, unless the request was refused, raises
    /// `alerts.invoice_generation_failed` in the same transaction: one alert per tenant, period
    /// and day, however often the run is retried.
    pub async fn record_failure(
        &self,
        tenant: &str,
        period: &str,
        invoice_id: Option<Uuid>,
        error: &CloseError,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.store.begin().await?;
        self.store
            .record_outcome(&mut tx, tenant, period, "failed", invoice_id, detail)
            .await?;
        if error.is_refusal() {
            return tx.commit().await;
        }
        let alert = AlertV1 {
            alert_id: format!(
                "invoice_generation_failed:{tenant}:{period}:{}",
                now.date_naive()
            ),
            kind: "invoice_generation_failed".into(),
            severity: "critical".into(),
            summary: format!("The {period} invoice for tenant {tenant} could not be generated"),
            details: format!(
                "The monthly close failed: {detail}. Once the cause is fixed, run \
                 `billingctl invoices generate --period {period} --tenant {tenant}` again; a \
                 retry never duplicates an invoice."
            ),
            tenant_id: tenant.to_string(),
            source: "invoicing".into(),
            raised_at: Some(timestamp(now)),
        };
        self.store.raise_alert(&mut tx, &alert).await?;
        tx.commit().await?;
        self.relay.notify_one();
        Ok(())
    }

    /// An invoice that already exists: a Stripe draft is pushed on (then reported as issued by
    /// this call); anything else is returned as it is.
    async fn finish(
        &self,
        profile: &Profile,
        invoice: InvoiceRow,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Closed, CloseError> {
        if dry_run || invoice.status() != Status::Draft {
            return Ok(Closed::AlreadyIssued(invoice));
        }
        let stripe = self
            .stripe
            .as_ref()
            .ok_or(CloseError::StripeNotConfigured)?;
        match stripe.push(profile, &invoice, now).await {
            Ok(issued) => {
                self.relay.notify_one();
                Ok(Closed::Issued(issued))
            }
            Err(source) => {
                metrics::counter!("invoicing_stripe_failures_total").increment(1);
                Err(CloseError::Stripe {
                    number: invoice.number.clone(),
                    invoice: Box::new(invoice),
                    source,
                })
            }
        }
    }

    fn new_invoice(
        &self,
        profile: &Profile,
        period: BillingPeriod,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        now: DateTime<Utc>,
        mut lines: Vec<LineRow>,
    ) -> NewInvoice {
        let currency = profile.currency;
        for (i, line) in lines.iter_mut().enumerate() {
            line.position = i32::try_from(i + 1).unwrap_or(i32::MAX);
        }
        let subtotal: Decimal = lines.iter().map(|l| l.platform_fee).sum();
        let total_booking_value = lines
            .iter()
            .filter(|l| l.kind == LINE_BOOKING)
            .map(|l| l.booking_amount)
            .sum();
        let tax = tax_on(subtotal, profile.tax_rate, currency);
        let issue_date = now.with_timezone(&profile.time_zone).date_naive();
        NewInvoice {
            id: Uuid::now_v7(),
            tenant_id: profile.tenant_id.clone(),
            period: period.to_string(),
            number_prefix: profile.invoice_prefix.clone(),
            number_year: period.year(),
            tenant_name: profile.legal_name.clone(),
            billing_email: profile.billing_email.clone(),
            address: profile.address.clone(),
            tax_id: profile.tax_id.clone(),
            time_zone: profile.time_zone.to_string(),
            currency,
            invoicing_mode: profile.mode.as_str().to_string(),
            payment_instructions: match profile.mode {
                Mode::Manual => self.bank_instructions.clone(),
                Mode::Stripe => "Pay online through the Stripe link sent with this invoice.".into(),
            },
            period_start: start,
            period_end: end,
            issue_date,
            due_date: issue_date + Days::new(u64::from(profile.payment_terms_days)),
            total_booking_value,
            subtotal,
            tax_rate: profile.tax_rate,
            tax,
            total: subtotal + tax,
            lines,
        }
    }

    /// The billable bookings with sessions in `[start, end)`, checked against the ledger's own
    /// totals.
    async fn billable(
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
    async fn current(
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
fn tax_on(subtotal: Decimal, rate: Decimal, currency: Currency) -> Decimal {
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
