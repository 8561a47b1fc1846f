//! The monthly close of one tenant: ask the ledger what is billable in the tenant's month and
//! what changed in months already invoiced, bill each booking's difference from what live
//! invoices already billed for it, and issue exactly one invoice.
//!
//! The rule that keeps every booking billed once: a line is always "what the booking is worth
//! now − what live invoices billed for it so far". A booking billed for the first time in its
//! own month is a booking line; any other difference (a cancellation or price revision after
//! the booking was invoiced, a booking recorded after its month was closed) is an adjustment
//! line on the next invoice. Issued invoices are never edited.
//!
//! Here the close itself; [`ledger`] asks the ledger, [`plan`] decides the lines (pure).

mod ledger;
mod plan;

use std::collections::HashSet;
use std::sync::Arc;

use billing_domain::BillingPeriod;
use billing_proto::convert::timestamp;
use billing_proto::events::AlertV1;
use billing_proto::ledger::ledger_service_client::LedgerServiceClient;
use billing_runtime::trace::TracedChannel;
use chrono::{DateTime, Days, Utc};
use rust_decimal::Decimal;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::profile::Profile;
use crate::store::{
    CloseOutcome, InvoiceRow, InvoiceStatus, InvoicingMode, LINE_BOOKING, LineRow, Mark,
    NewInvoice, Store,
};
use crate::stripe::{PushError, StripeBilling};
use plan::{plan_lines, tax_on};

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
    /// The ledger client the close asks (the month statement asks it too).
    pub fn ledger(&self) -> LedgerServiceClient<TracedChannel> {
        self.ledger.clone()
    }

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
                    .record_outcome(
                        &mut tx,
                        tenant,
                        &period_key,
                        CloseOutcome::NothingBillable,
                        None,
                        "",
                    )
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
        if profile.mode == InvoicingMode::Stripe && self.stripe.is_none() {
            return Err(CloseError::StripeNotConfigured);
        }
        let mut row = self.store.insert_draft(&mut tx, &invoice).await?;
        self.store.clear_marks(&mut tx, tenant, &settled).await?;
        if profile.mode == InvoicingMode::Manual {
            row = self
                .store
                .transition(
                    &mut tx,
                    &row,
                    InvoiceStatus::Issued,
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
                    .transition(&mut tx, &row, InvoiceStatus::Paid, &reason, now)
                    .await?;
            }
        }
        self.store
            .record_outcome(
                &mut tx,
                tenant,
                &period_key,
                CloseOutcome::Issued,
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
            .record_outcome(
                &mut tx,
                tenant,
                period,
                CloseOutcome::Failed,
                invoice_id,
                detail,
            )
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
        if dry_run || invoice.status != InvoiceStatus::Draft {
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
            invoicing_mode: profile.mode,
            payment_instructions: match profile.mode {
                InvoicingMode::Manual => self.bank_instructions.clone(),
                InvoicingMode::Stripe => {
                    "Pay online through the Stripe link sent with this invoice.".into()
                }
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
}
