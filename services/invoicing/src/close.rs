//! The monthly close of one tenant: ask the ledger what is billable in the tenant's month,
//! check the sums, and issue exactly one invoice.

use std::sync::Arc;

use billing_domain::{BillingPeriod, Currency, TenantConfig};
use billing_proto::convert::{amount, datetime, timestamp};
use billing_proto::events::InvoiceIssuedV1;
use billing_proto::ledger::SummarizePeriodRequest;
use billing_proto::ledger::ledger_service_client::LedgerServiceClient;
use billing_runtime::Subjects;
use chrono::{DateTime, Days, Utc};
use prost::Message;
use rust_decimal::Decimal;
use tokio::sync::Notify;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::store::{InvoiceRow, IssueError, LineRow, NewInvoice, OutboxEvent, Store};

/// What the close did for one tenant.
#[derive(Debug)]
pub enum Closed {
    Issued(InvoiceRow),
    AlreadyIssued(InvoiceRow),
    NothingBillable,
}

#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    #[error("period {period} has not ended yet in {zone}")]
    PeriodNotOver { period: BillingPeriod, zone: String },
    #[error("the ledger is unavailable: {0}")]
    Ledger(tonic::Status),
    #[error("the ledger's summary does not add up: {0}")]
    Inconsistent(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

#[derive(Clone)]
pub struct MonthlyClose {
    store: Store,
    ledger: LedgerServiceClient<Channel>,
    subjects: Subjects,
    relay: Arc<Notify>,
}

impl MonthlyClose {
    pub fn new(
        store: Store,
        ledger: LedgerServiceClient<Channel>,
        subjects: Subjects,
        relay: Arc<Notify>,
    ) -> Self {
        MonthlyClose {
            store,
            ledger,
            subjects,
            relay,
        }
    }

    #[tracing::instrument(skip_all, fields(tenant = %tenant.id, %period))]
    pub async fn close(
        &self,
        tenant: &TenantConfig,
        period: BillingPeriod,
        now: DateTime<Utc>,
    ) -> Result<Closed, CloseError> {
        let period_key = period.to_string();
        if let Some(existing) = self
            .store
            .find_live(tenant.id.as_str(), &period_key)
            .await?
        {
            return Ok(Closed::AlreadyIssued(existing));
        }
        let (start, end) = period.bounds(tenant.time_zone);
        if now < end {
            return Err(CloseError::PeriodNotOver {
                period,
                zone: tenant.time_zone.to_string(),
            });
        }
        let summary = self
            .ledger
            .clone()
            .summarize_period(SummarizePeriodRequest {
                tenant_id: tenant.id.to_string(),
                start: Some(timestamp(start)),
                end: Some(timestamp(end)),
            })
            .await
            .map_err(CloseError::Ledger)?
            .into_inner();
        if summary.billable.is_empty() {
            return Ok(Closed::NothingBillable);
        }

        let lines = to_lines(&summary.billable, tenant.currency)?;
        let total: Decimal = lines.iter().map(|l| l.platform_fee).sum();
        let value: Decimal = lines.iter().map(|l| l.booking_amount).sum();
        // Our own sums must equal the ledger's: a difference means rows changed under us.
        if amount(summary.platform_fee_total.as_ref()) != Some(total)
            || amount(summary.total_booking_value.as_ref()) != Some(value)
        {
            return Err(CloseError::Inconsistent(format!(
                "lines add up to fees {total} on {value}, ledger says {:?} on {:?}",
                summary.platform_fee_total.map(|m| m.amount),
                summary.total_booking_value.map(|m| m.amount)
            )));
        }

        let issue_date = now.with_timezone(&tenant.time_zone).date_naive();
        let invoice = NewInvoice {
            id: Uuid::now_v7(),
            tenant_id: tenant.id.to_string(),
            period: period_key.clone(),
            number_prefix: tenant.invoice_prefix(),
            number_year: period.year(),
            tenant_name: tenant.name.clone(),
            billing_email: tenant.billing_email.clone(),
            time_zone: tenant.time_zone.to_string(),
            currency: tenant.currency.code().to_string(),
            period_start: start,
            period_end: end,
            issue_date,
            due_date: issue_date + Days::new(u64::from(tenant.payment_terms_days)),
            total_booking_value: value,
            total,
            lines,
        };
        let event = |number: &str| OutboxEvent {
            subject: self.subjects.invoice("issued"),
            message_id: format!("invoice-issued:{}", invoice.id),
            payload: InvoiceIssuedV1 {
                invoice_id: invoice.id.to_string(),
                tenant_id: invoice.tenant_id.clone(),
                invoice_number: number.to_string(),
                period: period_key.clone(),
                issued_at: Some(timestamp(now)),
            }
            .encode_to_vec(),
        };
        match self.store.issue(&invoice, event).await {
            Ok(number) => {
                self.relay.notify_one();
                metrics::counter!("invoicing_invoices_issued_total").increment(1);
                tracing::info!(number, total = %total, "invoice issued");
                let issued = self
                    .store
                    .find_live(tenant.id.as_str(), &period_key)
                    .await?;
                issued
                    .map(Closed::Issued)
                    .ok_or(CloseError::Db(sqlx::Error::RowNotFound))
            }
            Err(IssueError::AlreadyIssued) => self
                .store
                .find_live(tenant.id.as_str(), &period_key)
                .await?
                .map(Closed::AlreadyIssued)
                .ok_or(CloseError::Db(sqlx::Error::RowNotFound)),
            Err(IssueError::Db(err)) => Err(err.into()),
        }
    }
}

fn to_lines(
    billable: &[billing_proto::ledger::Booking],
    currency: Currency,
) -> Result<Vec<LineRow>, CloseError> {
    billable
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let bad =
                |what: &str| CloseError::Inconsistent(format!("booking {}: {what}", b.booking_ref));
            let in_currency = |m: Option<&billing_proto::Money>| {
                m.filter(|m| m.currency_code == currency.code())
                    .and_then(|m| amount(Some(m)))
            };
            Ok(LineRow {
                position: i32::try_from(i + 1).map_err(|_| bad("too many lines"))?,
                booking_id: b.id.parse().map_err(|_| bad("bad id"))?,
                booking_ref: b.booking_ref.clone(),
                session_at: datetime(b.session_at.as_ref())
                    .ok_or_else(|| bad("no session time"))?,
                service_name: b.service_name.clone(),
                booking_amount: in_currency(b.total.as_ref())
                    .ok_or_else(|| bad("total not in the tenant's currency"))?,
                platform_fee: in_currency(b.platform_fee.as_ref())
                    .ok_or_else(|| bad("fee not in the tenant's currency"))?,
            })
        })
        .collect()
}
