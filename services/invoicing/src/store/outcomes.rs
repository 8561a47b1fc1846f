//! What each real run of the monthly close did for a tenant and period (`close_outcomes`), and
//! the periods that are closed because of it.

use std::collections::HashSet;

use sqlx::PgConnection;
use uuid::Uuid;

use super::Store;

// Bound as the `text` it is stored as: `query!(…, outcome as CloseOutcome)`.
billing_runtime::text_enum! {
    /// What a close did for one tenant and period, as `close_outcomes.outcome` stores it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum CloseOutcome as "close outcome" {
        Issued = "issued",
        AlreadyIssued = "already_issued",
        NothingBillable = "nothing_billable",
        Failed = "failed",
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
        sqlx::query!(
            "insert into invoicing.close_outcomes (tenant_id, period, outcome, invoice_id, detail)
             values ($1, $2, $3, $4, $5)",
            tenant_id,
            period,
            outcome as CloseOutcome,
            invoice_id,
            detail
        )
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Periods of the tenant that are closed: a live invoice exists, or a close found nothing
    /// to bill.
    pub async fn closed_periods(&self, tenant_id: &str) -> Result<HashSet<String>, sqlx::Error> {
        let periods = sqlx::query_scalar!(
            r#"select period as "period!" from invoicing.invoices
               where tenant_id = $1 and status <> 'void'
               union
               select period from invoicing.close_outcomes where tenant_id = $1 and outcome = $2"#,
            tenant_id,
            CloseOutcome::NothingBillable as CloseOutcome
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(periods.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::CloseOutcome;

    #[test]
    fn every_close_outcome_parses_back_from_its_name() {
        for outcome in CloseOutcome::ALL {
            assert_eq!(outcome.as_str().parse(), Ok(outcome));
        }
        assert!("issued ".parse::<CloseOutcome>().is_err());
    }
}
