//! The operator alerts a reconciliation raises, built from its result (`now` names the day: a
//! nightly run repeats an alert at most daily).

use billing_domain::{BillingPeriod, TenantConfig};
use billing_proto::convert::timestamp;
use billing_proto::events::AlertV1;
use billing_proto::ledger::TenantReconciliation;
use chrono::{DateTime, Utc};

use super::compare::MISSING_IN_LEDGER;

/// A run could not ask SimplyBook: `not_possible` when SimplyBook refuses the admin API to the
/// company whatever the credentials, otherwise bad credentials or an outage.
pub(super) fn failed(
    tenant: &TenantConfig,
    period: BillingPeriod,
    not_possible: bool,
    error: &str,
    now: DateTime<Utc>,
) -> AlertV1 {
    let (kind, summary, details) = if not_possible {
        (
            "reconciliation_not_possible",
            format!(
                "Reconciliation with SimplyBook is not possible for tenant {}",
                tenant.id
            ),
            format!(
                "{error}. SimplyBook refuses its Company Administration API to this company \
                 (its HIPAA feature), whatever the credentials, so the ledger cannot list \
                 the month's bookings and lost callbacks go unnoticed. Compare the month by \
                 hand in SimplyBook, or remove simplybook_user_login for this tenant to stop \
                 the nightly attempts."
            ),
        )
    } else {
        (
            "reconciliation_failed",
            format!(
                "Reconciliation with SimplyBook failed for tenant {} in {period}",
                tenant.id
            ),
            format!(
                "SimplyBook could not be asked for the month's bookings: {error}. Until it \
                 can, lost webhooks go unnoticed. Check the tenant's SimplyBook admin \
                 credentials (simplybook_user_login, simplybook_user_password), then run \
                 `billingctl reconcile simplybook --tenant {} --period {period}`.",
                tenant.id
            ),
        )
    };
    AlertV1 {
        alert_id: format!("{kind}:{}:{period}:{}", tenant.id, now.date_naive()),
        kind: kind.into(),
        severity: "warning".into(),
        summary,
        details,
        tenant_id: tenant.id.to_string(),
        source: "ledger".into(),
        raised_at: Some(timestamp(now)),
    }
}

/// A run found gaps between SimplyBook and the ledger.
pub(super) fn gaps(
    tenant: &TenantConfig,
    period: BillingPeriod,
    report: &TenantReconciliation,
    now: DateTime<Utc>,
) -> AlertV1 {
    let missing = report
        .gaps
        .iter()
        .filter(|g| g.kind == MISSING_IN_LEDGER)
        .count();
    AlertV1 {
        // One alert per tenant, month and day: a nightly run repeats it at most daily.
        alert_id: format!(
            "reconciliation_gap:{}:{period}:{}",
            tenant.id,
            now.date_naive()
        ),
        kind: "reconciliation_gap".into(),
        severity: if missing > 0 { "critical" } else { "warning" }.into(),
        summary: format!(
            "SimplyBook and the ledger differ for tenant {} in {period}: {} gap(s), {missing} booking(s) missing from the ledger",
            tenant.id,
            report.gaps.len()
        ),
        details: format!(
            "Reconciliation found {} gap(s) between SimplyBook ({} bookings) and the ledger \
             ({} bookings) for {period}. See them with `billingctl reconcile simplybook \
             --tenant {} --period {period}`, and add `--repair` to send the missing and \
             changed bookings through ingest. Invoices for {period} issued before the repair \
             do not include them.",
            report.gaps.len(),
            report.simplybook_bookings,
            report.ledger_bookings,
            tenant.id
        ),
        tenant_id: tenant.id.to_string(),
        source: "ledger".into(),
        raised_at: Some(timestamp(now)),
    }
}
