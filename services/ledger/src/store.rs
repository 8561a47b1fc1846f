//! The ledger's tables: recording bookings on the tenant's hash chain, status changes, the audit
//! log and idempotency keys, each event in one transaction.

use billing_domain::Currency;
use billing_domain::hash::{FinancialFields, GENESIS_HASH};
use billing_proto::events::WebhookRejectedV1;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::events::{NewBooking, Reject};

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A new booking record was appended to the tenant's chain.
    Stored,
    /// The booking's status or session time changed (financial fields untouched).
    StatusChanged,
    /// Nothing new: the event was seen before, or the booking already says this.
    Duplicate,
}

impl Applied {
    pub fn as_str(&self) -> &'static str {
        match self {
            Applied::Stored => "stored",
            Applied::StatusChanged => "status_changed",
            Applied::Duplicate => "duplicate",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The event contradicts the record and must not be applied.
    #[error("{}", .0.message)]
    Rejected(Reject),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// A booking as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BookingRow {
    pub id: Uuid,
    pub tenant_id: String,
    pub booking_ref: String,
    pub status: String,
    pub session_at: DateTime<Utc>,
    pub service_name: String,
    pub currency: String,
    pub total_amount: Decimal,
    pub deposit_amount: Decimal,
    pub cash_amount: Decimal,
    pub platform_fee: Decimal,
    pub deposit_rate: Decimal,
    pub platform_fee_rate: Decimal,
    pub record_hash: String,
    pub recorded_at: DateTime<Utc>,
}

const BOOKING_COLUMNS: &str = "id, tenant_id, booking_ref, status, session_at, service_name, \
    currency, total_amount, deposit_amount, cash_amount, platform_fee, deposit_rate, \
    platform_fee_rate, record_hash, recorded_at";

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Store { pool }
    }

    /// Applies one booking event atomically: idempotency key, booking or status change, audit row.
    pub async fn apply(
        &self,
        b: &NewBooking,
        stream_seq: u64,
    ) -> Result<(Applied, Option<Uuid>), ApplyError> {
        let mut tx = self.pool.begin().await?;
        if !claim_event(&mut tx, &b.event_id).await? {
            audit(
                &mut tx,
                b,
                Applied::Duplicate.as_str(),
                None,
                Some("event already processed"),
                stream_seq,
            )
            .await?;
            tx.commit().await?;
            return Ok((Applied::Duplicate, None));
        }
        let existing: Option<(Uuid, String, DateTime<Utc>, String, Decimal)> = sqlx::query_as(
            "select id, status, session_at, currency, total_amount from bookings
             where tenant_id = $1 and booking_ref = $2 for update",
        )
        .bind(&b.tenant_id)
        .bind(&b.booking_ref)
        .fetch_optional(&mut *tx)
        .await?;

        let (applied, id) = match existing {
            None => (Applied::Stored, insert_booking(&mut tx, b).await?),
            Some((id, status, session_at, currency, total)) => {
                if currency.trim() != b.currency.code() || total != b.amounts.total {
                    // Dropping `tx` rolls back the claimed event key too.
                    return Err(ApplyError::Rejected(Reject::new(
                        "financial_change",
                        format!(
                            "booking {} was recorded at {} {}, event says {} {}; price revisions are not supported yet",
                            b.booking_ref,
                            total,
                            currency.trim(),
                            b.amounts.total,
                            b.currency
                        ),
                    )));
                }
                if status == b.status.as_str() && session_at == b.session_at {
                    (Applied::Duplicate, id)
                } else {
                    sqlx::query(
                        "update bookings set status = $2, session_at = $3, updated_at = now() where id = $1",
                    )
                    .bind(id)
                    .bind(b.status.as_str())
                    .bind(b.session_at)
                    .execute(&mut *tx)
                    .await?;
                    record_status(&mut tx, id, b).await?;
                    (Applied::StatusChanged, id)
                }
            }
        };
        let reason = (applied == Applied::Duplicate).then_some("booking already in this state");
        audit(&mut tx, b, applied.as_str(), Some(id), reason, stream_seq).await?;
        tx.commit().await?;
        Ok((applied, Some(id)))
    }

    /// Records that an event was dead-lettered (once, however often it is redelivered). The
    /// event's own key stays unclaimed, so replaying it from the dead-letter stream applies it.
    pub async fn record_dead_letter(
        &self,
        source: &str,
        event_id: &str,
        tenant_id: Option<&str>,
        reason: &str,
        stream_seq: u64,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        if claim_event(&mut tx, &format!("dead-letter:{event_id}")).await? {
            sqlx::query(
                "insert into audit_log (source, event_id, tenant_id, outcome, reason, stream_seq)
                 values ($1, $2, $3, 'dead_lettered', $4, $5)",
            )
            .bind(source)
            .bind(event_id)
            .bind(tenant_id)
            .bind(reason)
            .bind(i64::try_from(stream_seq).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Records a request ingest refused (once, however often the record is redelivered).
    pub async fn record_rejection(
        &self,
        r: &WebhookRejectedV1,
        stream_seq: u64,
    ) -> Result<(), sqlx::Error> {
        let event_id = format!("rejected:{}", r.rejection_id);
        let received_at = billing_proto::convert::datetime(r.received_at.as_ref());
        let mut tx = self.pool.begin().await?;
        if claim_event(&mut tx, &event_id).await? {
            sqlx::query(
                "insert into audit_log (occurred_at, source, event_id, tenant_id, outcome, reason,
                    body_sha256, http_status, stream_seq)
                 values (coalesce($1, now()), $2, $3, nullif($4, ''), 'rejected', $5, $6, $7, $8)",
            )
            .bind(received_at)
            .bind(&r.source)
            .bind(&event_id)
            .bind(&r.tenant_id)
            .bind(&r.reason)
            .bind(&r.body_sha256)
            .bind(i32::try_from(r.http_status).ok())
            .bind(i64::try_from(stream_seq).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// A tenant's bookings with sessions in `[from, to)` (either bound optional).
    pub async fn list(
        &self,
        tenant_id: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        limit: i64,
    ) -> Result<Vec<BookingRow>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {BOOKING_COLUMNS} from bookings
             where tenant_id = $1
               and ($2::timestamptz is null or session_at >= $2)
               and ($3::timestamptz is null or session_at < $3)
             order by session_at, booking_ref
             limit $4"
        )))
        .bind(tenant_id)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Billable bookings (confirmed or completed) with sessions in `[start, end)`.
    pub async fn billable(
        &self,
        tenant_id: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<BookingRow>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {BOOKING_COLUMNS} from bookings
             where tenant_id = $1 and session_at >= $2 and session_at < $3
               and status in ('confirmed', 'completed')
             order by session_at, booking_ref"
        )))
        .bind(tenant_id)
        .bind(start)
        .bind(end)
        .fetch_all(&self.pool)
        .await
    }
}

/// Claims an event id; `false` when it was already processed.
async fn claim_event(
    tx: &mut Transaction<'_, Postgres>,
    event_id: &str,
) -> Result<bool, sqlx::Error> {
    let inserted =
        sqlx::query("insert into processed_events (event_id) values ($1) on conflict do nothing")
            .bind(event_id)
            .execute(&mut **tx)
            .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Appends a booking to its tenant's chain; the chain head row lock keeps the chain linear.
async fn insert_booking(
    tx: &mut Transaction<'_, Postgres>,
    b: &NewBooking,
) -> Result<Uuid, sqlx::Error> {
    let (last_seq, last_hash): (i64, String) = sqlx::query_as(
        "insert into chain_heads (tenant_id, last_seq, last_hash) values ($1, 0, $2)
         on conflict (tenant_id) do update set tenant_id = excluded.tenant_id
         returning last_seq, last_hash",
    )
    .bind(&b.tenant_id)
    .bind(GENESIS_HASH)
    .fetch_one(&mut **tx)
    .await?;
    let fields = FinancialFields {
        tenant_id: &b.tenant_id,
        booking_ref: &b.booking_ref,
        currency: b.currency,
        total: b.amounts.total,
        deposit: b.amounts.deposit,
        cash: b.amounts.cash,
        platform_fee: b.amounts.platform_fee,
        deposit_rate: b.deposit_rate.value(),
        fee_rate: b.fee_rate.value(),
    };
    let record_hash = fields.chained_hash(&last_hash);
    let seq = last_seq + 1;
    let id = Uuid::now_v7();
    let client = b.client.as_ref();
    sqlx::query(
        "insert into bookings (id, tenant_id, booking_ref, booking_hash, chain_seq, currency,
            total_amount, deposit_amount, cash_amount, platform_fee, deposit_rate, platform_fee_rate,
            prev_hash, record_hash, status, session_at, service_id, service_name,
            service_duration_minutes, provider_name, client_name, client_email, client_phone,
            source_event_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
            $19, $20, $21, $22, $23, $24)",
    )
    .bind(id)
    .bind(&b.tenant_id)
    .bind(&b.booking_ref)
    .bind(&b.booking_hash)
    .bind(seq)
    .bind(b.currency.code())
    .bind(b.amounts.total)
    .bind(b.amounts.deposit)
    .bind(b.amounts.cash)
    .bind(b.amounts.platform_fee)
    .bind(b.deposit_rate.value())
    .bind(b.fee_rate.value())
    .bind(&last_hash)
    .bind(&record_hash)
    .bind(b.status.as_str())
    .bind(b.session_at)
    .bind(&b.service_id)
    .bind(&b.service_name)
    .bind(b.service_duration_minutes)
    .bind(&b.provider_name)
    .bind(client.and_then(|c| c.name.as_deref()))
    .bind(client.and_then(|c| c.email.as_deref()))
    .bind(client.and_then(|c| c.phone.as_deref()))
    .bind(&b.event_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query("update chain_heads set last_seq = $2, last_hash = $3 where tenant_id = $1")
        .bind(&b.tenant_id)
        .bind(seq)
        .bind(&record_hash)
        .execute(&mut **tx)
        .await?;
    record_status(tx, id, b).await?;
    Ok(id)
}

async fn record_status(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    b: &NewBooking,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into booking_status_history (booking_id, status, session_at, event_id)
         values ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(b.status.as_str())
    .bind(b.session_at)
    .bind(&b.event_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn audit(
    tx: &mut Transaction<'_, Postgres>,
    b: &NewBooking,
    outcome: &str,
    booking_id: Option<Uuid>,
    reason: Option<&str>,
    stream_seq: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into audit_log (source, event_id, tenant_id, outcome, booking_id, reason, stream_seq)
         values ('simplybook', $1, $2, $3, $4, $5, $6)",
    )
    .bind(&b.event_id)
    .bind(&b.tenant_id)
    .bind(outcome)
    .bind(booking_id)
    .bind(reason)
    .bind(i64::try_from(stream_seq).unwrap_or(i64::MAX))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl BookingRow {
    pub fn currency(&self) -> Option<Currency> {
        self.currency.trim().parse().ok()
    }
}
