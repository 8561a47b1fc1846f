//! The ledger's tables: recording bookings on the tenant's hash chain, status changes, the audit
//! log and idempotency keys, each event in one transaction.

use billing_domain::hash::{FinancialFields, GENESIS_HASH, RevisionFields};
use billing_domain::{BookingAmounts, Currency, Rate};
use billing_proto::events::WebhookRejectedV1;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::events::{NewBooking, Reject};
use crate::integrity::{ChainRecord, Fields};

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A new booking record was appended to the tenant's chain.
    Stored,
    /// The booking's status or session time changed (financial fields untouched).
    StatusChanged,
    /// The price changed: a revision with the delta was appended (and any status change applied).
    Revised,
    /// Nothing new: the event was seen before, or the booking already says this.
    Duplicate,
}

impl Applied {
    pub fn as_str(&self) -> &'static str {
        match self {
            Applied::Stored => "stored",
            Applied::StatusChanged => "status_changed",
            Applied::Revised => "revised",
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
    /// 0 for the original amounts, n after the n-th price revision.
    pub revision_no: i32,
}

/// A booking with its current amounts (after any price revisions).
const BOOKING_COLUMNS: &str = "b.id, b.tenant_id, b.booking_ref, b.status, b.session_at, \
    b.service_name, b.currency, c.total_amount, c.deposit_amount, c.cash_amount, c.platform_fee, \
    b.deposit_rate, b.platform_fee_rate, b.record_hash, b.recorded_at, c.revision_no";
const BOOKINGS_FROM: &str = "bookings b join current_amounts c on c.booking_id = b.id";

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
        let existing: Option<Current> = sqlx::query_as(
            "select b.id, b.status, b.session_at, b.currency, b.deposit_rate, b.platform_fee_rate,
                    c.revision_no, c.total_amount, c.deposit_amount, c.cash_amount, c.platform_fee
             from bookings b join current_amounts c on c.booking_id = b.id
             where b.tenant_id = $1 and b.booking_ref = $2
             for update of b",
        )
        .bind(&b.tenant_id)
        .bind(&b.booking_ref)
        .fetch_optional(&mut *tx)
        .await?;

        let (applied, id) = match existing {
            None => (Applied::Stored, insert_booking(&mut tx, b).await?),
            Some(current) => {
                if current.currency.trim() != b.currency.code() {
                    // Dropping `tx` rolls back the claimed event key too.
                    return Err(ApplyError::Rejected(Reject::new(
                        "currency_change",
                        format!(
                            "booking {} was recorded in {}, event says {}",
                            b.booking_ref,
                            current.currency.trim(),
                            b.currency
                        ),
                    )));
                }
                let revised = current.total_amount != b.amounts.total;
                if revised {
                    insert_revision(&mut tx, b, &current).await?;
                }
                let moved =
                    current.status != b.status.as_str() || current.session_at != b.session_at;
                if moved {
                    sqlx::query(
                        "update bookings set status = $2, session_at = $3, updated_at = now() where id = $1",
                    )
                    .bind(current.id)
                    .bind(b.status.as_str())
                    .bind(b.session_at)
                    .execute(&mut *tx)
                    .await?;
                    record_status(&mut tx, current.id, b).await?;
                }
                let applied = match (revised, moved) {
                    (true, _) => Applied::Revised,
                    (false, true) => Applied::StatusChanged,
                    (false, false) => Applied::Duplicate,
                };
                (applied, current.id)
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

    /// Every record of a tenant's hash chain in chain order, and the chain head.
    pub async fn chain(
        &self,
        tenant_id: &str,
    ) -> Result<(Vec<ChainRecord>, Option<(i64, String)>), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // One snapshot for records and head, so a concurrent append cannot look like tampering.
        sqlx::query("set transaction isolation level repeatable read, read only")
            .execute(&mut *tx)
            .await?;
        type BookingTuple = (
            i64,
            Uuid,
            String,
            String,
            Decimal,
            Decimal,
            Decimal,
            Decimal,
            Decimal,
            Decimal,
            String,
            String,
        );
        let bookings: Vec<BookingTuple> = sqlx::query_as(
            "select chain_seq, id, booking_ref, currency, total_amount, deposit_amount,
                    cash_amount, platform_fee, deposit_rate, platform_fee_rate, prev_hash,
                    record_hash
             from bookings where tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_all(&mut *tx)
        .await?;
        type RevisionTuple = (
            i64,
            Uuid,
            String,
            String,
            i32,
            Decimal,
            Decimal,
            Decimal,
            Decimal,
            Decimal,
            Decimal,
            String,
            String,
        );
        let revisions: Vec<RevisionTuple> = sqlx::query_as(
            "select r.chain_seq, r.id, b.booking_ref, r.currency, r.revision_no, r.total_delta,
                    r.deposit_delta, r.cash_delta, r.fee_delta, r.total_after, r.fee_after,
                    r.prev_hash, r.record_hash
             from booking_revisions r join bookings b on b.id = r.booking_id
             where r.tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_all(&mut *tx)
        .await?;
        let head: Option<(i64, String)> =
            sqlx::query_as("select last_seq, last_hash from chain_heads where tenant_id = $1")
                .bind(tenant_id)
                .fetch_optional(&mut *tx)
                .await?;
        tx.commit().await?;
        let mut records: Vec<ChainRecord> = bookings
            .into_iter()
            .map(|b| ChainRecord {
                chain_seq: b.0,
                id: b.1,
                booking_ref: b.2,
                currency: b.3,
                fields: Fields::Booking {
                    total: b.4,
                    deposit: b.5,
                    cash: b.6,
                    platform_fee: b.7,
                    deposit_rate: b.8,
                    fee_rate: b.9,
                },
                prev_hash: b.10,
                record_hash: b.11,
            })
            .chain(revisions.into_iter().map(|r| ChainRecord {
                chain_seq: r.0,
                id: r.1,
                booking_ref: r.2,
                currency: r.3,
                fields: Fields::Revision {
                    revision_no: r.4,
                    total_delta: r.5,
                    deposit_delta: r.6,
                    cash_delta: r.7,
                    fee_delta: r.8,
                    total_after: r.9,
                    fee_after: r.10,
                },
                prev_hash: r.11,
                record_hash: r.12,
            }))
            .collect();
        records.sort_by_key(|r| r.chain_seq);
        Ok((records, head))
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
            "select {BOOKING_COLUMNS} from {BOOKINGS_FROM}
             where b.tenant_id = $1
               and ($2::timestamptz is null or b.session_at >= $2)
               and ($3::timestamptz is null or b.session_at < $3)
             order by b.session_at, b.booking_ref
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
            "select {BOOKING_COLUMNS} from {BOOKINGS_FROM}
             where b.tenant_id = $1 and b.session_at >= $2 and b.session_at < $3
               and b.status in ('confirmed', 'completed')
             order by b.session_at, b.booking_ref"
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

/// A recorded booking as it stands, locked for the event being applied.
#[derive(sqlx::FromRow)]
struct Current {
    id: Uuid,
    status: String,
    session_at: DateTime<Utc>,
    currency: String,
    deposit_rate: Decimal,
    platform_fee_rate: Decimal,
    revision_no: i32,
    total_amount: Decimal,
    deposit_amount: Decimal,
    cash_amount: Decimal,
    platform_fee: Decimal,
}

/// Locks the tenant's chain head and returns the next position and the hash to chain from.
/// The row lock is held until the transaction ends, so the chain stays linear.
async fn chain_next(
    tx: &mut Transaction<'_, Postgres>,
    tenant_id: &str,
) -> Result<(i64, String), sqlx::Error> {
    let (last_seq, last_hash): (i64, String) = sqlx::query_as(
        "insert into chain_heads (tenant_id, last_seq, last_hash) values ($1, 0, $2)
         on conflict (tenant_id) do update set tenant_id = excluded.tenant_id
         returning last_seq, last_hash",
    )
    .bind(tenant_id)
    .bind(GENESIS_HASH)
    .fetch_one(&mut **tx)
    .await?;
    Ok((last_seq + 1, last_hash))
}

async fn chain_advance(
    tx: &mut Transaction<'_, Postgres>,
    tenant_id: &str,
    seq: i64,
    hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("update chain_heads set last_seq = $2, last_hash = $3 where tenant_id = $1")
        .bind(tenant_id)
        .bind(seq)
        .bind(hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Appends a booking to its tenant's chain.
async fn insert_booking(
    tx: &mut Transaction<'_, Postgres>,
    b: &NewBooking,
) -> Result<Uuid, sqlx::Error> {
    let (seq, last_hash) = chain_next(tx, &b.tenant_id).await?;
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
    chain_advance(tx, &b.tenant_id, seq, &record_hash).await?;
    record_status(tx, id, b).await?;
    Ok(id)
}

/// Appends a price revision: the new price split by the rates snapshotted on the booking (not
/// the tenant's current ones), stored as the change from the current amounts.
async fn insert_revision(
    tx: &mut Transaction<'_, Postgres>,
    b: &NewBooking,
    current: &Current,
) -> Result<(), ApplyError> {
    let rate = |r: Decimal| {
        Rate::new(r).map_err(|e| {
            ApplyError::Rejected(Reject::new("invalid_amount", format!("stored rate: {e}")))
        })
    };
    let after = BookingAmounts::split(
        b.amounts.total,
        b.currency,
        rate(current.deposit_rate)?,
        rate(current.platform_fee_rate)?,
    )
    .map_err(|e| ApplyError::Rejected(Reject::new("invalid_amount", e.to_string())))?;
    let (seq, last_hash) = chain_next(tx, &b.tenant_id).await?;
    let fields = RevisionFields {
        tenant_id: &b.tenant_id,
        booking_ref: &b.booking_ref,
        revision_no: current.revision_no + 1,
        currency: b.currency,
        total_delta: after.total - current.total_amount,
        deposit_delta: after.deposit - current.deposit_amount,
        cash_delta: after.cash - current.cash_amount,
        fee_delta: after.platform_fee - current.platform_fee,
        total_after: after.total,
        fee_after: after.platform_fee,
    };
    let record_hash = fields.chained_hash(&last_hash);
    sqlx::query(
        "insert into booking_revisions (id, booking_id, tenant_id, revision_no, chain_seq,
            currency, total_delta, deposit_delta, cash_delta, fee_delta, total_after,
            deposit_after, cash_after, fee_after, prev_hash, record_hash, source_event_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(Uuid::now_v7())
    .bind(current.id)
    .bind(&b.tenant_id)
    .bind(fields.revision_no)
    .bind(seq)
    .bind(b.currency.code())
    .bind(fields.total_delta)
    .bind(fields.deposit_delta)
    .bind(fields.cash_delta)
    .bind(fields.fee_delta)
    .bind(after.total)
    .bind(after.deposit)
    .bind(after.cash)
    .bind(after.platform_fee)
    .bind(&last_hash)
    .bind(&record_hash)
    .bind(&b.event_id)
    .execute(&mut **tx)
    .await?;
    chain_advance(tx, &b.tenant_id, seq, &record_hash).await?;
    Ok(())
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
