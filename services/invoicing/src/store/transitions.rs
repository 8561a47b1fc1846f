//! Status changes of an invoice, and notes about it that change no status: each appends to the
//! invoice's history and writes `invoicing.invoice.<what>` to the outbox, in the caller's
//! transaction.

use billing_proto::convert::timestamp;
use billing_proto::events::{InvoiceIssuedV1, InvoiceStatusChangedV1};
use chrono::{DateTime, Utc};
use prost::Message;
use sqlx::PgConnection;

use super::Store;
use super::invoices::{InvoiceRow, query_invoice};
use super::status::InvoiceStatus;

/// What an outbox event about an invoice announces.
#[derive(Debug, Clone, Copy)]
enum Change<'a> {
    /// A move to this status: `invoicing.invoice.<status>`.
    To(InvoiceStatus),
    /// Something that changes no status: `invoicing.invoice.<what>`.
    Note(&'a str),
}

impl Store {
    /// Moves a locked invoice to `to`: updates it, appends to its history and writes the event
    /// `invoicing.invoice.<to>` to the outbox, all in the caller's transaction.
    pub async fn transition(
        &self,
        tx: &mut PgConnection,
        invoice: &InvoiceRow,
        to: InvoiceStatus,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<InvoiceRow, sqlx::Error> {
        let from = invoice.status;
        let row = query_invoice!(
            "update invoicing.invoices set status = $2,
                issued_at = case when $5 then coalesce(issued_at, $3) else issued_at end,
                paid_at = case when $6 then $3 else paid_at end,
                voided_at = case when $7 then $3 else voided_at end,
                void_reason = case when $7 then $4 else void_reason end
             where id = $1
             returning",
            "",
            invoice.id,
            to as InvoiceStatus,
            now,
            reason,
            to == InvoiceStatus::Issued,
            to == InvoiceStatus::Paid,
            to == InvoiceStatus::Void
        )
        .fetch_one(&mut *tx)
        .await?;
        let seq = self
            .append_history(tx, invoice.id, Some(from), to, reason)
            .await?;
        self.publish(tx, &row, from, Change::To(to), reason, seq, now)
            .await?;
        Ok(row)
    }

    /// An event about an invoice that does not change its status (a failed Stripe payment
    /// attempt): kept in its history and published as `invoicing.invoice.<what>`.
    pub async fn note(
        &self,
        tx: &mut PgConnection,
        invoice: &InvoiceRow,
        what: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let status = invoice.status;
        let seq = self
            .append_history(tx, invoice.id, Some(status), status, reason)
            .await?;
        self.publish(tx, invoice, status, Change::Note(what), reason, seq, now)
            .await
    }

    /// `invoicing.invoice.issued` carries `InvoiceIssuedV1`; every other change
    /// `InvoiceStatusChangedV1` with `row` as it stands after it.
    #[allow(clippy::too_many_arguments)]
    async fn publish(
        &self,
        tx: &mut PgConnection,
        row: &InvoiceRow,
        from: InvoiceStatus,
        change: Change<'_>,
        reason: &str,
        seq: i32,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let (what, payload) = match change {
            Change::To(InvoiceStatus::Issued) => (
                InvoiceStatus::Issued.as_str(),
                InvoiceIssuedV1 {
                    invoice_id: row.id.to_string(),
                    tenant_id: row.tenant_id.clone(),
                    invoice_number: row.number.clone(),
                    period: row.period.clone(),
                    issued_at: Some(timestamp(row.issued_at.unwrap_or(now))),
                }
                .encode_to_vec(),
            ),
            Change::To(status) => (status.as_str(), status_changed(row, from, reason, seq, now)),
            Change::Note(what) => (what, status_changed(row, from, reason, seq, now)),
        };
        self.enqueue(
            tx,
            self.subjects.invoice(what),
            format!("invoice:{}:{seq}", row.id),
            payload,
        )
        .await
    }
}

fn status_changed(
    row: &InvoiceRow,
    from: InvoiceStatus,
    reason: &str,
    seq: i32,
    now: DateTime<Utc>,
) -> Vec<u8> {
    InvoiceStatusChangedV1 {
        invoice_id: row.id.to_string(),
        tenant_id: row.tenant_id.clone(),
        invoice_number: row.number.clone(),
        period: row.period.clone(),
        from_status: from.as_str().to_string(),
        to_status: row.status.as_str().to_string(),
        reason: reason.to_string(),
        total: Some(row.money(row.total)),
        amount_paid: Some(row.money(row.amount_paid)),
        changed_at: Some(timestamp(now)),
        version: seq.unsigned_abs(),
    }
    .encode_to_vec()
}
