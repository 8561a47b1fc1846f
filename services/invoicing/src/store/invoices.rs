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
use super::mode::InvoicingMode;
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
    pub invoicing_mode: InvoicingMode,
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

#[derive(Debug, Clone)]
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
    pub invoicing_mode: InvoicingMode,
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

#[derive(Debug, Clone)]
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
#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub from_status: Option<InvoiceStatus>,
    pub to_status: InvoiceStatus,
    pub reason: String,
    pub changed_at: DateTime<Utc>,
    /// Who asked for it through the API (`billing_runtime::operator`): the named person and
    /// the token's role; `None` for what invoicing did on its own.
    pub operator: Option<String>,
    pub caller_role: Option<String>,
}

/// What live invoices have billed for one booking so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Billed {
    pub fee: Decimal,
    pub amount: Decimal,
    /// The latest live invoice with a line for the booking.
    pub last_number: String,
}

/// `sqlx::query_as!` into [`InvoiceRow`], checked at build time: the SQL is `$before`, the row's
/// columns, then `$after` — `("select", "from invoicing.invoices where …")` or
/// `("update invoicing.invoices … returning", "")`. A macro rather than a view: `returning` cannot
/// name a view, and the query macros take only literals.
///
/// A live (not void) invoice is `status <> 'void'` in SQL, spelled out: PostgreSQL uses the
/// partial unique index `invoices_one_per_period` (`where status <> 'void'`) only for a query
/// whose own predicate implies it, which a parameter may not.
macro_rules! query_invoice {
    ($before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            $crate::store::InvoiceRow,
            $before
                + " id, number, tenant_id, tenant_name, billing_email, address, tax_id, period,
                    period_start, period_end, time_zone, currency,
                    status as \"status: crate::store::InvoiceStatus\", issue_date, due_date,
                    booking_count, total_booking_value, subtotal, tax_rate, tax, total,
                    amount_paid, issued_at,
                    invoicing_mode as \"invoicing_mode: crate::store::InvoicingMode\",
                    payment_instructions, void_reason, stripe_invoice_id, stripe_items_created,
                    stripe_number, stripe_hosted_url "
                + $after
            $(, $arg)*
        )
    };
}
pub(super) use query_invoice;

impl Store {
    /// The live (not void) invoice of a tenant for a period.
    pub async fn find_live(
        &self,
        conn: &mut PgConnection,
        tenant_id: &str,
        period: &str,
    ) -> Result<Option<InvoiceRow>, sqlx::Error> {
        query_invoice!(
            "select",
            "from invoicing.invoices
             where tenant_id = $1 and period = $2 and status <> 'void'",
            tenant_id,
            period
        )
        .fetch_optional(conn)
        .await
    }

    pub async fn invoice(&self, id: Uuid) -> Result<Option<InvoiceRow>, sqlx::Error> {
        query_invoice!("select", "from invoicing.invoices where id = $1", id)
            .fetch_optional(&self.pool)
            .await
    }

    /// The invoice, locked until the transaction ends.
    pub async fn lock_invoice(
        &self,
        tx: &mut PgConnection,
        id: Uuid,
    ) -> Result<Option<InvoiceRow>, sqlx::Error> {
        query_invoice!(
            "select",
            "from invoicing.invoices where id = $1 for update",
            id
        )
        .fetch_optional(tx)
        .await
    }

    /// The id of the invoice numbered `number` (numbers are unique across tenants).
    pub async fn invoice_id_by_number(&self, number: &str) -> Result<Option<Uuid>, sqlx::Error> {
        sqlx::query_scalar!(
            "select id from invoicing.invoices where number = $1",
            number
        )
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn lines(&self, id: Uuid) -> Result<Vec<LineRow>, sqlx::Error> {
        sqlx::query_as!(
            LineRow,
            "select position, booking_id, booking_ref, session_at, service_name, booking_amount,
                    platform_fee, kind, description
             from invoicing.invoice_lines where invoice_id = $1 order by position",
            id
        )
        .fetch_all(&self.pool)
        .await
    }

    pub async fn history(&self, id: Uuid) -> Result<Vec<HistoryRow>, sqlx::Error> {
        sqlx::query_as!(
            HistoryRow,
            r#"select from_status as "from_status: InvoiceStatus",
                      to_status as "to_status: InvoiceStatus", reason, changed_at, operator,
                      caller_role
               from invoicing.invoice_status_history where invoice_id = $1 order by seq"#,
            id
        )
        .fetch_all(&self.pool)
        .await
    }

    pub async fn list(
        &self,
        tenant_id: Option<&str>,
        status: Option<InvoiceStatus>,
        period: Option<&str>,
    ) -> Result<Vec<InvoiceRow>, sqlx::Error> {
        query_invoice!(
            "select",
            "from invoicing.invoices
             where ($1::text is null or tenant_id = $1)
               and ($2::text is null or status = $2)
               and ($3::text is null or period = $3)
             order by tenant_id, seq",
            tenant_id,
            status as Option<InvoiceStatus>,
            period
        )
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
        sqlx::query_scalar!(
            "select id from invoicing.invoices
             where status = any($3)
               and due_date < coalesce($1, ($2 at time zone time_zone)::date)
             order by due_date, tenant_id, seq",
            as_of,
            now,
            &InvoiceStatus::FALLS_OVERDUE as &[InvoiceStatus]
        )
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
        sqlx::query!(
            "insert into invoicing.invoice_counters (tenant_id, last_seq) values ($1, 0)
             on conflict (tenant_id) do nothing",
            tenant_id
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "select last_seq from invoicing.invoice_counters where tenant_id = $1 for update",
            tenant_id
        )
        .fetch_one(&mut *tx)
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
        let rows = sqlx::query!(
            r#"select l.booking_id, sum(l.platform_fee) as "fee!",
                      sum(l.booking_amount) as "amount!",
                      (array_agg(i.number order by i.seq desc))[1] as "last_number!"
               from invoicing.invoice_lines l join invoicing.invoices i on i.id = l.invoice_id
               where i.tenant_id = $1 and i.status <> 'void' and l.booking_id = any($2)
               group by l.booking_id"#,
            tenant_id,
            booking_ids
        )
        .fetch_all(conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                (
                    row.booking_id,
                    Billed {
                        fee: row.fee,
                        amount: row.amount,
                        last_number: row.last_number,
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
        let seq = sqlx::query_scalar!(
            "update invoicing.invoice_counters set last_seq = last_seq + 1 where tenant_id = $1
             returning last_seq",
            inv.tenant_id
        )
        .fetch_one(&mut *tx)
        .await?;
        let number = format!("{}-{}-{seq:04}", inv.number_prefix, inv.number_year);
        let instructions = inv.payment_instructions.replace("{number}", &number);
        let row = query_invoice!(
            "insert into invoicing.invoices (id, tenant_id, period, seq, number, tenant_name,
                billing_email, address, tax_id, time_zone, currency, period_start, period_end,
                status, issue_date, due_date, booking_count, total_booking_value, subtotal,
                tax_rate, tax, total, invoicing_mode, payment_instructions)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                $17, $18, $19, $20, $21, $22, $23, $24)
             returning",
            "",
            inv.id,
            inv.tenant_id,
            inv.period,
            seq,
            number,
            inv.tenant_name,
            inv.billing_email,
            inv.address,
            inv.tax_id,
            inv.time_zone,
            inv.currency.code(),
            inv.period_start,
            inv.period_end,
            InvoiceStatus::Draft as InvoiceStatus,
            inv.issue_date,
            inv.due_date,
            inv.booking_count(),
            inv.total_booking_value,
            inv.subtotal,
            inv.tax_rate,
            inv.tax,
            inv.total,
            inv.invoicing_mode as InvoicingMode,
            instructions
        )
        .fetch_one(&mut *tx)
        .await?;
        // One statement for all lines, each column an array.
        let lines = &inv.lines;
        let positions: Vec<i32> = lines.iter().map(|l| l.position).collect();
        let booking_ids: Vec<Uuid> = lines.iter().map(|l| l.booking_id).collect();
        let sessions: Vec<DateTime<Utc>> = lines.iter().map(|l| l.session_at).collect();
        let amounts: Vec<Decimal> = lines.iter().map(|l| l.booking_amount).collect();
        let fees: Vec<Decimal> = lines.iter().map(|l| l.platform_fee).collect();
        // `text[]` is `&[String]` to the query macros; borrowed `&str`s bind the same.
        let texts = |field: fn(&LineRow) -> &str| lines.iter().map(field).collect::<Vec<_>>();
        let (refs, services) = (texts(|l| &l.booking_ref), texts(|l| &l.service_name));
        let (kinds, descriptions) = (texts(|l| &l.kind), texts(|l| &l.description));
        sqlx::query!(
            "insert into invoicing.invoice_lines (invoice_id, position, booking_id, booking_ref,
                session_at, service_name, booking_amount, platform_fee, kind, description)
             select $1, * from unnest($2::int[], $3::uuid[], $4::text[], $5::timestamptz[],
                $6::text[], $7::numeric[], $8::numeric[], $9::text[], $10::text[])",
            inv.id,
            positions.as_slice(),
            booking_ids.as_slice(),
            refs.as_slice() as &[&str],
            sessions.as_slice(),
            services.as_slice() as &[&str],
            amounts.as_slice(),
            fees.as_slice(),
            kinds.as_slice() as &[&str],
            descriptions.as_slice() as &[&str],
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

    /// Appends a step to the invoice's status history, naming who asked for it when a gRPC call
    /// did ([`billing_runtime::operator::current`]); returns its position (1 for the first).
    pub(super) async fn append_history(
        &self,
        tx: &mut PgConnection,
        invoice_id: Uuid,
        from: Option<InvoiceStatus>,
        to: InvoiceStatus,
        reason: &str,
    ) -> Result<i32, sqlx::Error> {
        let acting = billing_runtime::operator::current();
        sqlx::query_scalar!(
            "insert into invoicing.invoice_status_history
                (invoice_id, seq, from_status, to_status, reason, operator, caller_role)
             select $1, coalesce(max(seq), 0) + 1, $2, $3, $4, $5, $6
             from invoicing.invoice_status_history where invoice_id = $1
             returning seq",
            invoice_id,
            from as Option<InvoiceStatus>,
            to as InvoiceStatus,
            reason,
            acting.as_ref().and_then(|a| a.operator_name()),
            acting.as_ref().map(|a| a.role_name())
        )
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
        sqlx::query!(
            "update invoicing.invoices set
                stripe_invoice_id = coalesce($2, stripe_invoice_id),
                stripe_items_created = greatest(stripe_items_created, coalesce($3, 0)),
                stripe_number = coalesce($4, stripe_number),
                stripe_hosted_url = coalesce($5, stripe_hosted_url),
                payment_instructions = case when $5::text is null then payment_instructions
                    else 'Pay online: ' || $5 end
             where id = $1",
            id,
            stripe_invoice_id,
            items_created,
            stripe_number,
            hosted_url
        )
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
        invoicing_mode: InvoicingMode::Stripe,
        payment_instructions: String::new(),
        void_reason: None,
        stripe_invoice_id: Some("in_ours".into()),
        stripe_items_created: 2,
        stripe_number: None,
        stripe_hosted_url: None,
    }
}
