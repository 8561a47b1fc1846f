//! The month statement's differences: each composition's findings recorded, those gone since
//! marked fixed, a person's explanation kept; and each month's latest counts for the gauges.

use chrono::{DateTime, Utc};

use super::Store;

/// A difference as recorded.
#[derive(Debug, Clone)]
pub struct DifferenceRow {
    pub subject: String,
    pub kind: String,
    pub detail: String,
    pub first_seen: DateTime<Utc>,
    pub fixed_at: Option<DateTime<Utc>>,
    pub explanation: Option<String>,
}

impl DifferenceRow {
    /// open | explained | fixed
    pub fn status(&self) -> &'static str {
        if self.fixed_at.is_some() {
            "fixed"
        } else if self.explanation.is_some() {
            "explained"
        } else {
            "open"
        }
    }
}

/// What a composition found: (subject, kind, detail).
pub type Found = (String, String, String);

impl Store {
    /// Records a composition of a tenant's month: its differences (found again: seen now, open
    /// again if fixed before), those not found any more fixed, and the month's counts. Returns
    /// every difference of the month, current and fixed.
    pub async fn record_statement(
        &self,
        tenant_id: &str,
        period: &str,
        found: &[Found],
        missing_deposits: usize,
    ) -> Result<Vec<DifferenceRow>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let column = |f: fn(&Found) -> &String| -> Vec<String> {
            found.iter().map(|x| f(x).clone()).collect()
        };
        let (subjects, kinds, details) = (column(|f| &f.0), column(|f| &f.1), column(|f| &f.2));
        sqlx::query!(
            "insert into invoicing.statement_differences (tenant_id, period, subject, kind, detail)
             select $1, $2, * from unnest($3::text[], $4::text[], $5::text[])
             on conflict (tenant_id, period, subject, kind) do update
                 set detail = excluded.detail, last_seen = now(), fixed_at = null",
            tenant_id,
            period,
            &subjects,
            &kinds,
            &details
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "update invoicing.statement_differences set fixed_at = now()
             where tenant_id = $1 and period = $2 and fixed_at is null
               and (subject, kind) not in (select * from unnest($3::text[], $4::text[]))",
            tenant_id,
            period,
            &subjects,
            &kinds
        )
        .execute(&mut *tx)
        .await?;
        let rows = sqlx::query_as!(
            DifferenceRow,
            "select subject, kind, detail, first_seen, fixed_at, explanation
             from invoicing.statement_differences where tenant_id = $1 and period = $2
             order by fixed_at nulls first, explanation nulls first, subject, kind",
            tenant_id,
            period
        )
        .fetch_all(&mut *tx)
        .await?;
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        let open = rows.iter().filter(|r| r.status() == "open").count();
        sqlx::query!(
            "insert into invoicing.month_statements (tenant_id, period, open_differences,
                 missing_deposits)
             values ($1, $2, $3, $4)
             on conflict (tenant_id, period) do update
                 set composed_at = now(), open_differences = excluded.open_differences,
                     missing_deposits = excluded.missing_deposits",
            tenant_id,
            period,
            count(open),
            count(missing_deposits)
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Records a person's explanation of a difference; `None` when the month has no such
    /// difference.
    pub async fn explain_difference(
        &self,
        tenant_id: &str,
        period: &str,
        subject: &str,
        kind: &str,
        explanation: &str,
        by: Option<&str>,
    ) -> Result<Option<DifferenceRow>, sqlx::Error> {
        sqlx::query_as!(
            DifferenceRow,
            "update invoicing.statement_differences
                set explanation = $5, explained_at = now(), explained_by = $6
              where tenant_id = $1 and period = $2 and subject = $3 and kind = $4
              returning subject, kind, detail, first_seen, fixed_at, explanation",
            tenant_id,
            period,
            subject,
            kind,
            explanation,
            by
        )
        .fetch_optional(&self.pool)
        .await
    }
}
