//! Invoice gauges for dashboards and alerts, refreshed every minute from the database (so every
//! replica reports the same numbers):
//! - `invoicing_open_invoices{status}`: drafts (a Stripe push to finish), issued, part paid and
//!   overdue invoices;
//! - `invoicing_unpaid_past_due_48h_invoices`: invoices still unpaid more than two days after
//!   their due date in the tenant's zone (the seed's "no payment event 48 h after due" alert);
//! - `invoicing_statement_open_differences{tenant}` and
//!   `invoicing_statement_missing_deposits{tenant}`: from each tenant's latest month statement.

use std::time::Duration;

use billing_runtime::Shutdown;
use sqlx::PgPool;

use crate::store::InvoiceStatus;

const EVERY: Duration = Duration::from_secs(60);

pub async fn report(pool: PgPool, shutdown: Shutdown) {
    loop {
        if let Err(err) = refresh(&pool).await {
            tracing::warn!(error = %err, "refreshing invoice gauges failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^53
async fn refresh(pool: &PgPool) -> Result<(), sqlx::Error> {
    // Not final: drafts, and the open (issued, part paid, overdue).
    let unsettled: Vec<InvoiceStatus> = InvoiceStatus::ALL
        .into_iter()
        .filter(|s| !s.is_final())
        .collect();
    let open: Vec<InvoiceStatus> = InvoiceStatus::ALL
        .into_iter()
        .filter(|s| s.is_open())
        .collect();
    let counts = sqlx::query!(
        r#"select status as "status: InvoiceStatus", count(*) as "count!"
           from invoicing.invoices where status = any($1) group by status"#,
        &unsettled as &[InvoiceStatus]
    )
    .fetch_all(pool)
    .await?;
    for status in unsettled {
        let count = counts
            .iter()
            .find(|row| row.status == status)
            .map_or(0, |row| row.count);
        metrics::gauge!("invoicing_open_invoices", "status" => status.as_str()).set(count as f64);
    }
    let late = sqlx::query_scalar!(
        r#"select count(*) as "late!" from invoicing.invoices
           where status = any($1)
             and due_date + 2 < (now() at time zone time_zone)::date"#,
        &open as &[InvoiceStatus]
    )
    .fetch_one(pool)
    .await?;
    metrics::gauge!("invoicing_unpaid_past_due_48h_invoices").set(late as f64);
    refresh_statements(pool).await
}

/// The statement gauges, from each tenant's latest composed month (composed after the close,
/// the nightly refresh and every `billingctl report month`); also right after a composition.
pub async fn refresh_statements(pool: &PgPool) -> Result<(), sqlx::Error> {
    let statements = sqlx::query!(
        "select distinct on (tenant_id) tenant_id, open_differences, missing_deposits
         from invoicing.month_statements order by tenant_id, period desc"
    )
    .fetch_all(pool)
    .await?;
    for s in statements {
        metrics::gauge!("invoicing_statement_open_differences", "tenant" => s.tenant_id.clone())
            .set(f64::from(s.open_differences));
        metrics::gauge!("invoicing_statement_missing_deposits", "tenant" => s.tenant_id)
            .set(f64::from(s.missing_deposits));
    }
    Ok(())
}
