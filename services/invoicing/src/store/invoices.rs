//! Invoices and their lines: numbering and storing a draft, reads, the tenant's lock, the
//! invoice's status history, what live invoices billed per booking, and the Stripe progress
//! saved on an invoice.

use std::collections::HashMap;

use billing_domain::Currency;
use billing_proto::convert::money;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use super::Store;
use super::status::InvoiceStatus;

/// An invoice about to be stored; the store gives it its number.
#[derive(Debug, Clone)]
pub struct NewInvoice {
    pub id: Uuid,
    pub tenant_id: String,
    pub period: String,
    pub number_prefix: String,
    pub number_year: i32,
    pub tenant_name: String,
    pub billing_email: String,
    pub address: String,
    pub tax_id: String,
    pub time_zone: String,
    pub currency: Currency,
    pub invoicing_mode: String,
    /// `{number}` is replaced by the invoice number.
    pub payment_instructions: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    pub total_booking_value: Decimal,
    pub subtotal: Decimal,
    pub tax_rate: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
    pub lines: Vec<LineRow>,
}

impl NewInvoice {
    pub fn booking_count(&self) -> i32 {
        let n = self.lines.iter().filter(|l| l.kind == LINE_BOOKING).count();
        i32::try_from(n).unwrap_or(i32::MAX)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InvoiceRow {
    pub id: Uuid,
    pub number: String,
    pub tenant_id: String,
    pub tenant_name: String,
    pub billing_email: String,
    pub address: String,
    pub tax_id: String,
    pub period: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub time_zone: String,
    pub currency: String,
    pub status: InvoiceStatus,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    pub booking_count: i32,
    pub total_booking_value: Decimal,
    pub subtotal: Decimal,
    pub tax_rate: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
    pub amount_paid: Decimal,
    pub issued_at: Option<DateTime<Utc>>,
    pub invoicing_mode: String,
    pub payment_instructions: String,
    pub void_reason: Option<String>,
    pub stripe_invoice_id: Option<String>,
    pub stripe_items_created: i32,
    pub stripe_number: Option<String>,
    pub stripe_hosted_url: Option<String>,
}

impl InvoiceRow {
    pub fn currency(&self) -> Option<Currency> {
        self.currency.trim().parse().ok()
    }

    /// Money in the invoice's currency, formatted at its exponent.
    pub fn money(&self, amount: Decimal) -> billing_proto::Money {
        let code = self.currency.trim();
        match self.currency() {
            Some(c) => money(code, c.format(amount)),
            None => money(code, amount.to_string()),
        }
    }
}

pub const LINE_BOOKING: &str = "booking";
pub const LINE_ADJUSTMENT: &str = "adjustment";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LineRow {
    pub position: i32,
    pub booking_id: Uuid,
    pub booking_ref: String,
    pub session_at: DateTime<Utc>,
    pub service_name: String,
    pub booking_amount: Decimal,
    pub platform_fee: Decimal,
    /// `booking` or `adjustment`.
    pub kind: String,
    pub description: String,
}

/// One step of an invoice's status history.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HistoryRow {
    pub from_status: Option<InvoiceStatus>,
    pub to_status: InvoiceStatus,
    pub reason: String,
    pub changed_at: DateTime<Utc>,
}

/// What live invoices have billed for one booking so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Billed {
    pub fee: Decimal,
    pub amount: Decimal,
    /// The latest live invoice with a line for the booking.
    pub last_number: String,
}

/// The columns of [`InvoiceRow`], for `select` and `returning`.
pub(super) const INVOICE_COLUMNS: &str = "id, number, tenant_id, tenant_name, billing_email, \
    address, tax_id, period, period_start, period_end, time_zone, currency, status, issue_date, \
    due_date, booking_count, total_booking_value, subtotal, tax_rate, tax, total, amount_paid, \
    issued_at, invoicing_mode, payment_instructions, void_reason, stripe_invoice_id, \
    stripe_items_created, stripe_number, stripe_hosted_url";

/// SQL saying the invoice whose status is `column` is live (not void). A literal rather than a
/// parameter: PostgreSQL uses the partial unique index `invoices_one_per_period` (`where status
/// <> 'void'`) only for a query whose own predicate implies it, which a parameter may not.
pub(super) fn live(column: &str) -> String {
    format!("{column} <> '{}'", InvoiceStatus::Void)
}

impl Store {
    /// The live (not void) invoice of a tenant for a period.
    pub async fn find_live(
        &self,
        conn: &mut PgConnection,
        tenant_id: &str,
        period: &str,
    ) -> Result<Option<InvoiceRow>, sqlx::Error> {
        let live = live("status");
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {INVOICE_COLUMNS} from invoices
             where tenant_id = $1 and period = $2 and {live}"
        )))
        .bind(tenant_id)
        .bind(period)
        .fetch_optional(conn)
        .await
    }

    pub async fn invoice(&self, id: Uuid) -> Result<Option<InvoiceRow>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {INVOICE_COLUMNS} from invoices where id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
    }

    /// The invoice, locked until the transaction ends.
    pub async fn lock_invoice(
        &self,
        tx: &mut PgConnection,
        id: Uuid,
    ) -> Result<Option<InvoiceRow>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {INVOICE_COLUMNS} from invoices where id = $1 for update"
        )))
        .bind(id)
        .fetch_optional(tx)
        .await
    }

    pub async fn lines(&self, id: Uuid) -> Result<Vec<LineRow>, sqlx::Error> {
        sqlx::query_as(
            "select position, booking_id, booking_ref, session_at, service_name, booking_amount,
                    platform_fee, kind, description
             from invoice_lines where invoice_id = $1 order by position",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn history(&self, id: Uuid) -> Result<Vec<HistoryRow>, sqlx::Error> {
        sqlx::query_as(
            "select from_status, to_status, reason, changed_at
             from invoice_status_history where invoice_id = $1 order by seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn list(
        &self,
        tenant_id: Option<&str>,
        status: Option<InvoiceStatus>,
        period: Option<&str>,
    ) -> Result<Vec<InvoiceRow>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {INVOICE_COLUMNS} from invoices
             where ($1::text is null or tenant_id = $1)
               and ($2::text is null or status = $2)
               and ($3::text is null or period = $3)
             order by tenant_id, seq"
        )))
        .bind(tenant_id)
        .bind(status)
        .bind(period)
        .fetch_all(&self.pool)
        .await
    }

    /// Invoices that may fall overdue ([`InvoiceStatus::FALLS_OVERDUE`]) whose due date is
    /// before `as_of` (or, without it, before today in the invoice's own zone), oldest first.
    pub async fn past_due(
        &self,
        as_of: Option<NaiveDate>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, sqlx::Error> {
        sqlx::query_scalar(
            "select id from invoices
             where status = any($3)
               and due_date < coalesce($1, ($2 at time zone time_zone)::date)
             order by due_date, tenant_id, seq",
        )
        .bind(as_of)
        .bind(now)
        .bind(InvoiceStatus::FALLS_OVERDUE)
        .fetch_all(&self.pool)
        .await
    }

    /// Serialises closes of one tenant: the counter row stays locked until the transaction
    /// ends, so a concurrent close waits and then sees the invoice this one issued.
    pub async fn lock_tenant(
        &self,
        tx: &mut PgConnection,
        tenant_id: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "insert into invoice_counters (tenant_id, last_seq) values ($1, 0)
             on conflict (tenant_id) do nothing",
        )
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("select last_seq from invoice_counters where tenant_id = $1 for update")
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// What live invoices have billed so far for each of `booking_ids` (bookings never billed
    /// are absent).
    pub async fn billed(
        &self,
        conn: &mut PgConnection,
        tenant_id: &str,
        booking_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Billed>, sqlx::Error> {
        let live = live("i.status");
        let rows: Vec<(Uuid, Decimal, Decimal, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "select l.booking_id, sum(l.platform_fee), sum(l.booking_amount),
                        (array_agg(i.number order by i.seq desc))[1]
                 from invoice_lines l join invoices i on i.id = l.invoice_id
                 where i.tenant_id = $1 and {live} and l.booking_id = any($2)
                 group by l.booking_id"
            )))
            .bind(tenant_id)
            .bind(booking_ids)
            .fetch_all(conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, fee, amount, last_number)| {
                (
                    id,
                    Billed {
                        fee,
                        amount,
                        last_number,
                    },
                )
            })
            .collect())
    }

    /// Numbers and stores the invoice and its lines as a draft. Call with the tenant locked
    /// (`lock_tenant`): the counter increment commits or rolls back with the invoice, so
    /// numbers have no gaps.
    pub async fn insert_draft(
        &self,
        tx: &mut PgConnection,
        inv: &NewInvoice,
    ) -> Result<InvoiceRow, sqlx::Error> {
        let seq: i32 = sqlx::query_scalar(
            "update invoice_counters set last_seq = last_seq + 1 where tenant_id = $1
             returning last_seq",
        )
        .bind(&inv.tenant_id)
        .fetch_one(&mut *tx)
        .await?;
        let number = format!("{}-{}-{seq:04}", inv.number_prefix, inv.number_year);
        let instructions = inv.payment_instructions.replace("{number}", &number);
        let row: InvoiceRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "insert into invoices (id, tenant_id, period, seq, number, tenant_name, billing_email,
                address, tax_id, time_zone, currency, period_start, period_end, status,
                issue_date, due_date, booking_count, total_booking_value, subtotal, tax_rate, tax,
                total, invoicing_mode, payment_instructions)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $24, $14, $15,
                $16, $17, $18, $19, $20, $21, $22, $23)
             returning {INVOICE_COLUMNS}"
        )))
        .bind(inv.id)
        .bind(&inv.tenant_id)
        .bind(&inv.period)
        .bind(seq)
        .bind(&number)
        .bind(&inv.tenant_name)
        .bind(&inv.billing_email)
        .bind(&inv.address)
        .bind(&inv.tax_id)
        .bind(&inv.time_zone)
        .bind(inv.currency.code())
        .bind(inv.period_start)
        .bind(inv.period_end)
        .bind(inv.issue_date)
        .bind(inv.due_date)
        .bind(inv.booking_count())
        .bind(inv.total_booking_value)
        .bind(inv.subtotal)
        .bind(inv.tax_rate)
        .bind(inv.tax)
        .bind(inv.total)
        .bind(&inv.invoicing_mode)
        .bind(&instructions)
        .bind(InvoiceStatus::Draft)
        .fetch_one(&mut *tx)
        .await?;
        let lines = &inv.lines;
        sqlx::query(
            "insert into invoice_lines (invoice_id, position, booking_id, booking_ref, session_at,
                service_name, booking_amount, platform_fee, kind, description)
             select $1, * from unnest($2::int[], $3::uuid[], $4::text[], $5::timestamptz[],
                $6::text[], $7::numeric[], $8::numeric[], $9::text[], $10::text[])",
        )
        .bind(inv.id)
        .bind(lines.iter().map(|l| l.position).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.booking_id).collect::<Vec<_>>())
        .bind(
            lines
                .iter()
                .map(|l| l.booking_ref.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(lines.iter().map(|l| l.session_at).collect::<Vec<_>>())
        .bind(
            lines
                .iter()
                .map(|l| l.service_name.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(lines.iter().map(|l| l.booking_amount).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.platform_fee).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.kind.as_str()).collect::<Vec<_>>())
        .bind(
            lines
                .iter()
                .map(|l| l.description.as_str())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
        self.append_history(
            tx,
            inv.id,
            None,
            InvoiceStatus::Draft,
            "made by the monthly close",
        )
        .await?;
        Ok(row)
    }

    /// Appends a step to the invoice's status history; returns its position (1 for the first).
    pub(super) async fn append_history(
        &self,
        tx: &mut PgConnection,
        invoice_id: Uuid,
        from: Option<InvoiceStatus>,
        to: InvoiceStatus,
        reason: &str,
    ) -> Result<i32, sqlx::Error> {
        sqlx::query_scalar(
            "insert into invoice_status_history (invoice_id, seq, from_status, to_status, reason)
             select $1, coalesce(max(seq), 0) + 1, $2, $3, $4
             from invoice_status_history where invoice_id = $1
             returning seq",
        )
        .bind(invoice_id)
        .bind(from)
        .bind(to)
        .bind(reason)
        .fetch_one(tx)
        .await
    }

    /// Stripe progress of an invoice, saved after each step so a retry resumes where it stopped.
    pub async fn save_stripe(
        &self,
        id: Uuid,
        stripe_invoice_id: Option<&str>,
        items_created: Option<i32>,
        stripe_number: Option<&str>,
        hosted_url: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "update invoices set
                stripe_invoice_id = coalesce($2, stripe_invoice_id),
                stripe_items_created = greatest(stripe_items_created, coalesce($3, 0)),
                stripe_number = coalesce($4, stripe_number),
                stripe_hosted_url = coalesce($5, stripe_hosted_url),
                payment_instructions = case when $5::text is null then payment_instructions
                    else 'Pay online: ' || $5 end
             where id = $1",
        )
        .bind(id)
        .bind(stripe_invoice_id)
        .bind(items_created)
        .bind(stripe_number)
        .bind(hosted_url)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// An issued AUD invoice of tenant `claire` for 2026-07 in Stripe mode, total 35.20 with 10.00
/// paid, for tests to edit.
#[cfg(test)]
pub fn example_invoice() -> InvoiceRow {
    let date = NaiveDate::from_ymd_opt(2026, 8, 1).expect("date");
    InvoiceRow {
        id: Uuid::nil(),
        number: "CLAIRE-2026-0001".into(),
        tenant_id: "claire".into(),
        tenant_name: "Claire".into(),
        billing_email: "claire@example.test".into(),
        address: String::new(),
        tax_id: String::new(),
        period: "2026-07".into(),
        period_start: DateTime::UNIX_EPOCH,
        period_end: DateTime::UNIX_EPOCH,
        time_zone: "Australia/Sydney".into(),
        currency: "AUD".into(),
        status: InvoiceStatus::Issued,
        issue_date: date,
        due_date: date,
        booking_count: 1,
        total_booking_value: Decimal::new(16000, 2),
        subtotal: Decimal::new(3200, 2),
        tax_rate: Decimal::new(1, 1),
        tax: Decimal::new(320, 2),
        total: Decimal::new(3520, 2),
        amount_paid: Decimal::new(1000, 2),
        issued_at: None,
        invoicing_mode: "stripe".into(),
        payment_instructions: String::new(),
        void_reason: None,
        stripe_invoice_id: Some("in_ours".into()),
        stripe_items_created: 2,
        stripe_number: None,
        stripe_hosted_url: None,
    }
}
