//! The ledger's tables: bookings and revisions on each tenant's hash chain (written in batches
//! by [`crate::batch`]), the audit log, dead letters, refused requests, and the queries behind
//! the gRPC API.

use billing_domain::Currency;
use billing_proto::events::{AlertV1, WebhookRejectedV1};
use billing_proto::ledger::TenantReconciliation;
use billing_runtime::Subjects;
use chrono::{DateTime, Utc};
use prost::Message as _;
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::batch;
use crate::events::NewBooking;
use crate::integrity::{Amounts, ChainRecord, Fields};
use crate::outcome::Outcome;
use billing_domain::hash::ChainKey;

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

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HistoryRow {
    pub status: String,
    pub session_at: DateTime<Utc>,
    pub service_name: Option<String>,
    pub event_id: String,
    pub changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RevisionRow {
    pub revision_no: i32,
    pub total_delta: Decimal,
    pub fee_delta: Decimal,
    pub total_after: Decimal,
    pub fee_after: Decimal,
    pub record_hash: String,
    pub source_event_id: String,
    pub recorded_at: DateTime<Utc>,
}

/// A booking with its current amounts: the latest price revision's, or the original's.
const BOOKING_COLUMNS: &str = "b.id, b.tenant_id, b.booking_ref, b.status, b.session_at, \
    b.service_name, b.currency, \
    coalesce(r.total_after, b.total_amount) as total_amount, \
    coalesce(r.deposit_after, b.deposit_amount) as deposit_amount, \
    coalesce(r.cash_after, b.cash_amount) as cash_amount, \
    coalesce(r.fee_after, b.platform_fee) as platform_fee, \
    b.deposit_rate, b.platform_fee_rate, b.record_hash, b.recorded_at, \
    coalesce(r.revision_no, 0) as revision_no";
/// Bookings with their latest revision, if any. A lateral lookup per selected booking (by the
/// `(booking_id, revision_no)` index), so the cost follows the rows selected, not the table.
const BOOKINGS_FROM: &str = "bookings b left join lateral (
        select revision_no, total_after, deposit_after, cash_after, fee_after
        from booking_revisions where booking_id = b.id
        order by revision_no desc limit 1) r on true";

/// A price revision as the verifier reads it: its chained fields and the amounts before it.
#[derive(sqlx::FromRow)]
struct ChainRevisionRow {
    chain_seq: i64,
    id: Uuid,
    booking_ref: String,
    currency: String,
    revision_no: i32,
    total_delta: Decimal,
    deposit_delta: Decimal,
    cash_delta: Decimal,
    fee_delta: Decimal,
    total_after: Decimal,
    deposit_after: Decimal,
    cash_after: Decimal,
    fee_after: Decimal,
    prev_hash: String,
    record_hash: String,
    total_before: Option<Decimal>,
    deposit_before: Option<Decimal>,
    cash_before: Option<Decimal>,
    fee_before: Option<Decimal>,
}

impl ChainRevisionRow {
    fn into_record(self) -> ChainRecord {
        let before = match (
            self.total_before,
            self.deposit_before,
            self.cash_before,
            self.fee_before,
        ) {
            (Some(total), Some(deposit), Some(cash), Some(fee)) => Some(Amounts {
                total,
                deposit,
                cash,
                fee,
            }),
            _ => None,
        };
        ChainRecord {
            chain_seq: self.chain_seq,
            id: self.id,
            booking_ref: self.booking_ref,
            currency: self.currency,
            fields: Fields::Revision {
                revision_no: self.revision_no,
                total_delta: self.total_delta,
                deposit_delta: self.deposit_delta,
                cash_delta: self.cash_delta,
                fee_delta: self.fee_delta,
                after: Amounts {
                    total: self.total_after,
                    deposit: self.deposit_after,
                    cash: self.cash_after,
                    fee: self.fee_after,
                },
                before,
            },
            prev_hash: self.prev_hash,
            record_hash: self.record_hash,
        }
    }
}

/// Which audit log entries to list.
#[derive(Debug, Default)]
pub struct AuditFilter {
    pub tenant_id: Option<String>,
    pub source: Option<String>,
    pub outcome: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub before_id: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub source: String,
    pub event_id: String,
    pub tenant_id: Option<String>,
    pub outcome: String,
    pub booking_id: Option<Uuid>,
    pub reason: Option<String>,
    pub http_status: Option<i32>,
    pub body_sha256: Option<String>,
}

/// A booking as reconciliation compares it with SimplyBook's.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReconcileRow {
    pub booking_ref: String,
    pub status: String,
    pub service_id: Option<String>,
    pub session_at: DateTime<Utc>,
    pub total_amount: Decimal,
    pub currency: String,
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    subjects: Subjects,
    /// The key of the hash chain, when it is keyed (`LEDGER_CHAIN_KEY_FILE`).
    chain_key: Option<ChainKey>,
}

impl Store {
    pub fn new(pool: PgPool, subjects: Subjects) -> Self {
        Store {
            pool,
            subjects,
            chain_key: None,
        }
    }

    /// Records are hashed, and verified, with `key` (HMAC) from now on.
    pub fn with_chain_key(self, key: Option<ChainKey>) -> Self {
        Store {
            chain_key: key,
            ..self
        }
    }

    pub fn chain_key(&self) -> Option<&ChainKey> {
        self.chain_key.as_ref()
    }

    /// Applies a batch of booking events in one transaction (see [`crate::batch`]).
    pub async fn apply_batch(
        &self,
        events: &[(NewBooking, u64)],
    ) -> Result<Vec<Outcome>, sqlx::Error> {
        batch::apply(&self.pool, &self.subjects, events, self.chain_key.as_ref()).await
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
        let row = AuditRow {
            source,
            event_id,
            tenant_id,
            outcome: "dead_lettered",
            reason,
            stream_seq: Some(stream_seq),
            ..Default::default()
        };
        self.audit_once(&format!("dead-letter:{stream_seq}:{event_id}"), row)
            .await
    }

    /// Records that an operator replayed dead letter `sequence` (the replayed event gets its own
    /// outcome when the ledger processes it).
    pub async fn record_replay(
        &self,
        event_id: &str,
        tenant_id: &str,
        sequence: u64,
    ) -> Result<(), sqlx::Error> {
        let reason = format!("dead letter {sequence} published again");
        let row = AuditRow {
            source: "operator",
            event_id,
            tenant_id: Some(tenant_id).filter(|t| !t.is_empty()),
            outcome: "replayed",
            reason: &reason,
            ..Default::default()
        };
        let mut conn = self.pool.acquire().await?;
        insert_audit(&mut conn, &row).await
    }

    /// Records a request ingest refused (once, however often the record is redelivered).
    pub async fn record_rejection(
        &self,
        r: &WebhookRejectedV1,
        stream_seq: u64,
    ) -> Result<(), sqlx::Error> {
        let event_id = format!("rejected:{}", r.rejection_id);
        let row = AuditRow {
            occurred_at: billing_proto::convert::datetime(r.received_at.as_ref()),
            source: &r.source,
            event_id: &event_id,
            tenant_id: Some(r.tenant_id.as_str()).filter(|t| !t.is_empty()),
            outcome: "rejected",
            reason: &r.reason,
            body_sha256: Some(&r.body_sha256),
            http_status: i32::try_from(r.http_status).ok(),
            stream_seq: Some(stream_seq),
        };
        self.audit_once(&event_id, row).await
    }

    /// Writes `row` unless `key` was claimed before, in one transaction.
    async fn audit_once(&self, key: &str, row: AuditRow<'_>) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        if claim_event(&mut tx, key).await? {
            insert_audit(&mut tx, &row).await?;
        }
        tx.commit().await
    }

    /// Every record of a tenant's hash chain in chain order, and the chain head.
    /// The stored hash of `tenant`'s record at chain position `seq` (a booking or a revision).
    pub async fn record_hash_at(
        &self,
        tenant_id: &str,
        seq: i64,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar(
            "select record_hash from bookings where tenant_id = $1 and chain_seq = $2
             union all
             select record_hash from booking_revisions where tenant_id = $1 and chain_seq = $2",
        )
        .bind(tenant_id)
        .bind(seq)
        .fetch_optional(&self.pool)
        .await
    }

    /// Every tenant's chain head: (tenant, last position, last hash).
    pub async fn chain_heads(&self) -> Result<Vec<(String, i64, String)>, sqlx::Error> {
        sqlx::query_as("select tenant_id, last_seq, last_hash from chain_heads order by tenant_id")
            .fetch_all(&self.pool)
            .await
    }

    pub async fn chain(
        &self,
        tenant_id: &str,
    ) -> Result<(Vec<ChainRecord>, Option<(i64, String)>), sqlx::Error> {
        self.chain_from(tenant_id, 1).await
    }

    /// The records of `tenant_id`'s chain from position `from` on, and its head.
    pub async fn chain_from(
        &self,
        tenant_id: &str,
        from: i64,
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
             from bookings where tenant_id = $1 and chain_seq >= $2",
        )
        .bind(tenant_id)
        .bind(from)
        .fetch_all(&mut *tx)
        .await?;
        let revisions: Vec<ChainRevisionRow> = sqlx::query_as(
            "select r.chain_seq, r.id, b.booking_ref, r.currency, r.revision_no, r.total_delta,
                    r.deposit_delta, r.cash_delta, r.fee_delta, r.total_after, r.deposit_after,
                    r.cash_after, r.fee_after, r.prev_hash, r.record_hash,
                    case when r.revision_no = 1 then b.total_amount else p.total_after end
                        as total_before,
                    case when r.revision_no = 1 then b.deposit_amount else p.deposit_after end
                        as deposit_before,
                    case when r.revision_no = 1 then b.cash_amount else p.cash_after end
                        as cash_before,
                    case when r.revision_no = 1 then b.platform_fee else p.fee_after end
                        as fee_before
             from booking_revisions r
             join bookings b on b.id = r.booking_id
             left join booking_revisions p
                 on p.booking_id = r.booking_id and p.revision_no = r.revision_no - 1
             where r.tenant_id = $1 and r.chain_seq >= $2",
        )
        .bind(tenant_id)
        .bind(from)
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
            .chain(revisions.into_iter().map(ChainRevisionRow::into_record))
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
        status: Option<&str>,
        after: Option<(DateTime<Utc>, String)>,
        limit: i64,
    ) -> Result<Vec<BookingRow>, sqlx::Error> {
        let (after_at, after_ref) = after.unzip();
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {BOOKING_COLUMNS} from {BOOKINGS_FROM}
             where b.tenant_id = $1
               and ($2::timestamptz is null or b.session_at >= $2)
               and ($3::timestamptz is null or b.session_at < $3)
               and ($4::text is null or b.status = $4)
               and ($5::timestamptz is null or (b.session_at, b.booking_ref) > ($5, $6))
             order by b.session_at, b.booking_ref
             limit $7"
        )))
        .bind(tenant_id)
        .bind(from)
        .bind(to)
        .bind(status)
        .bind(after_at)
        .bind(after_ref)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Audit log entries matching the filters (each optional), newest first.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, sqlx::Error> {
        sqlx::query_as(
            "select id, occurred_at, source, event_id, tenant_id, outcome, booking_id, reason,
                    http_status, body_sha256
             from audit_log
             where ($1::text is null or tenant_id = $1)
               and ($2::text is null or source = $2)
               and ($3::text is null or outcome = $3)
               and ($4::timestamptz is null or occurred_at >= $4)
               and ($5::timestamptz is null or occurred_at < $5)
               and ($6::bigint is null or id < $6)
             order by id desc
             limit $7",
        )
        .bind(filter.tenant_id.as_deref())
        .bind(filter.source.as_deref())
        .bind(filter.outcome.as_deref())
        .bind(filter.from)
        .bind(filter.to)
        .bind(filter.before_id)
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await
    }

    /// What reconciliation compares of a tenant's bookings: those with sessions in `[from, to)`
    /// and those named in `refs` (wherever their session is now).
    pub async fn reconcile_rows(
        &self,
        tenant_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        refs: &[String],
    ) -> Result<Vec<ReconcileRow>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select b.booking_ref, b.status, b.service_id, b.session_at,
                    coalesce(r.total_after, b.total_amount) as total_amount, b.currency
             from {BOOKINGS_FROM}
             where b.tenant_id = $1
               and ((b.session_at >= $2 and b.session_at < $3) or b.booking_ref = any($4))
             order by b.session_at, b.booking_ref"
        )))
        .bind(tenant_id)
        .bind(from)
        .bind(to)
        .bind(refs)
        .fetch_all(&self.pool)
        .await
    }

    /// Records a reconciliation run's result.
    pub async fn record_reconciliation(
        &self,
        r: &TenantReconciliation,
        missing_in_ledger: usize,
        repaired: usize,
    ) -> Result<(), sqlx::Error> {
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        sqlx::query(
            "insert into reconciliations (tenant_id, period, simplybook_bookings, ledger_bookings,
                 matched, gaps, missing_in_ledger, repaired, error, simplybook_calls)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&r.tenant_id)
        .bind(&r.period)
        .bind(count(r.simplybook_bookings as usize))
        .bind(count(r.ledger_bookings as usize))
        .bind(count(r.matched as usize))
        .bind(count(r.gaps.len()))
        .bind(count(missing_in_ledger))
        .bind(count(repaired))
        .bind((!r.error.is_empty()).then_some(r.error.as_str()))
        .bind(count(r.simplybook_calls as usize))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Per tenant: gaps and bookings missing from the ledger in the latest run of each month,
    /// over runs of the last three days (older findings are stale, not current).
    pub async fn reconciliation_gaps(&self) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
        sqlx::query_as(
            "select tenant_id, sum(gaps)::bigint, sum(missing_in_ledger)::bigint
             from (select distinct on (tenant_id, period) tenant_id, gaps, missing_in_ledger
                   from reconciliations
                   where ran_at > now() - interval '3 days' and error is null
                   order by tenant_id, period, ran_at desc) latest
             group by tenant_id",
        )
        .fetch_all(&self.pool)
        .await
    }

    /// When each tenant's last successful reconciliation ran.
    pub async fn reconciliation_successes(
        &self,
    ) -> Result<Vec<(String, DateTime<Utc>)>, sqlx::Error> {
        sqlx::query_as(
            "select tenant_id, max(ran_at) from reconciliations where error is null
             group by tenant_id",
        )
        .fetch_all(&self.pool)
        .await
    }

    /// Queues an operator alert for the outbox relay; the same alert id is queued once.
    pub async fn enqueue_alert(&self, alert: &AlertV1) -> Result<(), sqlx::Error> {
        sqlx::query(
            "insert into outbox (subject, message_id, payload, traceparent)
             values ($1, $2, $3, $4)
             on conflict (message_id) do nothing",
        )
        .bind(self.subjects.alert(&alert.kind))
        .bind(format!("alert:{}", alert.alert_id))
        .bind(alert.encode_to_vec())
        .bind(billing_runtime::trace::current_traceparent())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One booking, if recorded.
    pub async fn booking(
        &self,
        tenant_id: &str,
        booking_ref: &str,
    ) -> Result<Option<BookingRow>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {BOOKING_COLUMNS} from {BOOKINGS_FROM}
             where b.tenant_id = $1 and b.booking_ref = $2"
        )))
        .bind(tenant_id)
        .bind(booking_ref)
        .fetch_optional(&self.pool)
        .await
    }

    /// A booking's status history, oldest first.
    pub async fn history(&self, booking_id: Uuid) -> Result<Vec<HistoryRow>, sqlx::Error> {
        sqlx::query_as(
            "select status, session_at, service_name, event_id, changed_at
             from booking_status_history where booking_id = $1 order by id",
        )
        .bind(booking_id)
        .fetch_all(&self.pool)
        .await
    }

    /// A booking's price revisions, oldest first.
    pub async fn revisions(&self, booking_id: Uuid) -> Result<Vec<RevisionRow>, sqlx::Error> {
        sqlx::query_as(
            "select revision_no, total_delta, fee_delta, total_after, fee_after, record_hash,
                    source_event_id, recorded_at
             from booking_revisions where booking_id = $1 order by revision_no",
        )
        .bind(booking_id)
        .fetch_all(&self.pool)
        .await
    }

    /// The given bookings of a tenant, as they stand now.
    pub async fn by_ids(
        &self,
        tenant_id: &str,
        ids: &[Uuid],
    ) -> Result<Vec<BookingRow>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {BOOKING_COLUMNS} from {BOOKINGS_FROM}
             where b.tenant_id = $1 and b.id = any($2)
             order by b.session_at, b.booking_ref"
        )))
        .bind(tenant_id)
        .bind(ids)
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

/// One audit-log row written on its own (batches write theirs with one statement).
#[derive(Default)]
struct AuditRow<'a> {
    /// When it happened; the insert time when unknown.
    occurred_at: Option<DateTime<Utc>>,
    source: &'a str,
    event_id: &'a str,
    tenant_id: Option<&'a str>,
    outcome: &'static str,
    reason: &'a str,
    body_sha256: Option<&'a str>,
    http_status: Option<i32>,
    stream_seq: Option<u64>,
}

async fn insert_audit(conn: &mut PgConnection, row: &AuditRow<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into audit_log (occurred_at, source, event_id, tenant_id, outcome, reason,
            body_sha256, http_status, stream_seq)
         values (coalesce($1, now()), $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(row.occurred_at)
    .bind(row.source)
    .bind(row.event_id)
    .bind(row.tenant_id)
    .bind(row.outcome)
    .bind(row.reason)
    .bind(row.body_sha256)
    .bind(row.http_status)
    .bind(row.stream_seq.map(|s| i64::try_from(s).unwrap_or(i64::MAX)))
    .execute(conn)
    .await?;
    Ok(())
}

impl BookingRow {
    pub fn currency(&self) -> Option<Currency> {
        self.currency.trim().parse().ok()
    }
}
