//! What happens to an invoice after it is issued: bank transfers recorded by hand, voiding, the
//! overdue sweep, and Stripe's invoice events. Every status change goes through
//! `Store::transition` (history row and outbox event in the same transaction). Stripe's events
//! are in [`stripe_events`].

mod stripe_events;

use billing_runtime::error::{ErrorCode, ServiceError};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::store::{InvoiceRow, InvoiceStatus, PaymentMethod, Store};
use crate::stripe::{PushError, StripeBilling};

pub use stripe_events::StripeInvoiceEvent;

/// The event (`invoicing.invoice.email_resent`) asking the notifier for the invoice's email
/// once more.
pub const EMAIL_RESENT: &str = "email_resent";
/// How a resend reads in the invoice's history.
const RESENT: &str = "invoice email resent";

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no such invoice")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("invoice {number} is {status}: {why}")]
    WrongStatus {
        number: String,
        status: InvoiceStatus,
        why: &'static str,
    },
    #[error("stripe: {0}")]
    Stripe(#[from] PushError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl ServiceError for LifecycleError {
    fn error_code(&self) -> ErrorCode {
        match self {
            LifecycleError::NotFound => ErrorCode::NotFound,
            LifecycleError::Invalid(_) => ErrorCode::InvalidArgument,
            LifecycleError::WrongStatus { .. } => ErrorCode::FailedPrecondition,
            LifecycleError::Stripe(_) => ErrorCode::Unavailable,
            LifecycleError::Db(err) => err.error_code(),
        }
    }

    fn public_message(&self) -> String {
        match self {
            LifecycleError::Db(err) => err.public_message(),
            other => other.to_string(),
        }
    }
}

/// A bank transfer to record against an invoice.
#[derive(Debug, Clone, Copy)]
pub struct Transfer<'a> {
    /// In the invoice's currency, e.g. `75.10`.
    pub amount: &'a str,
    pub received_on: NaiveDate,
    pub reference: &'a str,
    /// Identifies the transfer; empty: derived from invoice, amount, date and reference.
    pub idempotency_key: &'a str,
    pub limit: PaymentLimit,
}

/// Whether a payment may exceed what is still due (checked under the invoice's lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentLimit {
    /// A person recorded it: an overpayment is recorded and flagged.
    None,
    /// Matched automatically: more than the balance is left for a person.
    Balance,
}

/// The result of recording a payment.
pub struct Recorded {
    pub invoice: InvoiceRow,
    /// False when the idempotency key had been recorded before (nothing changed).
    pub recorded: bool,
    pub overpaid: bool,
}

#[derive(Clone)]
pub struct Lifecycle {
    store: Store,
    stripe: Option<StripeBilling>,
    relay: Arc<Notify>,
}

impl Lifecycle {
    pub fn new(store: Store, stripe: Option<StripeBilling>, relay: Arc<Notify>) -> Self {
        Lifecycle {
            store,
            stripe,
            relay,
        }
    }

    /// A bank transfer for an invoice: partial payments move it to `partially_paid` (an
    /// overdue invoice stays overdue until paid in full), the full amount to `paid`; more than
    /// the total is recorded and flagged (or, with [`PaymentLimit::Balance`], refused).
    pub async fn record_payment(
        &self,
        invoice_id: Uuid,
        transfer: Transfer<'_>,
        now: DateTime<Utc>,
    ) -> Result<Recorded, LifecycleError> {
        let Transfer {
            amount: amount_text,
            received_on,
            reference,
            idempotency_key,
            limit,
        } = transfer;
        let reference = reference.trim();
        if reference.is_empty() {
            return Err(LifecycleError::Invalid(
                "a payment needs its bank reference".into(),
            ));
        }
        let mut tx = self.store.begin().await?;
        let invoice = self
            .store
            .lock_invoice(&mut tx, invoice_id)
            .await?
            .ok_or(LifecycleError::NotFound)?;
        let currency = invoice
            .currency()
            .ok_or_else(|| LifecycleError::Invalid("invoice currency unknown".into()))?;
        let amount = currency
            .parse_amount(amount_text)
            .map_err(|e| LifecycleError::Invalid(format!("amount {amount_text:?}: {e}")))?;
        let status = invoice.status;
        if !(status.is_open() || status == InvoiceStatus::Paid) {
            return Err(LifecycleError::WrongStatus {
                number: invoice.number,
                status,
                why: "payments are recorded against issued invoices only",
            });
        }
        let key = match idempotency_key.trim() {
            "" => format!("bank:{invoice_id}:{received_on}:{amount}:{reference}"),
            key => format!("bank:{key}"),
        };
        let balance = invoice.total - invoice.amount_paid;
        if limit == PaymentLimit::Balance
            && amount > balance
            && self.store.payment_by_key(&key).await?.is_none()
        {
            return Err(LifecycleError::Invalid(format!(
                "{} is more than the balance due of {}: check it, then record it with \
                 `billingctl invoices pay`",
                currency.format(amount),
                currency.format(balance)
            )));
        }
        let Some((updated, payment)) = self
            .store
            .add_payment(
                &mut tx,
                &invoice,
                PaymentMethod::BankTransfer,
                amount,
                received_on,
                reference,
                &key,
            )
            .await?
        else {
            tx.rollback().await?;
            // The same key for another transfer would silently drop that transfer: refuse.
            if let Some((other_invoice, other_amount)) = self.store.payment_by_key(&key).await?
                && (other_invoice != invoice_id || other_amount != amount)
            {
                return Err(LifecycleError::Invalid(format!(
                    "idempotency key already recorded a payment of {} for another invoice or \
                     amount; use a new key for a different transfer",
                    currency.format(other_amount)
                )));
            }
            let overpaid = invoice.amount_paid > invoice.total;
            return Ok(Recorded {
                invoice,
                recorded: false,
                overpaid,
            });
        };
        let reason = format!(
            "bank transfer of {} received {received_on}, reference {reference}",
            currency.format(amount)
        );
        let updated = self.settle(&mut tx, updated, &reason, now).await?;
        self.store
            .payment_recorded(&mut tx, &updated, &payment, now)
            .await?;
        tx.commit().await?;
        self.relay.notify_one();
        metrics::counter!(
            "invoicing_payments_recorded_total",
            "method" => PaymentMethod::BankTransfer.as_str()
        )
        .increment(1);
        let overpaid = updated.amount_paid > updated.total;
        if overpaid {
            metrics::counter!("invoicing_overpayments_total").increment(1);
            tracing::warn!(invoice = %updated.number, paid = %updated.amount_paid, total = %updated.total, "invoice overpaid");
        }
        Ok(Recorded {
            invoice: updated,
            recorded: true,
            overpaid,
        })
    }

    /// The status an invoice's amount paid calls for, reached through one transition.
    async fn settle(
        &self,
        tx: &mut sqlx::PgConnection,
        invoice: InvoiceRow,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<InvoiceRow, sqlx::Error> {
        let status = invoice.status;
        let target = status.after_payment(invoice.amount_paid >= invoice.total);
        if target == status {
            return Ok(invoice);
        }
        self.store
            .transition(tx, &invoice, target, reason, now)
            .await
    }

    /// Voids an invoice nothing was paid on (and its Stripe invoice first). The period is then
    /// free for a new invoice under the next number; the voided one keeps its number.
    pub async fn void(
        &self,
        invoice_id: Uuid,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<InvoiceRow, LifecycleError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(LifecycleError::Invalid("voiding needs a reason".into()));
        }
        let invoice = self
            .store
            .invoice(invoice_id)
            .await?
            .ok_or(LifecycleError::NotFound)?;
        check_voidable(&invoice)?;
        if let Some(stripe) = &self.stripe {
            stripe.void(&invoice).await?;
        } else if invoice.stripe_invoice_id.is_some() {
            return Err(LifecycleError::Invalid(
                "this invoice is in Stripe, and no Stripe API key is configured".into(),
            ));
        }
        let mut tx = self.store.begin().await?;
        // The tenant's lock, as a close takes it: a close never reads what is billed while a
        // void of the same tenant is half done.
        self.store.lock_tenant(&mut tx, &invoice.tenant_id).await?;
        let invoice = self
            .store
            .lock_invoice(&mut tx, invoice_id)
            .await?
            .ok_or(LifecycleError::NotFound)?;
        check_voidable(&invoice)?;
        let voided = self
            .store
            .transition(&mut tx, &invoice, InvoiceStatus::Void, reason, now)
            .await?;
        self.store.remark_lines(&mut tx, &voided).await?;
        tx.commit().await?;
        self.relay.notify_one();
        metrics::counter!("invoicing_invoices_voided_total").increment(1);
        Ok(voided)
    }

    /// Asks for the invoice's email once more: a note in its history (with who asked, as every
    /// history row) and `invoicing.invoice.email_resent` in the outbox, in one transaction. The
    /// note's position in the history names the email, so the notifier sends each resend once.
    pub async fn resend_email(
        &self,
        invoice_id: Uuid,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<InvoiceRow, LifecycleError> {
        let reason = match reason.trim() {
            "" => RESENT.to_string(),
            why => format!("{RESENT}: {why}"),
        };
        let mut tx = self.store.begin().await?;
        let invoice = self
            .store
            .lock_invoice(&mut tx, invoice_id)
            .await?
            .ok_or(LifecycleError::NotFound)?;
        let why = match invoice.status {
            InvoiceStatus::Draft => Some("it has not been issued yet"),
            InvoiceStatus::Void => Some("a void invoice is not sent again"),
            _ => None,
        };
        if let Some(why) = why {
            return Err(LifecycleError::WrongStatus {
                number: invoice.number,
                status: invoice.status,
                why,
            });
        }
        self.store
            .note(&mut tx, &invoice, EMAIL_RESENT, &reason, now)
            .await?;
        tx.commit().await?;
        self.relay.notify_one();
        metrics::counter!("invoicing_emails_resent_total").increment(1);
        Ok(invoice)
    }

    /// Marks open invoices past their due date as overdue; returns them.
    pub async fn sweep_overdue(
        &self,
        as_of: Option<NaiveDate>,
        now: DateTime<Utc>,
    ) -> Result<Vec<InvoiceRow>, LifecycleError> {
        let mut marked = Vec::new();
        for id in self.store.past_due(as_of, now).await? {
            let mut tx = self.store.begin().await?;
            let Some(invoice) = self.store.lock_invoice(&mut tx, id).await? else {
                continue;
            };
            // Paid or voided since the list was read.
            if !InvoiceStatus::FALLS_OVERDUE.contains(&invoice.status) {
                continue;
            }
            let reason = format!("due {} and unpaid", invoice.due_date);
            let overdue = self
                .store
                .transition(&mut tx, &invoice, InvoiceStatus::Overdue, &reason, now)
                .await?;
            tx.commit().await?;
            marked.push(overdue);
        }
        if !marked.is_empty() {
            self.relay.notify_one();
            metrics::counter!("invoicing_invoices_overdue_total")
                .increment(u64::try_from(marked.len()).unwrap_or(0));
        }
        Ok(marked)
    }
}

fn check_voidable(invoice: &InvoiceRow) -> Result<(), LifecycleError> {
    let status = invoice.status;
    let why = if status.is_final() {
        "paid and void invoices cannot be voided"
    } else if invoice.amount_paid > Decimal::ZERO {
        "payments were recorded against it; refund them first"
    } else {
        return Ok(());
    };
    Err(LifecycleError::WrongStatus {
        number: invoice.number.clone(),
        status,
        why,
    })
}
