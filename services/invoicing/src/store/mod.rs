//! invoicing's tables, one submodule per aggregate; every method is on the one [`Store`] handle.
//! Writes that change an invoice take the caller's transaction, so its history row and outbox
//! event commit or roll back with it.
//!
//! - [`status`]: [`InvoiceStatus`], the one spelling of an invoice's statuses (Rust and SQL);
//! - [`mode`]: [`InvoicingMode`], the one spelling of how a tenant is invoiced (its profile, and
//!   each invoice, keep it);
//! - [`invoices`]: numbering and storing invoices and their lines, reads, the tenant's lock, the
//!   status history, what live invoices billed per booking, and the Stripe progress saved on an
//!   invoice;
//! - [`transitions`]: status changes and notes, each with a history row and an outbox event;
//! - [`payments`]: payments recorded against an invoice (once per idempotency key), each with
//!   its [`PaymentMethod`];
//! - [`statements`]: the month statement's differences (found, fixed, explained) and each
//!   month's latest counts;
//! - [`marks`]: bookings the ledger changed, for the next close to bill the difference;
//! - [`outcomes`]: what each monthly close did, and the periods it closed;
//! - [`stripe_events`]: Stripe event ids claimed once, what became of each, and what deciding
//!   one reads besides the invoice (its Stripe id, the tenant's mode now); [`StripeOutcome`]
//!   spells what became of one.
//!
//! Here: the [`Store`] handle and the outbox every submodule writes its events and alerts to.
//! Within the store, `invoices` uses `status` and `mode`; `transitions`, `payments`, `marks` and `outcomes`
//! use `invoices`; each adds methods to the handle, which uses none of them (it only re-exports
//! their types).

mod invoices;
mod marks;
mod mode;
mod outcomes;
mod payments;
mod statements;
mod status;
mod stripe_events;
mod transitions;

use billing_proto::events::AlertV1;
use billing_runtime::{Subjects, trace};
use prost::Message;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

#[cfg(test)]
pub use invoices::example_invoice;
pub use invoices::{
    Billed, HistoryRow, InvoiceRow, LINE_ADJUSTMENT, LINE_BOOKING, LineRow, NewInvoice,
};
pub use marks::{Mark, MarkUpdate};
pub use mode::InvoicingMode;
pub use outcomes::CloseOutcome;
pub use payments::{PaymentMethod, PaymentRow};
pub use statements::{DifferenceRow, Found};
pub use status::InvoiceStatus;
pub use stripe_events::StripeOutcome;

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    subjects: Subjects,
}

impl Store {
    pub fn new(pool: PgPool, subjects: Subjects) -> Self {
        Store { pool, subjects }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    /// Publishes an operator alert through the outbox, with the transaction's other writes.
    /// Its id is the message id: raising the same alert again adds nothing.
    pub async fn raise_alert(
        &self,
        tx: &mut PgConnection,
        alert: &AlertV1,
    ) -> Result<(), sqlx::Error> {
        self.enqueue(
            tx,
            self.subjects.alert(&alert.kind),
            format!("alert:{}", alert.alert_id),
            alert.encode_to_vec(),
        )
        .await
    }

    /// Writes an event to the outbox, with the current trace so its consumers continue it. A
    /// message id already there is left alone (the event was enqueued before).
    async fn enqueue(
        &self,
        tx: &mut PgConnection,
        subject: String,
        message_id: String,
        payload: Vec<u8>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "insert into invoicing.outbox (subject, message_id, payload, traceparent)
             values ($1, $2, $3, $4)
             on conflict (message_id) do nothing",
            subject,
            message_id,
            payload,
            trace::current_traceparent()
        )
        .execute(tx)
        .await?;
        Ok(())
    }
}
