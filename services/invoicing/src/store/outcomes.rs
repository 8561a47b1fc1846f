//! What each real run of the monthly close did for a tenant and period (`close_outcomes`), and
//! the periods that are closed because of it.

use std::collections::HashSet;

use sqlx::PgConnection;
use uuid::Uuid;

use super::Store;
use super::invoices::live;

/// What a close did for one tenant and period, as `close_outcomes.outcome` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    Issued,
    AlreadyIssued,
    NothingBillable,
    Failed,
}

impl CloseOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseOutcome::Issued => "issued",
            CloseOutcome::AlreadyIssued => "already_issued",
            CloseOutcome::NothingBillable => "nothing_billable",
            CloseOutcome::Failed => "failed",
        }
    }
}

impl Store {
    pub async fn record_outcome(
        &self,
        conn: &mut PgConnection,
        tenant_id: &str,
        period: &str,
        outcome: CloseOutcome,
        invoice_id: Option<Uuid>,
        detail: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "insert into close_outcomes (tenant_id, period, outcome, invoice_id, detail)
             values ($1, $2, $3, $4, $5)",
        )
        .bind(tenant_id)
        .bind(period)
        .bind(outcome.as_str())
        .bind(invoice_id)
        .bind(detail)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Periods of the tenant that are closed: a live invoice exists, or a close found nothing
    /// to bill.
    pub async fn closed_periods(&self, tenant_id: &str) -> Result<HashSet<String>, sqlx::Error> {
        let live = live("status");
        let periods: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select period from invoices where tenant_id = $1 and {live}
             union
             select period from close_outcomes where tenant_id = $1 and outcome = $2"
        )))
        .bind(tenant_id)
        .bind(CloseOutcome::NothingBillable.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(periods.into_iter().collect())
    }
}
