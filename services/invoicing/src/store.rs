//! Invoice tables: numbering and storing invoices, status transitions (each with a history row
//! and an outbox event, in the caller's transaction), payments, booking marks and close
//! outcomes.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use billing_domain::Currency;
use billing_proto::convert::{money, timestamp};
use billing_proto::events::{AlertV1, InvoiceIssuedV1, InvoiceStatusChangedV1, PaymentRecordedV1};
use billing_runtime::{Subjects, trace};
use chrono::{DateTime, NaiveDate, Utc};
use prost::Message;
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Numbered and stored, not yet accepted by Stripe (Stripe mode only).
    Draft,
    Issued,
    PartiallyPaid,
    Paid,
    Overdue,
    Void,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Issued => "issued",
            Status::PartiallyPaid => "partially_paid",
            Status::Paid => "paid",
            Status::Overdue => "overdue",
            Status::Void => "void",
        }
    }

    /// Paid and void are final: no event moves an invoice out of them.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Paid | Status::Void)
    }

    /// Issued and not settled: payments and the overdue sweep apply.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            Status::Issued | Status::PartiallyPaid | Status::Overdue
        )
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "draft" => Status::Draft,
            "issued" => Status::Issued,
            "partially_paid" => Status::PartiallyPaid,
            "paid" => Status::Paid,
            "overdue" => Status::Overdue,
            "void" => Status::Void,
            other => return Err(format!("unknown invoice status {other:?}")),
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    pub status: String,
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
    pub fn status(&self) -> Status {
        // The column's check constraint admits only known statuses.
        self.status.parse().unwrap_or(Status::Draft)
    }

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

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HistoryRow {
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: String,
    pub changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentRow {
    pub id: Uuid,
    pub method: String,
    pub amount: Decimal,
    pub received_on: NaiveDate,
    pub reference: String,
    pub recorded_at: DateTime<Utc>,
}

/// What live invoices have billed for one booking so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Billed {
    pub fee: Decimal,
    pub amount: Decimal,
    /// The latest live invoice with a line for the booking.
    pub last_number: String,
}

/// A payment just recorded.
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub id: Uuid,
    /// `bank_transfer` or `stripe`.
    pub method: String,
    pub amount: Decimal,
    pub received_on: NaiveDate,
    pub reference: String,
}

/// A booking the ledger announced as changed; `seq` identifies this mark (a newer change of the
/// same booking replaces it with a higher one).
#[derive(Debug, Clone)]
pub struct Mark {
    pub booking_id: Uuid,
    pub session_at: DateTime<Utc>,
    pub seq: i64,
}

/// A booking event reduced to what a mark needs.
#[derive(Debug, Clone)]
pub struct MarkUpdate {
    pub tenant_id: String,
    pub booking_id: Uuid,
    pub session_at: DateTime<Utc>,
}

const INVOICE_COLUMNS: &str = "id, number, tenant_id, tenant_name, billing_email, address, \
    tax_id, period, period_start, period_end, time_zone, currency, status, issue_date, due_date, \
    booking_count, total_booking_value, subtotal, tax_rate, tax, total, amount_paid, issued_at, \
    invoicing_mode, payment_instructions, void_reason, stripe_invoice_id, stripe_items_created, \
    stripe_number, stripe_hosted_url";

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

    /// The live (not void) invoice of a tenant for a period.
    pub async fn find_live(
        &self,
        conn: &mut PgConnection,
        tenant_id: &str,
        period: &str,
    ) -> Result<Option<InvoiceRow>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {INVOICE_COLUMNS} from invoices
             where tenant_id = $1 and period = $2 and status <> 'void'"
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

    pub async fn by_stripe_id(&self, stripe_id: &str) -> Result<Option<Uuid>, sqlx::Error> {
        sqlx::query_scalar("select id from invoices where stripe_invoice_id = $1")
            .bind(stripe_id)
            .fetch_optional(&self.pool)
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

    pub async fn payments(&self, id: Uuid) -> Result<Vec<PaymentRow>, sqlx::Error> {
        sqlx::query_as(
            "select id, method, amount, received_on, reference, recorded_at
             from payments where invoice_id = $1 order by recorded_at, id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn list(
        &self,
        tenant_id: Option<&str>,
        status: Option<&str>,
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

    /// Open invoices whose due date is before `as_of` (or, without it, before today in the
    /// invoice's own zone), oldest first.
    pub async fn past_due(
        &self,
        as_of: Option<NaiveDate>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, sqlx::Error> {
        sqlx::query_scalar(
            "select id from invoices
             where status in ('issued', 'partially_paid')
               and due_date < coalesce($1, ($2 at time zone time_zone)::date)
             order by due_date, tenant_id, seq",
        )
        .bind(as_of)
        .bind(now)
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
        let rows: Vec<(Uuid, Decimal, Decimal, String)> = sqlx::query_as(
            "select l.booking_id, sum(l.platform_fee), sum(l.booking_amount),
                    (array_agg(i.number order by i.seq desc))[1]
             from invoice_lines l join invoices i on i.id = l.invoice_id
             where i.tenant_id = $1 and i.status <> 'void' and l.booking_id = any($2)
             group by l.booking_id",
        )
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

    /// Periods of the tenant that are closed: a live invoice exists, or a close found nothing
    /// to bill.
    pub async fn closed_periods(&self, tenant_id: &str) -> Result<HashSet<String>, sqlx::Error> {
        let periods: Vec<String> = sqlx::query_scalar(
            "select period from invoices where tenant_id = $1 and status <> 'void'
             union
             select period from close_outcomes where tenant_id = $1 and outcome = 'nothing_billable'",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(periods.into_iter().collect())
    }

    /// The tenant's marks for sessions before `end`.
    pub async fn marks_before(
        &self,
        tenant_id: &str,
        end: DateTime<Utc>,
    ) -> Result<Vec<Mark>, sqlx::Error> {
        let rows: Vec<(Uuid, DateTime<Utc>, i64)> = sqlx::query_as(
            "select booking_id, session_at, mark_seq from booking_marks
             where tenant_id = $1 and session_at < $2",
        )
        .bind(tenant_id)
        .bind(end)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(booking_id, session_at, seq)| Mark {
                booking_id,
                session_at,
                seq,
            })
            .collect())
    }

    /// Records that these bookings changed; a booking already marked gets a new mark.
    pub async fn mark(&self, updates: &[MarkUpdate]) -> Result<(), sqlx::Error> {
        // One row per booking per statement: `on conflict` cannot touch a row twice.
        let mut latest: HashMap<(String, Uuid), DateTime<Utc>> = HashMap::new();
        for u in updates {
            latest.insert((u.tenant_id.clone(), u.booking_id), u.session_at);
        }
        let (keys, sessions): (Vec<_>, Vec<_>) = latest.into_iter().unzip();
        let (tenants, ids): (Vec<String>, Vec<Uuid>) = keys.into_iter().unzip();
        sqlx::query(
            "insert into booking_marks (tenant_id, booking_id, session_at)
             select * from unnest($1::text[], $2::uuid[], $3::timestamptz[])
             on conflict (tenant_id, booking_id) do update
                set session_at = excluded.session_at, mark_seq = nextval('booking_mark_seq'),
                    marked_at = now()",
        )
        .bind(tenants)
        .bind(ids)
        .bind(sessions)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes the given marks unless the booking was marked again since they were read.
    pub async fn clear_marks(
        &self,
        tx: &mut PgConnection,
        tenant_id: &str,
        marks: &[&Mark],
    ) -> Result<(), sqlx::Error> {
        if marks.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "delete from booking_marks m
             using unnest($2::uuid[], $3::bigint[]) as seen (booking_id, seq)
             where m.tenant_id = $1 and m.booking_id = seen.booking_id and m.mark_seq = seen.seq",
        )
        .bind(tenant_id)
        .bind(marks.iter().map(|m| m.booking_id).collect::<Vec<_>>())
        .bind(marks.iter().map(|m| m.seq).collect::<Vec<_>>())
        .execute(tx)
        .await?;
        Ok(())
    }

    /// Marks the bookings of every line of a voided invoice again: what it billed no longer
    /// counts, so the next close (or the month's new invoice) bills them anew.
    pub async fn remark_lines(
        &self,
        tx: &mut PgConnection,
        invoice: &InvoiceRow,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "insert into booking_marks (tenant_id, booking_id, session_at)
             select $2, booking_id, session_at from invoice_lines where invoice_id = $1
             on conflict (tenant_id, booking_id) do update
                set mark_seq = nextval('booking_mark_seq'), marked_at = now()",
        )
        .bind(invoice.id)
        .bind(&invoice.tenant_id)
        .execute(tx)
        .await?;
        Ok(())
    }

    pub async fn record_outcome(
        &self,
        conn: &mut PgConnection,
        tenant_id: &str,
        period: &str,
        outcome: &str,
        invoice_id: Option<Uuid>,
        detail: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "insert into close_outcomes (tenant_id, period, outcome, invoice_id, detail)
             values ($1, $2, $3, $4, $5)",
        )
        .bind(tenant_id)
        .bind(period)
        .bind(outcome)
        .bind(invoice_id)
        .bind(detail)
        .execute(conn)
        .await?;
        Ok(())
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
        sqlx::query(
            "insert into outbox (subject, message_id, payload, traceparent)
             values ($1, $2, $3, $4)
             on conflict (message_id) do nothing",
        )
        .bind(subject)
        .bind(message_id)
        .bind(payload)
        .bind(trace::current_traceparent())
        .execute(tx)
        .await?;
        Ok(())
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
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'draft', $14, $15,
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
        self.append_history(tx, inv.id, None, Status::Draft, "made by the monthly close")
            .await?;
        Ok(row)
    }

    /// Moves a locked invoice to `to`: updates it, appends to its history and writes the event
    /// `invoicing.invoice.<to>` to the outbox, all in the caller's transaction.
    pub async fn transition(
        &self,
        tx: &mut PgConnection,
        invoice: &InvoiceRow,
        to: Status,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<InvoiceRow, sqlx::Error> {
        let from = invoice.status();
        let row: InvoiceRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "update invoices set status = $2,
                issued_at = case when $2 = 'issued' then coalesce(issued_at, $3) else issued_at end,
                paid_at = case when $2 = 'paid' then $3 else paid_at end,
                voided_at = case when $2 = 'void' then $3 else voided_at end,
                void_reason = case when $2 = 'void' then $4 else void_reason end
             where id = $1
             returning {INVOICE_COLUMNS}"
        )))
        .bind(invoice.id)
        .bind(to.as_str())
        .bind(now)
        .bind(reason)
        .fetch_one(&mut *tx)
        .await?;
        let seq = self
            .append_history(tx, invoice.id, Some(from), to, reason)
            .await?;
        self.publish(tx, &row, from, to.as_str(), reason, seq, now)
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
        let status = invoice.status();
        let seq = self
            .append_history(tx, invoice.id, Some(status), status, reason)
            .await?;
        self.publish(tx, invoice, status, what, reason, seq, now)
            .await
    }

    async fn append_history(
        &self,
        tx: &mut PgConnection,
        invoice_id: Uuid,
        from: Option<Status>,
        to: Status,
        reason: &str,
    ) -> Result<i32, sqlx::Error> {
        sqlx::query_scalar(
            "insert into invoice_status_history (invoice_id, seq, from_status, to_status, reason)
             select $1, coalesce(max(seq), 0) + 1, $2, $3, $4
             from invoice_status_history where invoice_id = $1
             returning seq",
        )
        .bind(invoice_id)
        .bind(from.map(Status::as_str))
        .bind(to.as_str())
        .bind(reason)
        .fetch_one(tx)
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn publish(
        &self,
        tx: &mut PgConnection,
        row: &InvoiceRow,
        from: Status,
        what: &str,
        reason: &str,
        seq: i32,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let payload = if what == Status::Issued.as_str() {
            InvoiceIssuedV1 {
                invoice_id: row.id.to_string(),
                tenant_id: row.tenant_id.clone(),
                invoice_number: row.number.clone(),
                period: row.period.clone(),
                issued_at: Some(timestamp(row.issued_at.unwrap_or(now))),
            }
            .encode_to_vec()
        } else {
            InvoiceStatusChangedV1 {
                invoice_id: row.id.to_string(),
                tenant_id: row.tenant_id.clone(),
                invoice_number: row.number.clone(),
                period: row.period.clone(),
                from_status: from.as_str().to_string(),
                to_status: row.status.clone(),
                reason: reason.to_string(),
                total: Some(row.money(row.total)),
                amount_paid: Some(row.money(row.amount_paid)),
                changed_at: Some(timestamp(now)),
                version: seq.unsigned_abs(),
            }
            .encode_to_vec()
        };
        self.enqueue(
            tx,
            self.subjects.invoice(what),
            format!("invoice:{}:{seq}", row.id),
            payload,
        )
        .await
    }

    /// Records a payment once per idempotency key and adds it to the invoice's amount paid.
    /// `None` when the key was already recorded.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_payment(
        &self,
        tx: &mut PgConnection,
        invoice: &InvoiceRow,
        method: &str,
        amount: Decimal,
        received_on: NaiveDate,
        reference: &str,
        idempotency_key: &str,
    ) -> Result<Option<(InvoiceRow, NewPayment)>, sqlx::Error> {
        let payment = NewPayment {
            id: Uuid::now_v7(),
            method: method.to_string(),
            amount,
            received_on,
            reference: reference.to_string(),
        };
        let inserted = sqlx::query(
            "insert into payments (id, invoice_id, method, amount, received_on, reference,
                idempotency_key)
             values ($1, $2, $3, $4, $5, $6, $7)
             on conflict (idempotency_key) do nothing",
        )
        .bind(payment.id)
        .bind(invoice.id)
        .bind(method)
        .bind(amount)
        .bind(received_on)
        .bind(reference)
        .bind(idempotency_key)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(None);
        }
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "update invoices set amount_paid = amount_paid + $2 where id = $1
             returning {INVOICE_COLUMNS}"
        )))
        .bind(invoice.id)
        .bind(amount)
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
            method: payment.method.clone(),
            amount: Some(invoice.money(payment.amount)),
            received_on: payment.received_on.to_string(),
            reference: payment.reference.clone(),
            status: invoice.status.clone(),
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
        sqlx::query_as("select invoice_id, amount from payments where idempotency_key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
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

    /// Claims a Stripe event id; `false` when it was already handled.
    pub async fn claim_stripe_event(
        &self,
        tx: &mut PgConnection,
        event_id: &str,
        event_type: &str,
        created: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let inserted = sqlx::query(
            "insert into stripe_events (event_id, event_type, created, outcome)
             values ($1, $2, $3, 'received') on conflict do nothing",
        )
        .bind(event_id)
        .bind(event_type)
        .bind(created)
        .execute(tx)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// What became of a claimed Stripe event and why; `invoice_id` only for an invoice that
    /// exists.
    pub async fn stripe_event_outcome(
        &self,
        tx: &mut PgConnection,
        event_id: &str,
        invoice_id: Option<Uuid>,
        outcome: &str,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "update stripe_events set invoice_id = $2, outcome = $3, reason = $4
             where event_id = $1",
        )
        .bind(event_id)
        .bind(invoice_id)
        .bind(outcome)
        .bind(reason)
        .execute(tx)
        .await?;
        Ok(())
    }

    /// The tenant's invoicing mode now (`manual` or `stripe`); `None` without a profile.
    pub async fn tenant_mode(
        &self,
        conn: &mut PgConnection,
        tenant_id: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("select invoicing_mode from tenant_profiles where tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(conn)
            .await
    }
}
