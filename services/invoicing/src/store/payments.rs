//! Payments against an invoice: recorded once per idempotency key, added to the invoice's amount
//! paid, and announced on `invoicing.invoice.payment_recorded`.

use billing_proto::convert::timestamp;
use billing_proto::events::PaymentRecordedV1;
use chrono::{DateTime, NaiveDate, Utc};
use prost::Message;
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use super::Store;
use super::invoices::{InvoiceRow, query_invoice};

// Bound and read as the `text` it is stored as: `query!(…, method as PaymentMethod)`, and
// `method as "method: PaymentMethod"` in a query's columns.
billing_runtime::text_enum! {
    /// How a payment was made. [`PaymentMethod::as_str`] is the only spelling (`payments.method`,
    /// checked by its constraint, the `payment_recorded` event, gRPC messages and metric labels);
    /// [`FromStr`](std::str::FromStr) is its inverse. In SQL it binds and decodes as `text`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum PaymentMethod as "payment method" {
        /// A bank transfer, recorded by hand or matched from a bank statement.
        BankTransfer = "bank_transfer",
        /// Collected by Stripe (its `invoice.paid` event).
        Stripe = "stripe",
    }
}

#[derive(Debug, Clone)]
pub struct PaymentRow {
    pub id: Uuid,
    pub method: PaymentMethod,
    pub amount: Decimal,
    pub received_on: NaiveDate,
    pub reference: String,
    pub recorded_at: DateTime<Utc>,
    /// Who recorded it through the API (`billing_runtime::operator`); `None` for Stripe's.
    pub operator: Option<String>,
    pub caller_role: Option<String>,
}

/// A payment just recorded.
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub id: Uuid,
    pub method: PaymentMethod,
    pub amount: Decimal,
    pub received_on: NaiveDate,
    pub reference: String,
}

impl Store {
    pub async fn payments(&self, id: Uuid) -> Result<Vec<PaymentRow>, sqlx::Error> {
        sqlx::query_as!(
            PaymentRow,
            r#"select id, method as "method: PaymentMethod", amount, received_on, reference,
                      recorded_at, operator, caller_role
               from invoicing.payments where invoice_id = $1 order by recorded_at, id"#,
            id
        )
        .fetch_all(&self.pool)
        .await
    }

    /// Records a payment once per idempotency key and adds it to the invoice's amount paid.
    /// `None` when the key was already recorded.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_payment(
        &self,
        tx: &mut PgConnection,
        invoice: &InvoiceRow,
        method: PaymentMethod,
        amount: Decimal,
        received_on: NaiveDate,
        reference: &str,
        idempotency_key: &str,
    ) -> Result<Option<(InvoiceRow, NewPayment)>, sqlx::Error> {
        let payment = NewPayment {
            id: Uuid::now_v7(),
            method,
            amount,
            received_on,
            reference: reference.to_string(),
        };
        // Who asked, when a gRPC call did (billing_runtime::operator).
        let acting = billing_runtime::operator::current();
        let inserted = sqlx::query!(
            "insert into invoicing.payments (id, invoice_id, method, amount, received_on,
                reference, idempotency_key, operator, caller_role)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             on conflict (idempotency_key) do nothing",
            payment.id,
            invoice.id,
            method as PaymentMethod,
            amount,
            received_on,
            reference,
            idempotency_key,
            acting.as_ref().and_then(|a| a.operator_name()),
            acting.as_ref().map(|a| a.role_name())
        )
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(None);
        }
        query_invoice!(
            "update invoicing.invoices set amount_paid = amount_paid + $2 where id = $1
             returning",
            "",
            invoice.id,
            amount
        )
        .fetch_one(tx)
        .await
        .map(|row| Some((row, payment)))
    }

    /// Announces a recorded payment on `invoicing.invoice.payment_recorded`, with `invoice` as
    /// it stands after the payment (status settled).
    pub async fn payment_recorded(
        &self,
        tx: &mut PgConnection,
        invoice: &InvoiceRow,
        payment: &NewPayment,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let event = PaymentRecordedV1 {
            payment_id: payment.id.to_string(),
            invoice_id: invoice.id.to_string(),
            tenant_id: invoice.tenant_id.clone(),
            invoice_number: invoice.number.clone(),
            method: payment.method.as_str().to_string(),
            amount: Some(invoice.money(payment.amount)),
            received_on: payment.received_on.to_string(),
            reference: payment.reference.clone(),
            status: invoice.status.as_str().to_string(),
            total: Some(invoice.money(invoice.total)),
            amount_paid: Some(invoice.money(invoice.amount_paid)),
            recorded_at: Some(timestamp(now)),
        };
        self.enqueue(
            tx,
            self.subjects.invoice("payment_recorded"),
            format!("payment:{}", payment.id),
            event.encode_to_vec(),
        )
        .await
    }

    /// The invoice and amount a payment idempotency key was recorded with.
    pub async fn payment_by_key(&self, key: &str) -> Result<Option<(Uuid, Decimal)>, sqlx::Error> {
        let row = sqlx::query!(
            "select invoice_id, amount from invoicing.payments where idempotency_key = $1",
            key
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| (row.invoice_id, row.amount)))
    }
}

#[cfg(test)]
mod tests {
    use super::PaymentMethod;

    #[test]
    fn every_payment_method_parses_back_from_its_name_and_nothing_else_parses() {
        for method in PaymentMethod::ALL {
            assert_eq!(method.as_str().parse(), Ok(method));
            assert_eq!(method.to_string(), method.as_str());
        }
        assert_eq!(
            "cash".parse::<PaymentMethod>(),
            Err("unknown payment method \"cash\"".to_string())
        );
        assert!("".parse::<PaymentMethod>().is_err());
    }
}
