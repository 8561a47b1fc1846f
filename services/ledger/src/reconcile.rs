//! Reconciliation with SimplyBook: does the ledger hold every booking SimplyBook has for a
//! tenant's month, in the same state and at the same price?
//!
//! SimplyBook's Company Administration API lists the month (`getBookings`, the company's local
//! dates; its rows carry no booking hash and no price). Each row is compared with the ledger
//! first: presence, state (cancelled, awaiting approval or active), session time, and the
//! service's price from `getEventList`. Only a booking that is missing or differs there is
//! fetched in full (`getBookingDetails(id)`), so a clean month costs a handful of calls, not one
//! per booking. Bookings the ledger has in the month that the list left out are fetched too.
//! The company's time zone (`getCompanyInfo`) is compared with the tenant's: a mismatch shifts
//! sessions across month ends, so it is a gap.
//!
//! A gap is repaired by putting the booking's id on the webhook stream (`Billing-Auth:
//! reconciliation-repair`): the ledger's consumer confirms it through the admin API and records
//! it like any event (deduplication, audit as a repair), never writing the ledger directly and
//! never forging a callback that would need a hash we do not have. A run that finds gaps can
//! raise an operator alert; `ledger_reconciliation_gaps{tenant}` keeps the last count.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use billing_domain::simplybook::{DetailsError, ListedBooking, Resolved, StatusLabel};
use billing_domain::{BillingPeriod, BookingStatus, TenantConfig, Tenants};
use billing_proto::convert::timestamp;
use billing_proto::events::AlertV1;
use billing_proto::ledger::{ReconciliationGap, TenantReconciliation};
use billing_runtime::Subjects;
use billing_runtime::nats::{
    AUTH_RECONCILIATION_REPAIR, HDR_AUTH, HDR_EVENT_ID, HDR_RECEIVED_AT, HDR_SOURCE, HDR_TENANT,
};
use chrono::{DateTime, NaiveDateTime, Utc};
use futures::StreamExt;
use rust_decimal::Decimal;
use tokio::sync::Notify;

use crate::simplybook::{Api, FetchError, Session, SimplyBook};
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
pub const TIME_ZONE_MISMATCH: &str = "time_zone_mismatch";
/// SimplyBook's list left out a booking whose details put it in the month: the list may be
/// incomplete.
pub const UNLISTED_IN_SIMPLYBOOK: &str = "unlisted_in_simplybook";
/// A gap's `repair` when the booking was put on the webhook stream.
const REPAIR_SENT: &str = "sent";

/// A run's outcomes.
const CLEAN: &str = "clean";
const GAPS: &str = "gaps";
const FAILED: &str = "failed";
const NOT_POSSIBLE: &str = "not_possible";

/// A booking as SimplyBook has it now.
#[derive(Debug, Clone)]
struct Remote {
    id: String,
    status: String,
    session_at: DateTime<Utc>,
    price: Decimal,
    currency: Option<String>,
    /// The value is the service's list price (see `billing_domain::simplybook::Resolved`).
    priced_from_service: bool,
}

impl Remote {
    fn of(resolved: Resolved, tenant: &TenantConfig) -> Result<Remote, String> {
        let session_at = resolved
            .payload
            .session_at(tenant.time_zone)
            .map_err(|e| e.to_string())?;
        Ok(Remote {
            id: resolved.payload.booking_id,
            status: resolved.payload.status.as_str().to_string(),
            session_at,
            // In the tenant's minor unit when it fits (SimplyBook writes "150.0000").
            price: tenant
                .currency
                .check_amount(resolved.payload.price)
                .unwrap_or(resolved.payload.price),
            currency: resolved.payload.currency,
            priced_from_service: resolved.priced_from_service,
        })
    }

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
    /// SimplyBook answered that it does not have it.
    NotFound(String),
    /// SimplyBook could not be asked, or answered something unreadable.
    Unreadable(String),
}

fn failure(e: FetchError) -> FetchFailure {
    match e {
        FetchError::NotFound(m) => FetchFailure::NotFound(m),
        FetchError::Details(DetailsError::PriceUnknown(m)) => FetchFailure::Unreadable(m),
        other => FetchFailure::Unreadable(other.to_string()),
    }
}

/// Puts repairs on the webhook stream, where the ledger's consumer confirms them.
pub struct Repairs {
    js: jetstream::Context,
    subjects: Subjects,
}

impl Repairs {
    pub fn new(js: jetstream::Context, subjects: Subjects) -> Self {
        Repairs { js, subjects }
    }

    /// `sent`, or why the repair was not put on the stream.
    async fn send(&self, tenant: &TenantConfig, booking_id: &str, run: &str) -> String {
        let event_id = format!("repair:{}:{booking_id}:{run}", tenant.id);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", event_id.as_str());
        headers.insert(HDR_EVENT_ID, event_id.as_str());
        headers.insert(HDR_SOURCE, "simplybook");
        headers.insert(HDR_AUTH, AUTH_RECONCILIATION_REPAIR);
        headers.insert(HDR_TENANT, tenant.id.as_str());
        headers.insert(HDR_RECEIVED_AT, Utc::now().to_rfc3339().as_str());
        let body = serde_json::json!({"booking_id": booking_id}).to_string();
        let subject = self.subjects.simplybook(tenant.id.as_str());
        let published = async {
            self.js
                .publish_with_headers(subject, headers, body.into())
                .await?
                .await
                .map_err(async_nats::Error::from)
        };
        match tokio::time::timeout(Duration::from_secs(10), published).await {
            Ok(Ok(_)) => REPAIR_SENT.into(),
            Ok(Err(err)) => format!("not repaired: the webhook stream refused it: {err}"),
            Err(_) => "not repaired: the webhook stream timed out".into(),
        }
    }
}

pub struct Reconciler {
    store: Store,
    tenants: Arc<Tenants>,
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

impl Reconciler {
    pub fn new(
        store: Store,
        tenants: Arc<Tenants>,
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
        let now = Utc::now();
        let (kind, summary, details) = if outcome == NOT_POSSIBLE {
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
        let alert = AlertV1 {
            alert_id: format!("{kind}:{}:{period}:{}", tenant.id, now.date_naive()),
            kind: kind.into(),
            severity: "warning".into(),
            summary,
            details,
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

/// A listed `YYYY-MM-DD HH:MM:SS` in the tenant's zone, as the ledger records session times
/// (a time in a daylight-saving gap or overlap resolved by the same rule).
fn local_to_utc(local: &str, tenant: &TenantConfig) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S").ok()?;
    billing_domain::local_time::resolve(naive, tenant.time_zone).map(|t| t.with_timezone(&Utc))
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
    // Numerically: SimplyBook's "150" and the ledger's 150.00 are the same price. A value from
    // the service's price list is what the booking was worth when first recorded; a later
    // change of the list is no gap (the ledger never re-prices from it).
    let currency_differs = r
        .currency
        .as_deref()
        .is_some_and(|c| !c.eq_ignore_ascii_case(row.currency.trim()));
    if currency_differs
        || (!r.priced_from_service && r.price.normalize() != row.total_amount.normalize())
    {
        found.push((
            AMOUNT_MISMATCH,
            format!("{} {}", r.price, r.currency.as_deref().unwrap_or(""))
                .trim()
                .to_string(),
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
            status: status.into(),
            session_at: at.parse().expect("time"),
            price: price.parse().expect("price"),
            currency: None,
            priced_from_service: false,
        }
    }

    fn row(status: &str, total: &str, at: &str) -> ReconcileRow {
        ReconcileRow {
            booking_ref: "1".into(),
            status: status.into(),
            service_id: Some("7".into()),
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
