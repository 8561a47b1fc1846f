//! A reconciliation run: list the month, compare each listed row with the ledger, fetch only
//! what is missing or differs, report the gaps, repair and alert when asked.

use billing_runtime::error::{ErrorCode, ServiceError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use billing_domain::simplybook::{ListedBooking, StatusLabel};
use billing_domain::{BillingPeriod, BookingStatus, TenantConfig};
use billing_proto::events::AlertV1;
use billing_proto::ledger::{ReconciliationGap, TenantReconciliation};
use billing_runtime::tenants::LiveTenants;
use chrono::Utc;
use futures::StreamExt;
use tokio::sync::Notify;

use super::alerts;
use super::compare::{
    FetchFailure, MISSING_IN_LEDGER, MISSING_IN_SIMPLYBOOK, Remote, TIME_ZONE_MISMATCH,
    UNLISTED_IN_SIMPLYBOOK, UNREADABLE_IN_SIMPLYBOOK, describe, differences, failure, gap,
    local_to_utc,
};
use super::gauges::refresh_gauges;
use super::repairs::{REPAIR_SENT, Repairs};
use crate::simplybook::{Api, FetchError, Session, SimplyBook};
use crate::store::{ReconcileRow, Store};

/// SimplyBook detail requests in flight at once for one tenant.
const FETCH_CONCURRENCY: usize = 4;

/// A run's outcomes.
const CLEAN: &str = "clean";
const GAPS: &str = "gaps";
const FAILED: &str = "failed";
const NOT_POSSIBLE: &str = "not_possible";

#[derive(Clone)]
pub struct Reconciler {
    store: Store,
    tenants: LiveTenants,
    simplybook: Arc<SimplyBook>,
    repairs: Repairs,
    relay: Arc<Notify>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("unknown tenant {0:?}")]
    UnknownTenant(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl ServiceError for ReconcileError {
    fn error_code(&self) -> ErrorCode {
        match self {
            ReconcileError::UnknownTenant(_) => ErrorCode::NotFound,
            ReconcileError::Db(err) => err.error_code(),
        }
    }

    fn public_message(&self) -> String {
        match self {
            ReconcileError::Db(err) => err.public_message(),
            other => other.to_string(),
        }
    }
}

impl Reconciler {
    pub fn new(
        store: Store,
        tenants: LiveTenants,
        simplybook: Arc<SimplyBook>,
        repairs: Repairs,
        relay: Arc<Notify>,
    ) -> Self {
        Reconciler {
            store,
            tenants,
            simplybook,
            repairs,
            relay,
        }
    }

    /// Every tenant SimplyBook can list bookings for.
    pub fn covered(&self) -> Vec<String> {
        self.tenants
            .current()
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
                .current()
                .iter()
                .filter(|t| t.simplybook_user_login.is_some())
                .cloned()
                .collect());
        }
        self.tenants
            .current()
            .get(tenant_id)
            .cloned()
            .map(|t| vec![t])
            .ok_or_else(|| ReconcileError::UnknownTenant(tenant_id.to_string()))
    }

    /// The SimplyBook client, for the go-live check.
    pub fn simplybook(&self) -> &SimplyBook {
        &self.simplybook
    }

    /// Reconciles one tenant's `period`; with `repair`, sends each gap SimplyBook can fill
    /// through the webhook stream; with `alert`, raises an operator alert when gaps remain.
    pub async fn run(
        &self,
        tenant: &TenantConfig,
        period: BillingPeriod,
        repair: bool,
        alert: bool,
    ) -> Result<TenantReconciliation, ReconcileError> {
        let session = self.simplybook.session(tenant);
        let mut report = TenantReconciliation {
            tenant_id: tenant.id.to_string(),
            period: period.to_string(),
            ..Default::default()
        };
        let listed = match session
            .list_bookings(period.first_day(), period.last_day())
            .await
        {
            Ok(listed) => listed,
            Err(err) => {
                let outcome = match err {
                    FetchError::NotPossible(_) => NOT_POSSIBLE,
                    _ => FAILED,
                };
                metrics::counter!("ledger_reconciliations_total", "result" => outcome).increment(1);
                report.outcome = outcome.into();
                report.error = match outcome {
                    NOT_POSSIBLE => format!("reconciliation not possible: {err}"),
                    _ => err.to_string(),
                };
                report.simplybook_calls = session.calls();
                self.store.record_reconciliation(&report, 0, 0).await?;
                if alert {
                    self.alert_failed(tenant, period, outcome, &report.error)
                        .await?;
                }
                return Ok(report);
            }
        };
        report.simplybook_bookings = listed.len() as u32;
        let mut gaps = Vec::new();
        match session.company_time_zone().await {
            Ok(Some(zone)) => {
                if zone != tenant.time_zone.name() {
                    gaps.push(ReconciliationGap {
                        kind: TIME_ZONE_MISMATCH.into(),
                        simplybook: zone.clone(),
                        ledger: tenant.time_zone.name().to_string(),
                        repair: String::new(),
                        booking_ref: String::new(),
                    });
                }
                report.simplybook_time_zone = zone;
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(tenant = %tenant.id, error = %err, "simplybook company time zone unknown");
            }
        }

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

        // Rows name the Status feature's label by id: the company's labels, once, if any row
        // has one.
        let statuses = if listed.iter().any(|l| l.status_id.is_some()) {
            session.statuses().await.unwrap_or_else(|err| {
                tracing::warn!(tenant = %tenant.id, error = %err, "simplybook statuses unknown");
                BTreeMap::new()
            })
        } else {
            BTreeMap::new()
        };
        // From the list first: only what is missing or differs is fetched in full.
        let mut to_fetch: Vec<String> = Vec::new();
        for l in &listed {
            match ledger.get(l.id.as_str()) {
                Some(row) if self.list_agrees(&session, tenant, &statuses, l, row).await => {
                    report.matched += 1;
                }
                _ => to_fetch.push(l.id.clone()),
            }
        }
        // What the ledger has for the month and SimplyBook did not list for it.
        let listed_ids: HashSet<&str> = listed.iter().map(|l| l.id.as_str()).collect();
        let unlisted: Vec<&ReconcileRow> = rows
            .iter()
            .filter(|row| row.session_at >= start && row.session_at < end)
            .filter(|row| !listed_ids.contains(row.booking_ref.as_str()))
            .collect();
        to_fetch.extend(unlisted.iter().map(|r| r.booking_ref.clone()));
        let fetched = self.details(&session, tenant, &to_fetch).await;

        let mut to_repair: Vec<(usize, String)> = Vec::new();
        for id in &to_fetch {
            let row = ledger.get(id.as_str()).copied();
            let was_listed = listed_ids.contains(id.as_str());
            match (fetched.get(id), row) {
                // Not recorded by design (the ledger refuses it); one the ledger has is compared.
                (Some(Ok(r)), None) if !r.billable_by(tenant) => {
                    report.not_billable += 1;
                }
                (Some(Ok(r)), None) => {
                    gaps.push(gap(r, MISSING_IN_LEDGER, describe(r), String::new()));
                    to_repair.push((gaps.len() - 1, r.id.clone()));
                }
                (Some(Ok(r)), Some(row)) => {
                    let in_month = r.session_at >= start && r.session_at < end;
                    if !was_listed && in_month {
                        // In the month by its details, yet the list left it out: the list may
                        // be incomplete, which a person should know.
                        report.simplybook_bookings += 1;
                        gaps.push(gap(r, UNLISTED_IN_SIMPLYBOOK, describe(r), String::new()));
                    }
                    let found = differences(r, row);
                    if found.is_empty() && was_listed {
                        report.matched += 1;
                    }
                    for (kind, simplybook, ledger) in found {
                        gaps.push(gap(r, kind, simplybook, ledger));
                        to_repair.push((gaps.len() - 1, r.id.clone()));
                    }
                }
                (Some(Err(FetchFailure::NotFound(_))), Some(row)) => {
                    gaps.push(ReconciliationGap {
                        booking_ref: row.booking_ref.clone(),
                        kind: MISSING_IN_SIMPLYBOOK.into(),
                        ledger: format!(
                            "{} {} {}",
                            row.status,
                            row.session_at.to_rfc3339(),
                            row.total_amount
                        ),
                        ..Default::default()
                    });
                }
                (Some(Err(FetchFailure::NotFound(m) | FetchFailure::Unreadable(m))), _) => {
                    gaps.push(ReconciliationGap {
                        booking_ref: id.clone(),
                        kind: UNREADABLE_IN_SIMPLYBOOK.into(),
                        simplybook: m.clone(),
                        ..Default::default()
                    });
                }
                (None, _) => {}
            }
        }

        if repair {
            // One repair per booking, however many of its fields differ; the run's id keeps a
            // later run's repair of the same booking apart from this one's.
            let run = Utc::now().timestamp_millis().to_string();
            let mut sent: HashMap<String, String> = HashMap::new();
            for (index, id) in to_repair {
                let outcome = match sent.get(&id) {
                    Some(outcome) => outcome.clone(),
                    None => {
                        let outcome = self.repairs.send(tenant, &id, &run).await;
                        sent.insert(id.clone(), outcome.clone());
                        outcome
                    }
                };
                gaps[index].repair = outcome;
            }
            for g in gaps.iter_mut() {
                g.repair = match g.kind.as_str() {
                    MISSING_IN_SIMPLYBOOK => {
                        "not repaired: SimplyBook does not have it; check the booking by hand"
                            .into()
                    }
                    TIME_ZONE_MISMATCH => "not repaired: set the tenant's time_zone to the \
                        company's in SimplyBook (or the company's to the tenant's), then \
                        reconcile again"
                        .into(),
                    _ => std::mem::take(&mut g.repair),
                };
            }
        }
        gaps.sort_by(|a, b| (&a.booking_ref, &a.kind).cmp(&(&b.booking_ref, &b.kind)));
        report.gaps = gaps;
        report.simplybook_calls = session.calls();

        let result = if report.gaps.is_empty() { CLEAN } else { GAPS };
        report.outcome = result.into();
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

    /// Whether a listed row agrees with the ledger's booking on what the row shows: the state
    /// (cancelled, awaiting approval, active), the session time, and the service's price.
    async fn list_agrees(
        &self,
        session: &Session<'_>,
        tenant: &TenantConfig,
        statuses: &BTreeMap<String, StatusLabel>,
        l: &ListedBooking,
        row: &ReconcileRow,
    ) -> bool {
        let shown = l.status(statuses, &tenant.simplybook_status_labels);
        if shown.is_none() || shown != BookingStatus::parse(&row.status) {
            return false;
        }
        if l.event_id.is_some() && l.event_id != row.service_id {
            return false;
        }
        if local_to_utc(&l.start, tenant) != Some(row.session_at) {
            return false;
        }
        // The row has no price: the service's price stands in. A booking priced otherwise (the
        // payments feature's amount) differs here and is fetched to compare the real amount.
        let Some(event_id) = &l.event_id else {
            return false;
        };
        match session.event(Api::Admin, event_id).await {
            Ok(Some(event)) => event
                .price
                .is_some_and(|p| p.normalize() == row.total_amount.normalize()),
            _ => false,
        }
    }

    /// The details of `ids`, fetched through the Company Administration API.
    async fn details(
        &self,
        session: &Session<'_>,
        tenant: &TenantConfig,
        ids: &[String],
    ) -> BTreeMap<String, Result<Remote, FetchFailure>> {
        let fetches = ids.iter().cloned().map(|id| async move {
            let result = session
                .admin_details(&id)
                .await
                .map_err(failure)
                .and_then(|r| Remote::of(r, tenant).map_err(FetchFailure::Unreadable));
            (id, result)
        });
        futures::stream::iter(fetches)
            .buffer_unordered(FETCH_CONCURRENCY)
            .collect()
            .await
    }

    /// Tells the operator a run could not ask SimplyBook (bad credentials, an outage).
    async fn alert_failed(
        &self,
        tenant: &TenantConfig,
        period: BillingPeriod,
        outcome: &str,
        error: &str,
    ) -> Result<(), ReconcileError> {
        let not_possible = outcome == NOT_POSSIBLE;
        self.enqueue(alerts::failed(
            tenant,
            period,
            not_possible,
            error,
            Utc::now(),
        ))
        .await
    }

    async fn alert(
        &self,
        tenant: &TenantConfig,
        period: BillingPeriod,
        report: &TenantReconciliation,
    ) -> Result<(), ReconcileError> {
        self.enqueue(alerts::gaps(tenant, period, report, Utc::now()))
            .await
    }

    async fn enqueue(&self, alert: AlertV1) -> Result<(), ReconcileError> {
        self.store.enqueue_alert(&alert).await?;
        self.relay.notify_one();
        Ok(())
    }
}
