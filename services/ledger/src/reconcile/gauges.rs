//! The reconciliation gauges every replica reports from the latest results in the database.

use std::time::Duration;

use crate::store::Store;

/// How often every replica reads the latest reconciliation results into its gauges.
const GAUGES_EVERY: Duration = Duration::from_secs(60);

/// Keeps, for every tenant reconciliation covers, the same numbers on every replica:
/// `ledger_reconciliation_gaps{tenant}` and `ledger_reconciliation_missing_bookings{tenant}`
/// (the latest run of each month in the last three days; 0 without one), and
/// `ledger_reconciliation_last_success_timestamp_seconds{tenant}` once a run succeeded.
/// The tenants are asked of `covered` at each refresh, so an onboarded tenant is reported
/// without a restart.
pub async fn report_gauges(
    store: Store,
    covered: impl Fn() -> Vec<String>,
    shutdown: billing_runtime::Shutdown,
) {
    loop {
        if let Err(err) = refresh_gauges(&store, &covered()).await {
            tracing::warn!(error = %err, "refreshing reconciliation gauges failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(GAUGES_EVERY) => {}
        }
    }
}

#[allow(clippy::cast_precision_loss)] // counts and epoch seconds far below 2^53
pub(super) async fn refresh_gauges(store: &Store, tenants: &[String]) -> Result<(), sqlx::Error> {
    let latest = store.reconciliation_gaps().await?;
    let mut all: Vec<&str> = tenants.iter().map(String::as_str).collect();
    all.extend(latest.iter().map(|(t, _, _)| t.as_str()));
    all.sort_unstable();
    all.dedup();
    for tenant in all {
        let (gaps, missing) = latest
            .iter()
            .find(|(t, _, _)| t == tenant)
            .map_or((0, 0), |(_, g, m)| (*g, *m));
        metrics::gauge!("ledger_reconciliation_gaps", "tenant" => tenant.to_string())
            .set(gaps as f64);
        metrics::gauge!("ledger_reconciliation_missing_bookings", "tenant" => tenant.to_string())
            .set(missing as f64);
    }
    for (tenant, at) in store.reconciliation_successes().await? {
        metrics::gauge!(
            "ledger_reconciliation_last_success_timestamp_seconds",
            "tenant" => tenant
        )
        .set(at.timestamp() as f64);
    }
    Ok(())
}
