//! Reconciliation with SimplyBook: does the ledger hold every booking SimplyBook has for a
//! tenant's month, in the same state and at the same price?
//!
//! SimplyBook's list for the month (its local dates) is compared with the ledger's bookings with
//! sessions in the month, each listed booking's details fetched the way callbacks are confirmed.
//! A gap is repaired by sending SimplyBook's own callback for the booking through ingest, so the
//! repair takes the normal path (authentication, deduplication, confirmation with SimplyBook,
//! audit) and never writes the ledger directly. A run that finds gaps can raise an operator
//! alert; `ledger_reconciliation_gaps{tenant}` keeps the last count for Prometheus.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use billing_domain::callback::{Callback, NotificationType};
use billing_domain::simplybook::ListedBooking;
use billing_domain::{BillingPeriod, TenantConfig, Tenants};
use billing_proto::convert::timestamp;
use billing_proto::events::AlertV1;
use billing_proto::ledger::{ReconciliationGap, TenantReconciliation};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use rust_decimal::Decimal;
use tokio::sync::Notify;

use crate::simplybook::{FetchError, SimplyBook};
use crate::store::{ReconcileRow, Store};

/// SimplyBook detail requests in flight at once for one tenant.
const FETCH_CONCURRENCY: usize = 4;

/// The gap kinds, as reported and as the `kind` of a gap.
pub const MISSING_IN_LEDGER: &str = "missing_in_ledger";
pub const MISSING_IN_SIMPLYBOOK: &str = "missing_in_simplybook";
pub const STATUS_MISMATCH: &str = "status_mismatch";
pub const AMOUNT_MISMATCH: &str = "amount_mismatch";
pub const SESSION_MISMATCH: &str = "session_mismatch";
pub const UNREADABLE_IN_SIMPLYBOOK: &str = "unreadable_in_simplybook";
/// A gap's `repair` when ingest accepted its callback.
const REPAIR_SENT: &str = "sent";

/// A booking as SimplyBook has it now.
#[derive(Debug, Clone)]
struct Remote {
    id: String,
    hash: String,
    status: String,
    session_at: DateTime<Utc>,
    price: Decimal,
    currency: Option<String>,
}

impl Remote {
    /// Whether the ledger records this booking at all: it refuses prices of zero or less and
    /// other currencies than the tenant's (dead-lettered), so reconciliation must not call
    /// such a booking missing.
    fn billable_by(&self, tenant: &TenantConfig) -> bool {
        self.price > Decimal::ZERO
            && self
                .currency
                .as_deref()
                .is_none_or(|c| c.eq_ignore_ascii_case(tenant.currency.code()))
    }
}

/// Why a booking's details could not be had.
enum FetchFailure {
    /// SimplyBook answered that it does not have it (or not with this hash).
    Refused(String),
    /// SimplyBook could not be asked, or answered something unreadable.
    Unreadable(String),
}

impl FetchFailure {
    fn message(self) -> String {
        match self {
            FetchFailure::Refused(m) | FetchFailure::Unreadable(m) => m,
        }
    }
}

/// Posts SimplyBook callbacks to ingest, as SimplyBook would.
pub struct IngestCallbacks {
    http: reqwest::Client,
    base_url: String,
}

impl IngestCallbacks {
    pub fn new(base_url: &str) -> Result<Self, reqwest::Error> {
        Ok(IngestCallbacks {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            base_url: base_url.trim_end_matches('/').to_string(),
        })
    }

    /// `sent`, or why the callback was not accepted.
    async fn send(&self, tenant: &TenantConfig, remote: &Remote, kind: NotificationType) -> String {
        let (Some(company), Some(token)) = (
            tenant.simplybook_company.as_deref(),
            tenant.callback_tokens.first(),
        ) else {
            return "not repaired: the tenant has no callback token".into();
        };
        let url = format!(
            "{}/api/v1/webhooks/simplybook/{}/callback/{}",
            self.base_url,
            tenant.id,
            token.expose()
        );
        let body = serde_json::json!({
            "booking_id": remote.id,
            "booking_hash": remote.hash,
            "company": company,
            "notification_type": kind.as_str(),
        });
        let request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string());
        match request.send().await {
            Ok(response) if response.status().is_success() => REPAIR_SENT.into(),
            Ok(response) => format!("not repaired: ingest answered {}", response.status()),
            // The error may name the URL, which holds the token: say only what kind it was.
            Err(err) if err.is_timeout() => "not repaired: ingest timed out".into(),
            Err(_) => "not repaired: ingest could not be reached".into(),
        }
    }
}

pub struct Reconciler {
    store: Store,
    tenants: Arc<Tenants>,
    simplybook: Arc<SimplyBook>,
    ingest: Option<IngestCallbacks>,
    relay: Arc<Notify>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("unknown tenant {0:?}")]
    UnknownTenant(String),
    #[error("repair needs LEDGER_INGEST_URL (where to send the callbacks)")]
    NoIngest,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl Reconciler {
    pub fn new(
        store: Store,
        tenants: Arc<Tenants>,
        simplybook: Arc<SimplyBook>,
        ingest: Option<IngestCallbacks>,
        relay: Arc<Notify>,
    ) -> Self {
        Reconciler {
            store,
            tenants,
            simplybook,
            ingest,
            relay,
        }
    }

    /// Every tenant SimplyBook can list bookings for.
    pub fn covered(&self) -> Vec<String> {
        self.tenants
            .iter()
            .filter(|t| t.simplybook_user_login.is_some())
            .map(|t| t.id.to_string())
            .collect()
    }

    /// The tenants a run covers: `tenant_id`, or every tenant SimplyBook can list for.
    pub fn tenants(&self, tenant_id: &str) -> Result<Vec<TenantConfig>, ReconcileError> {
        if tenant_id.is_empty() {
            return Ok(self
                .tenants
                .iter()
                .filter(|t| t.simplybook_user_login.is_some())
                .cloned()
                .collect());
        }
        self.tenants
            .get(tenant_id)
            .cloned()
            .map(|t| vec![t])
            .ok_or_else(|| ReconcileError::UnknownTenant(tenant_id.to_string()))
    }

    /// Reconciles one tenant's `period`; with `repair`, sends a callback for each gap SimplyBook
    /// can fill; with `alert`, raises an operator alert when gaps remain.
    pub async fn run(
        &self,
        tenant: &TenantConfig,
        period: BillingPeriod,
        repair: bool,
        alert: bool,
    ) -> Result<TenantReconciliation, ReconcileError> {
        let ingest = match (repair, &self.ingest) {
            (true, None) => return Err(ReconcileError::NoIngest),
            (true, Some(ingest)) => Some(ingest),
            (false, _) => None,
        };
        let mut report = TenantReconciliation {
            tenant_id: tenant.id.to_string(),
            period: period.to_string(),
            ..Default::default()
        };
        let listed = match self
            .simplybook
            .list_bookings(tenant, period.first_day(), period.last_day())
            .await
        {
            Ok(listed) => listed,
            Err(err) => {
                metrics::counter!("ledger_reconciliations_total", "result" => "failed")
                    .increment(1);
                report.error = err.to_string();
                self.store.record_reconciliation(&report, 0, 0).await?;
                if alert {
                    self.alert_failed(tenant, period, &report.error).await?;
                }
                return Ok(report);
            }
        };
        report.simplybook_bookings = listed.len() as u32;
        let (remote, mut gaps) = self.details(tenant, &listed).await;
        let (start, end) = period.bounds(tenant.time_zone);
        let refs: Vec<String> = listed.iter().map(|b| b.id.clone()).collect();
        let rows = self
            .store
            .reconcile_rows(tenant.id.as_str(), start, end, &refs)
            .await?;
        report.ledger_bookings = rows
            .iter()
            .filter(|r| r.session_at >= start && r.session_at < end)
            .count() as u32;
        let ledger: HashMap<&str, &ReconcileRow> =
            rows.iter().map(|r| (r.booking_ref.as_str(), r)).collect();

        // What SimplyBook has, against the ledger.
        let mut to_repair: Vec<(usize, Remote, NotificationType)> = Vec::new();
        for r in remote.values() {
            if !r.billable_by(tenant) {
                report.not_billable += 1;
                continue;
            }
            let found = match ledger.get(r.id.as_str()) {
                None => {
                    gaps.push(gap(r, MISSING_IN_LEDGER, describe(r), String::new()));
                    to_repair.push((gaps.len() - 1, r.clone(), NotificationType::Create));
                    continue;
                }
                Some(row) => differences(r, row),
            };
            if found.is_empty() {
                report.matched += 1;
            }
            for (kind, simplybook, ledger) in found {
                gaps.push(gap(r, kind, simplybook, ledger));
                to_repair.push((gaps.len() - 1, r.clone(), NotificationType::Change));
            }
        }
        // What the ledger has for the month and SimplyBook did not list for it.
        let listed_ids: HashSet<&str> = listed.iter().map(|l| l.id.as_str()).collect();
        for row in rows
            .iter()
            .filter(|row| row.session_at >= start && row.session_at < end)
            .filter(|row| !listed_ids.contains(row.booking_ref.as_str()))
        {
            let fetched = match row.booking_hash.as_deref() {
                Some(hash) => self.fetch(tenant, &row.booking_ref, hash).await,
                None => Err(FetchFailure::Refused(
                    "the ledger has no booking hash".into(),
                )),
            };
            match fetched {
                // Moved to another month: SimplyBook listed it there.
                Ok(r) if r.session_at < start || r.session_at >= end => {
                    gaps.push(gap(
                        &r,
                        SESSION_MISMATCH,
                        r.session_at.to_rfc3339(),
                        row.session_at.to_rfc3339(),
                    ));
                    to_repair.push((gaps.len() - 1, r, NotificationType::Change));
                }
                // Still in the month though the list left it out: compare it all the same.
                Ok(r) => {
                    report.simplybook_bookings += 1;
                    let found = differences(&r, row);
                    if found.is_empty() {
                        report.matched += 1;
                    }
                    for (kind, simplybook, ledger) in found {
                        gaps.push(gap(&r, kind, simplybook, ledger));
                        to_repair.push((gaps.len() - 1, r.clone(), NotificationType::Change));
                    }
                }
                Err(FetchFailure::Refused(_)) => gaps.push(ReconciliationGap {
                    booking_ref: row.booking_ref.clone(),
                    kind: MISSING_IN_SIMPLYBOOK.into(),
                    ledger: format!(
                        "{} {} {}",
                        row.status,
                        row.session_at.to_rfc3339(),
                        row.total_amount
                    ),
                    ..Default::default()
                }),
                Err(FetchFailure::Unreadable(message)) => gaps.push(ReconciliationGap {
                    booking_ref: row.booking_ref.clone(),
                    kind: UNREADABLE_IN_SIMPLYBOOK.into(),
                    simplybook: message,
                    ..Default::default()
                }),
            }
        }

        if let Some(ingest) = ingest {
            // One callback per booking, however many of its fields differ.
            let mut sent: HashMap<String, String> = HashMap::new();
            for (index, r, kind) in to_repair {
                let outcome = match sent.get(&r.id) {
                    Some(outcome) => outcome.clone(),
                    None => {
                        let outcome = ingest.send(tenant, &r, kind).await;
                        sent.insert(r.id.clone(), outcome.clone());
                        outcome
                    }
                };
                gaps[index].repair = outcome;
            }
            for g in gaps.iter_mut().filter(|g| g.kind == MISSING_IN_SIMPLYBOOK) {
                g.repair =
                    "not repaired: SimplyBook does not have it; check the booking by hand".into();
            }
        }
        gaps.sort_by(|a, b| (&a.booking_ref, &a.kind).cmp(&(&b.booking_ref, &b.kind)));
        report.gaps = gaps;

        let result = if report.gaps.is_empty() {
            "clean"
        } else {
            "gaps"
        };
        metrics::counter!("ledger_reconciliations_total", "result" => result).increment(1);
        let missing = report
            .gaps
            .iter()
            .filter(|g| g.kind == MISSING_IN_LEDGER)
            .count();
        let repaired = report
            .gaps
            .iter()
            .filter(|g| g.repair == REPAIR_SENT)
            .count();
        self.store
            .record_reconciliation(&report, missing, repaired)
            .await?;
        refresh_gauges(&self.store, &[]).await?;
        if alert && !report.gaps.is_empty() {
            self.alert(tenant, period, &report).await?;
        }
        Ok(report)
    }

    /// Each listed booking's details, by id; those SimplyBook would not give are gaps.
    async fn details(
        &self,
        tenant: &TenantConfig,
        listed: &[ListedBooking],
    ) -> (BTreeMap<String, Remote>, Vec<ReconciliationGap>) {
        let fetches = listed.iter().cloned().map(|l| async move {
            let result = self.fetch(tenant, &l.id, &l.hash).await;
            (l, result)
        });
        let fetched: Vec<(ListedBooking, Result<Remote, FetchFailure>)> =
            futures::stream::iter(fetches)
                .buffer_unordered(FETCH_CONCURRENCY)
                .collect()
                .await;
        let mut remote = BTreeMap::new();
        let mut gaps = Vec::new();
        for (l, result) in fetched {
            match result {
                Ok(r) => {
                    remote.insert(r.id.clone(), r);
                }
                Err(err) => gaps.push(ReconciliationGap {
                    booking_ref: l.id.clone(),
                    kind: UNREADABLE_IN_SIMPLYBOOK.into(),
                    simplybook: err.message(),
                    ..Default::default()
                }),
            }
        }
        (remote, gaps)
    }

    async fn fetch(
        &self,
        tenant: &TenantConfig,
        id: &str,
        hash: &str,
    ) -> Result<Remote, FetchFailure> {
        let callback = Callback {
            booking_id: id.to_string(),
            booking_hash: hash.to_string(),
            company: tenant.simplybook_company.clone().unwrap_or_default(),
            notification_type: NotificationType::Notify,
        };
        let payload = self
            .simplybook
            .booking_details(tenant, &callback)
            .await
            .map_err(|e| match e {
                FetchError::Refused(m) => FetchFailure::Refused(m),
                FetchError::Unavailable(_) => FetchFailure::Unreadable(e.to_string()),
            })?;
        let session_at = payload
            .session_at(tenant.time_zone)
            .map_err(|e| FetchFailure::Unreadable(e.to_string()))?;
        Ok(Remote {
            id: id.to_string(),
            hash: hash.to_string(),
            status: payload.status.as_str().to_string(),
            session_at,
            price: payload.price,
            currency: payload.currency,
        })
    }

    /// Tells the operator a run could not ask SimplyBook (bad credentials, an outage).
    async fn alert_failed(
        &self,
        tenant: &TenantConfig,
        period: BillingPeriod,
        error: &str,
    ) -> Result<(), ReconcileError> {
        let now = Utc::now();
        let alert = AlertV1 {
            alert_id: format!(
                "reconciliation_failed:{}:{period}:{}",
                tenant.id,
                now.date_naive()
            ),
            kind: "reconciliation_failed".into(),
            severity: "warning".into(),
            summary: format!(
                "Reconciliation with SimplyBook failed for tenant {} in {period}",
                tenant.id
            ),
            details: format!(
                "SimplyBook could not be asked for the month's bookings: {error}. Until it can, \
                 lost webhooks go unnoticed. Check the tenant's SimplyBook admin credentials \
                 (simplybook_user_login, simplybook_user_password), then run `billingctl \
                 reconcile simplybook --tenant {} --period {period}`.",
                tenant.id
            ),
            tenant_id: tenant.id.to_string(),
            source: "ledger".into(),
            raised_at: Some(timestamp(now)),
        };
        self.store.enqueue_alert(&alert).await?;
        self.relay.notify_one();
        Ok(())
    }

    async fn alert(
        &self,
        tenant: &TenantConfig,
        period: BillingPeriod,
        report: &TenantReconciliation,
    ) -> Result<(), ReconcileError> {
        let now = Utc::now();
        let missing = report
            .gaps
            .iter()
            .filter(|g| g.kind == MISSING_IN_LEDGER)
            .count();
        let alert = AlertV1 {
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
        };
        self.store.enqueue_alert(&alert).await?;
        self.relay.notify_one();
        Ok(())
    }
}

/// How often every replica reads the latest reconciliation results into its gauges.
const GAUGES_EVERY: Duration = Duration::from_secs(60);

/// Keeps, for every tenant reconciliation covers, the same numbers on every replica:
/// `ledger_reconciliation_gaps{tenant}` and `ledger_reconciliation_missing_bookings{tenant}`
/// (the latest run of each month in the last three days; 0 without one), and
/// `ledger_reconciliation_last_success_timestamp_seconds{tenant}` once a run succeeded.
pub async fn report_gauges(
    store: Store,
    tenants: Vec<String>,
    shutdown: billing_runtime::Shutdown,
) {
    loop {
        if let Err(err) = refresh_gauges(&store, &tenants).await {
            tracing::warn!(error = %err, "refreshing reconciliation gauges failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(GAUGES_EVERY) => {}
        }
    }
}

#[allow(clippy::cast_precision_loss)] // counts and epoch seconds far below 2^53
async fn refresh_gauges(store: &Store, tenants: &[String]) -> Result<(), sqlx::Error> {
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

fn describe(r: &Remote) -> String {
    format!("{} {} {}", r.status, r.session_at.to_rfc3339(), r.price)
}

fn gap(r: &Remote, kind: &str, simplybook: String, ledger: String) -> ReconciliationGap {
    ReconciliationGap {
        booking_ref: r.id.clone(),
        kind: kind.into(),
        simplybook,
        ledger,
        repair: String::new(),
    }
}

/// How the ledger's booking differs from SimplyBook's: (kind, SimplyBook's value, ledger's).
fn differences(r: &Remote, row: &ReconcileRow) -> Vec<(&'static str, String, String)> {
    let mut found = Vec::new();
    if r.status != row.status {
        found.push((STATUS_MISMATCH, r.status.clone(), row.status.clone()));
    }
    // Numerically: SimplyBook's "150" and the ledger's 150.00 are the same price.
    if r.price.normalize() != row.total_amount.normalize() {
        found.push((
            AMOUNT_MISMATCH,
            r.price.to_string(),
            format!("{} {}", row.total_amount, row.currency),
        ));
    }
    if r.session_at != row.session_at {
        found.push((
            SESSION_MISMATCH,
            r.session_at.to_rfc3339(),
            row.session_at.to_rfc3339(),
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(status: &str, price: &str, at: &str) -> Remote {
        Remote {
            id: "1".into(),
            hash: "h".into(),
            status: status.into(),
            session_at: at.parse().expect("time"),
            price: price.parse().expect("price"),
            currency: None,
        }
    }

    fn row(status: &str, total: &str, at: &str) -> ReconcileRow {
        ReconcileRow {
            booking_ref: "1".into(),
            booking_hash: Some("h".into()),
            status: status.into(),
            session_at: at.parse().expect("time"),
            total_amount: total.parse().expect("total"),
            currency: "AUD".into(),
        }
    }

    #[test]
    fn equal_bookings_differ_in_nothing_whatever_the_price_scale() {
        let at = "2026-10-14T00:00:00Z";
        assert!(
            differences(
                &remote("confirmed", "150", at),
                &row("confirmed", "150.00", at)
            )
            .is_empty()
        );
    }

    #[test]
    fn each_differing_field_is_its_own_gap() {
        let found = differences(
            &remote("cancelled", "160.00", "2026-10-15T00:00:00Z"),
            &row("confirmed", "150.00", "2026-10-14T00:00:00Z"),
        );
        let kinds: Vec<_> = found.iter().map(|(k, _, _)| *k).collect();
        assert_eq!(kinds, [STATUS_MISMATCH, AMOUNT_MISMATCH, SESSION_MISMATCH]);
        assert_eq!(found[1].1, "160.00");
        assert_eq!(found[1].2, "150.00 AUD");
    }
}
