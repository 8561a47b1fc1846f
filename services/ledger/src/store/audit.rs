//! The audit log: what happened to every event the ledger received (written per batch by
//! [`crate::batch`], and here one row at a time for dead letters, replays and refused requests),
//! and the listing behind the gRPC API.

use billing_proto::events::WebhookRejectedV1;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use super::handle::Store;
use crate::outcome::AuditOutcome;

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

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub source: String,
    pub event_id: String,
    pub tenant_id: Option<String>,
    pub outcome: AuditOutcome,
    pub booking_id: Option<Uuid>,
    pub reason: Option<String>,
    pub http_status: Option<i32>,
    pub body_sha256: Option<String>,
    /// Who asked for it through the API (`billing_runtime::operator`): the named person and
    /// the token's role; `None` for what the ledger recorded on its own.
    pub operator: Option<String>,
    pub caller_role: Option<String>,
}

impl Store {
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
            outcome: AuditOutcome::DeadLettered,
            reason,
            body_sha256: None,
            http_status: None,
            stream_seq: Some(stream_seq),
            occurred_at: None,
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
            outcome: AuditOutcome::Replayed,
            reason: &reason,
            body_sha256: None,
            http_status: None,
            stream_seq: None,
            occurred_at: None,
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
            outcome: AuditOutcome::Rejected,
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

    /// Audit log entries matching the filters (each optional), newest first.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, sqlx::Error> {
        sqlx::query_as!(
            AuditEntry,
            r#"select id, occurred_at, source, event_id, tenant_id,
                      outcome as "outcome: AuditOutcome", booking_id, reason, http_status,
                      body_sha256, operator, caller_role
               from ledger.audit_log
               where ($1::text is null or tenant_id = $1)
                 and ($2::text is null or source = $2)
                 and ($3::text is null or outcome = $3)
                 and ($4::timestamptz is null or occurred_at >= $4)
                 and ($5::timestamptz is null or occurred_at < $5)
                 and ($6::bigint is null or id < $6)
               order by id desc
               limit $7"#,
            filter.tenant_id.as_deref(),
            filter.source.as_deref(),
            filter.outcome.as_deref(),
            filter.from,
            filter.to,
            filter.before_id,
            filter.limit
        )
        .fetch_all(&self.pool)
        .await
    }
}

/// Claims an event id; `false` when it was already processed.
async fn claim_event(
    tx: &mut Transaction<'_, Postgres>,
    event_id: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query!(
        "insert into ledger.processed_events (event_id) values ($1) on conflict do nothing",
        event_id
    )
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// One audit-log row written on its own (batches write theirs with one statement).
struct AuditRow<'a> {
    /// When it happened; the insert time when unknown.
    occurred_at: Option<DateTime<Utc>>,
    source: &'a str,
    event_id: &'a str,
    tenant_id: Option<&'a str>,
    outcome: AuditOutcome,
    reason: &'a str,
    body_sha256: Option<&'a str>,
    http_status: Option<i32>,
    stream_seq: Option<u64>,
}

/// Inserts `row`, naming who asked for it when a gRPC call did
/// ([`billing_runtime::operator::current`]; a consumer has no caller).
async fn insert_audit(conn: &mut PgConnection, row: &AuditRow<'_>) -> Result<(), sqlx::Error> {
    let acting = billing_runtime::operator::current();
    sqlx::query!(
        "insert into ledger.audit_log (occurred_at, source, event_id, tenant_id, outcome, reason,
            body_sha256, http_status, stream_seq, operator, caller_role)
         values (coalesce($1, now()), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        row.occurred_at,
        row.source,
        row.event_id,
        row.tenant_id,
        row.outcome as AuditOutcome,
        row.reason,
        row.body_sha256,
        row.http_status,
        row.stream_seq.map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
        acting.as_ref().and_then(|a| a.operator_name()),
        acting.as_ref().map(|a| a.role_name())
    )
    .execute(conn)
    .await?;
    Ok(())
}
