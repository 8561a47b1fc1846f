//! Reconciliation with SimplyBook: the bookings a run compares, and each run's result with the
//! numbers the gauges report.

use billing_proto::ledger::{ReconciliationGap, TenantReconciliation};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::bookings::query_bookings;
use super::handle::Store;

/// A booking as reconciliation compares it with SimplyBook's.
#[derive(Debug, Clone)]
pub struct ReconcileRow {
    pub booking_ref: String,
    pub status: String,
    pub service_id: Option<String>,
    pub session_at: DateTime<Utc>,
    pub total_amount: Decimal,
    pub currency: String,
}

impl Store {
    /// What reconciliation compares of a tenant's bookings: those with sessions in `[from, to)`
    /// and those named in `refs` (wherever their session is now).
    pub async fn reconcile_rows(
        &self,
        tenant_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        refs: &[String],
    ) -> Result<Vec<ReconcileRow>, sqlx::Error> {
        query_bookings!(
            ReconcileRow,
            r#"b.booking_ref, b.status, b.service_id, b.session_at,
               coalesce(r.total_after, b.total_amount) as "total_amount!", b.currency"#,
            "where b.tenant_id = $1
               and ((b.session_at >= $2 and b.session_at < $3) or b.booking_ref = any($4))
             order by b.session_at, b.booking_ref",
            tenant_id,
            from,
            to,
            refs
        )
        .fetch_all(&self.pool)
        .await
    }

    /// Records a reconciliation run's result, with its gaps booking by booking.
    pub async fn record_reconciliation(
        &self,
        r: &TenantReconciliation,
        missing_in_ledger: usize,
        repaired: usize,
    ) -> Result<(), sqlx::Error> {
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        let mut tx = self.pool.begin().await?;
        let id = sqlx::query_scalar!(
            "insert into ledger.reconciliations (tenant_id, period, simplybook_bookings,
                 ledger_bookings, matched, gaps, missing_in_ledger, repaired, error,
                 simplybook_calls)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             returning id",
            r.tenant_id,
            r.period,
            count(r.simplybook_bookings as usize),
            count(r.ledger_bookings as usize),
            count(r.matched as usize),
            count(r.gaps.len()),
            count(missing_in_ledger),
            count(repaired),
            (!r.error.is_empty()).then_some(r.error.as_str()),
            count(r.simplybook_calls as usize)
        )
        .fetch_one(&mut *tx)
        .await?;
        let field = |f: fn(&ReconciliationGap) -> &String| -> Vec<String> {
            r.gaps.iter().map(|g| f(g).clone()).collect()
        };
        sqlx::query!(
            "insert into ledger.reconciliation_gaps (reconciliation_id, booking_ref, kind,
                 simplybook, ledger)
             select $1, * from unnest($2::text[], $3::text[], $4::text[], $5::text[])",
            id,
            &field(|g| &g.booking_ref),
            &field(|g| &g.kind),
            &field(|g| &g.simplybook),
            &field(|g| &g.ledger)
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Per tenant: gaps and bookings missing from the ledger in the latest run of each month,
    /// over runs of the last three days (older findings are stale, not current).
    pub async fn reconciliation_gaps(&self) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
        let rows = sqlx::query!(
            r#"select tenant_id, sum(gaps)::bigint as "gaps!",
                      sum(missing_in_ledger)::bigint as "missing_in_ledger!"
               from (select distinct on (tenant_id, period) tenant_id, gaps, missing_in_ledger
                     from ledger.reconciliations
                     where ran_at > now() - interval '3 days' and error is null
                     order by tenant_id, period, ran_at desc) latest
               group by tenant_id"#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.tenant_id, row.gaps, row.missing_in_ledger))
            .collect())
    }

    /// When each tenant's last successful reconciliation ran.
    pub async fn reconciliation_successes(
        &self,
    ) -> Result<Vec<(String, DateTime<Utc>)>, sqlx::Error> {
        let rows = sqlx::query!(
            r#"select tenant_id, max(ran_at) as "ran_at!" from ledger.reconciliations
               where error is null group by tenant_id"#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.tenant_id, row.ran_at))
            .collect())
    }
}
