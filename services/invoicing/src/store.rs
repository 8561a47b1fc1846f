//! Invoice tables: issuing (number, invoice, lines and outbox event in one transaction) and
//! reading invoices back.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

/// An invoice about to be issued; the store gives it its number.
#[derive(Debug, Clone)]
pub struct NewInvoice {
    pub id: Uuid,
    pub tenant_id: String,
    pub period: String,
    pub number_prefix: String,
    pub number_year: i32,
    pub tenant_name: String,
    pub billing_email: String,
    pub time_zone: String,
    pub currency: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    pub total_booking_value: Decimal,
    pub total: Decimal,
    pub lines: Vec<LineRow>,
}

/// The event announcing an invoice, written with it and relayed after commit.
pub struct OutboxEvent {
    pub subject: String,
    pub message_id: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InvoiceRow {
    pub id: Uuid,
    pub number: String,
    pub tenant_id: String,
    pub tenant_name: String,
    pub billing_email: String,
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
    pub total: Decimal,
    pub issued_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LineRow {
    pub position: i32,
    pub booking_id: Uuid,
    pub booking_ref: String,
    pub session_at: DateTime<Utc>,
    pub service_name: String,
    pub booking_amount: Decimal,
    pub platform_fee: Decimal,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// Another run issued this tenant's invoice for the period first.
    #[error("an invoice for this tenant and period already exists")]
    AlreadyIssued,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

const INVOICE_COLUMNS: &str = "id, number, tenant_id, tenant_name, billing_email, period, \
    period_start, period_end, time_zone, currency, status, issue_date, due_date, booking_count, \
    total_booking_value, total, issued_at";

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Store { pool }
    }

    /// The live (not void) invoice of a tenant for a period.
    pub async fn find_live(
        &self,
        tenant_id: &str,
        period: &str,
    ) -> Result<Option<InvoiceRow>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {INVOICE_COLUMNS} from invoices
             where tenant_id = $1 and period = $2 and status <> 'void'"
        )))
        .bind(tenant_id)
        .bind(period)
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<(InvoiceRow, Vec<LineRow>)>, sqlx::Error> {
        let invoice: Option<InvoiceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {INVOICE_COLUMNS} from invoices where id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(invoice) = invoice else {
            return Ok(None);
        };
        let lines = sqlx::query_as(
            "select position, booking_id, booking_ref, session_at, service_name, booking_amount,
                    platform_fee
             from invoice_lines where invoice_id = $1 order by position",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some((invoice, lines)))
    }

    pub async fn list(&self, tenant_id: Option<&str>) -> Result<Vec<InvoiceRow>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {INVOICE_COLUMNS} from invoices
             where ($1::text is null or tenant_id = $1)
             order by tenant_id, seq"
        )))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await
    }

    /// Numbers and stores the invoice, its lines and its event (built from the number)
    /// atomically. The counter row stays
    /// locked until commit, and a losing concurrent run rolls its increment back: no gaps.
    pub async fn issue(
        &self,
        inv: &NewInvoice,
        event: impl FnOnce(&str) -> OutboxEvent,
    ) -> Result<String, IssueError> {
        let mut tx = self.pool.begin().await?;
        let seq: i32 = sqlx::query_scalar(
            "insert into invoice_counters (tenant_id, last_seq) values ($1, 1)
             on conflict (tenant_id) do update set last_seq = invoice_counters.last_seq + 1
             returning last_seq",
        )
        .bind(&inv.tenant_id)
        .fetch_one(&mut *tx)
        .await?;
        let number = format!("{}-{}-{seq:04}", inv.number_prefix, inv.number_year);
        let inserted = sqlx::query(
            "insert into invoices (id, tenant_id, period, seq, number, tenant_name, billing_email,
                time_zone, currency, period_start, period_end, status, issue_date, due_date,
                booking_count, total_booking_value, total)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'issued', $12, $13, $14, $15, $16)",
        )
        .bind(inv.id)
        .bind(&inv.tenant_id)
        .bind(&inv.period)
        .bind(seq)
        .bind(&number)
        .bind(&inv.tenant_name)
        .bind(&inv.billing_email)
        .bind(&inv.time_zone)
        .bind(&inv.currency)
        .bind(inv.period_start)
        .bind(inv.period_end)
        .bind(inv.issue_date)
        .bind(inv.due_date)
        .bind(i32::try_from(inv.lines.len()).unwrap_or(i32::MAX))
        .bind(inv.total_booking_value)
        .bind(inv.total)
        .execute(&mut *tx)
        .await;
        if let Err(err) = inserted {
            return Err(
                if billing_runtime::db::is_unique_violation(&err, "invoices_one_per_period") {
                    IssueError::AlreadyIssued
                } else {
                    err.into()
                },
            );
        }
        let lines = &inv.lines;
        sqlx::query(
            "insert into invoice_lines (invoice_id, position, booking_id, booking_ref, session_at,
                service_name, booking_amount, platform_fee)
             select $1, * from unnest($2::int[], $3::uuid[], $4::text[], $5::timestamptz[],
                $6::text[], $7::numeric[], $8::numeric[])",
        )
        .bind(inv.id)
        .bind(lines.iter().map(|l| l.position).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.booking_id).collect::<Vec<_>>())
        .bind(
            lines
                .iter()
                .map(|l| l.booking_ref.clone())
                .collect::<Vec<_>>(),
        )
        .bind(lines.iter().map(|l| l.session_at).collect::<Vec<_>>())
        .bind(
            lines
                .iter()
                .map(|l| l.service_name.clone())
                .collect::<Vec<_>>(),
        )
        .bind(lines.iter().map(|l| l.booking_amount).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.platform_fee).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        let event = event(&number);
        sqlx::query("insert into outbox (subject, message_id, payload) values ($1, $2, $3)")
            .bind(&event.subject)
            .bind(&event.message_id)
            .bind(&event.payload)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(number)
    }
}
