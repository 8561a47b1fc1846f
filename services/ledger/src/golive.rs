//! The go-live check of a tenant's SimplyBook account: every call the ledger will make, made
//! once against the live account, each reported as what worked and what did not (with
//! SimplyBook's own error code and message), and optionally each raw answer with client details
//! masked, so a real account's shapes can become contract fixtures.
//!
//! Steps, in order: the company's API domain (`getServiceUrl`), its services with a public-API
//! token (`getEventList`: what callbacks are priced from), the admin login with one day of
//! `getBookings`, the latest booking's admin `getBookingDetails` as the ledger would record it,
//! and the company's time zone (`getCompanyInfo`) against the tenant's.

use billing_domain::TenantConfig;
use billing_domain::simplybook::{self, mask_personal};
use billing_proto::ledger::SimplyBookCheck;
use chrono::{Duration, Utc};
use serde_json::value::RawValue;

use crate::simplybook::{Api, FetchError, Session, SimplyBook};

const OK: &str = "ok";
const FAILED: &str = "failed";
const SKIPPED: &str = "skipped";

struct Report {
    checks: Vec<SimplyBookCheck>,
    raw: bool,
}

impl Report {
    fn push(
        &mut self,
        step: &str,
        method: &str,
        result: &str,
        detail: String,
        raw: Option<&RawValue>,
    ) {
        let raw = match (self.raw, raw) {
            (true, Some(raw)) => serde_json::from_str::<serde_json::Value>(raw.get())
                .map(|v| serde_json::to_string_pretty(&mask_personal(&v)).unwrap_or_default())
                .unwrap_or_default(),
            _ => String::new(),
        };
        self.checks.push(SimplyBookCheck {
            step: step.into(),
            result: result.into(),
            detail,
            method: method.into(),
            raw,
        });
    }

    fn failed(&mut self, step: &str, method: &str, err: &FetchError) {
        self.push(step, method, FAILED, err.to_string(), None);
    }
}

/// Runs every step for `tenant`; a step that needs a failed one is reported as skipped.
pub async fn check(client: &SimplyBook, tenant: &TenantConfig, raw: bool) -> Vec<SimplyBookCheck> {
    let session = client.session(tenant);
    let mut report = Report {
        checks: Vec::new(),
        raw,
    };
    match &tenant.simplybook_api_url {
        Some(url) => report.push(
            "service_url",
            "getServiceUrl",
            SKIPPED,
            format!("the tenant's simplybook_api_url is used: {url}"),
            None,
        ),
        None => match session.api_url().await {
            Ok(url) => report.push("service_url", "getServiceUrl", OK, url, None),
            Err(err) => {
                report.failed("service_url", "getServiceUrl", &err);
                return report.checks;
            }
        },
    }
    events(&session, tenant, &mut report).await;
    admin(&session, tenant, &mut report).await;
    report.checks
}

async fn events(session: &Session<'_>, tenant: &TenantConfig, report: &mut Report) {
    if tenant.simplybook_api_key.is_none() {
        report.push(
            "event_list",
            "getEventList",
            SKIPPED,
            "no simplybook_api_key: callbacks cannot be confirmed".into(),
            None,
        );
        return;
    }
    match session
        .raw(Api::User, "getEventList", &serde_json::json!([]))
        .await
    {
        Ok(raw) => match simplybook::parse_event_list(&raw) {
            Ok(events) => {
                let priced = events.values().filter(|e| e.price.is_some()).count();
                let foreign: Vec<String> = events
                    .values()
                    .filter_map(|e| e.currency.clone())
                    .filter(|c| !c.eq_ignore_ascii_case(tenant.currency.code()))
                    .collect();
                let (result, detail) = if foreign.is_empty() {
                    (
                        OK,
                        format!("{} services, {priced} with a price", events.len()),
                    )
                } else {
                    (
                        FAILED,
                        format!(
                            "{} services, priced in {} while the tenant bills in {}",
                            events.len(),
                            foreign.join(", "),
                            tenant.currency
                        ),
                    )
                };
                report.push("event_list", "getEventList", result, detail, Some(&raw));
            }
            Err(err) => report.push(
                "event_list",
                "getEventList",
                FAILED,
                err.to_string(),
                Some(&raw),
            ),
        },
        Err(err) => report.failed("event_list", "getEventList", &err),
    }
}

async fn admin(session: &Session<'_>, tenant: &TenantConfig, report: &mut Report) {
    if tenant.simplybook_user_login.is_none() {
        for (step, method) in [
            ("bookings_day", "getBookings"),
            ("booking_details", "getBookingDetails"),
            ("company_time_zone", "getCompanyInfo"),
        ] {
            report.push(
                step,
                method,
                SKIPPED,
                "no simplybook_user_login: reconciliation is not possible".into(),
                None,
            );
        }
        return;
    }
    let today = Utc::now().with_timezone(&tenant.time_zone).date_naive();
    let day = serde_json::json!([{
        "date_from": today.format("%Y-%m-%d").to_string(),
        "date_to": today.format("%Y-%m-%d").to_string(),
        "booking_type": "all",
    }]);
    match session.raw(Api::Admin, "getBookings", &day).await {
        Ok(raw) => match simplybook::parse_booking_list(&raw) {
            Ok(rows) => report.push(
                "bookings_day",
                "getBookings",
                OK,
                format!("{} bookings start today ({today})", rows.len()),
                Some(&raw),
            ),
            Err(err) => report.push(
                "bookings_day",
                "getBookings",
                FAILED,
                err.to_string(),
                Some(&raw),
            ),
        },
        Err(err) => {
            report.failed("bookings_day", "getBookings", &err);
            return;
        }
    }

    // The latest booking of the last 30 days, listed the way reconciliation lists a month
    // (ascending, paged), and looked at as the ledger would record it.
    let listed = session
        .list_bookings(today - Duration::days(30), today)
        .await;
    let latest = match listed {
        Ok(rows) => Some(rows.into_iter().max_by(|a, b| a.start.cmp(&b.start))),
        Err(err) => {
            report.failed("booking_details", "getBookings", &err);
            None
        }
    };
    if let Some(latest) = latest {
        match latest {
            None => report.push(
                "booking_details",
                "getBookingDetails",
                SKIPPED,
                "no booking in the last 30 days to look at".into(),
                None,
            ),
            Some(row) => {
                match session
                    .raw(
                        Api::Admin,
                        "getBookingDetails",
                        &serde_json::json!([row.id]),
                    )
                    .await
                {
                    Ok(raw) => {
                        let verdict = simplybook::BookingDetails::parse(&raw)
                            .map_err(|e| e.to_string())
                            .map(|d| d.id);
                        let resolved = session.admin_details(&row.id).await;
                        let (result, detail) = match (verdict, resolved) {
                            (Ok(_), Ok(r)) => (
                                OK,
                                format!(
                                    "booking {}: {} {} {}{}",
                                    row.id,
                                    r.payload.status.as_str(),
                                    tenant
                                        .currency
                                        .check_amount(r.payload.price)
                                        .unwrap_or(r.payload.price),
                                    r.payload
                                        .currency
                                        .as_deref()
                                        .unwrap_or(tenant.currency.code()),
                                    r.unmapped_label
                                        .map(|l| format!(
                                            ", status label {l:?} not in simplybook_status_labels"
                                        ))
                                        .unwrap_or_default()
                                ),
                            ),
                            (Err(e), _) => (FAILED, e),
                            (_, Err(e)) => (FAILED, e.to_string()),
                        };
                        report.push(
                            "booking_details",
                            "getBookingDetails",
                            result,
                            detail,
                            Some(&raw),
                        );
                    }
                    Err(err) => report.failed("booking_details", "getBookingDetails", &err),
                }
            }
        }
    }

    match session
        .raw(Api::Admin, "getCompanyInfo", &serde_json::json!([]))
        .await
    {
        Ok(raw) => {
            let (result, detail) = match simplybook::company_time_zone(&raw) {
                Ok(Some(zone)) if zone == tenant.time_zone.name() => (OK, zone),
                Ok(Some(zone)) => (
                    FAILED,
                    format!(
                        "SimplyBook's company zone is {zone}, the tenant's time_zone is {}: \
                         sessions would be read in the wrong zone",
                        tenant.time_zone.name()
                    ),
                ),
                Ok(None) => (FAILED, "getCompanyInfo has no timezone".into()),
                Err(e) => (FAILED, e.to_string()),
            };
            report.push(
                "company_time_zone",
                "getCompanyInfo",
                result,
                detail,
                Some(&raw),
            );
        }
        Err(err) => report.failed("company_time_zone", "getCompanyInfo", &err),
    }
}
