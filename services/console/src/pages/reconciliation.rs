//! Reconciliation with SimplyBook, run now: a tenant (or every tenant with SimplyBook admin
//! credentials) and a month, compared by the ledger's `ReconcileSimplyBook` exactly as
//! `billingctl reconcile simplybook` does, and its result shown: the counts each side has, and
//! each gap. With repair, each missing or differing booking is put on the webhook stream for the
//! ledger to confirm with SimplyBook and record. The ledger requires a billing token and the
//! console a billing or admin operator; it is confirmed first, as every write. The latest stored
//! result of each month is on the overview.

use axum::Form;
use axum::extract::State;
use axum::response::Response;
use billing_proto::invoicing::ListTenantProfilesRequest;
use billing_proto::ledger::{ReconcileSimplyBookRequest, TenantReconciliation};
use billing_runtime::auth::Access;
use maud::{Markup, html};
use serde::Deserialize;

use crate::backend::as_operator;
use crate::web::{Operator, Refusal, Shared, page, refusal};

/// The tenants' ids, for the form's choice.
async fn tenant_ids(state: &Shared) -> Result<Vec<String>, Refusal> {
    let mut ids: Vec<String> = state
        .backend
        .invoicing
        .clone()
        .list_tenant_profiles(ListTenantProfilesRequest::default())
        .await
        .map_err(refusal)?
        .into_inner()
        .profiles
        .into_iter()
        .map(|p| p.tenant_id)
        .collect();
    ids.sort();
    Ok(ids)
}

fn form(who: &Operator, tenants: &[String], chosen: &RunForm) -> Markup {
    html! {
        form.write method="post" action="/reconciliation" {
            h2 { "Run a reconciliation now" }
            input type="hidden" name="csrf" value=(who.session.csrf);
            label for="tenant" { "Tenant" }
            select #tenant name="tenant" {
                option value="" selected[chosen.tenant.is_empty()] { "Every tenant with SimplyBook admin credentials" }
                @for t in tenants {
                    option value=(t) selected[*t == chosen.tenant] { (t) }
                }
            }
            label for="period" { "Month (YYYY-MM, or previous or current in each tenant's zone)" }
            input #period name="period" required value=(if chosen.period.is_empty() { "previous" } else { chosen.period.as_str() });
            p {
                input #repair type="checkbox" name="repair" value="true" checked[chosen.repair];
                " "
                label for="repair" { "Repair: send each missing or differing booking through ingest for the ledger to confirm with SimplyBook" }
            }
            p { button.primary type="submit" { "Run…" } }
        }
    }
}

pub async fn page_form(State(state): State<Shared>, who: Operator) -> Result<Response, Refusal> {
    let body = if who.may(Access::Billing) {
        let tenants = tenant_ids(&state).await?;
        html! {
            p { "Compares SimplyBook's bookings of a month with the ledger's, as the nightly run does. "
                "The latest result of each month is on the " a href="/" { "overview" } "." }
            (form(&who, &tenants, &RunForm::default()))
        }
    } else {
        html! {
            p { "Running a reconciliation needs the billing or admin role. The latest result of each month is on the "
                a href="/" { "overview" } "." }
        }
    };
    Ok(page(&who, "Reconciliation", body))
}

#[derive(Deserialize, Default)]
pub struct RunForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    period: String,
    #[serde(default)]
    repair: bool,
    #[serde(default)]
    confirmed: bool,
}

/// The result of one tenant's run, as `billingctl reconcile simplybook` prints it.
fn report(r: &TenantReconciliation) -> Markup {
    html! {
        section {
            h2 { (r.tenant_id) " " (r.period) ": " (outcome(r)) }
            @if r.outcome == "not_possible" || !r.error.is_empty() {
                p.warning { (r.error) }
            } @else {
                dl {
                    dt { "SimplyBook bookings" } dd { (r.simplybook_bookings) " (" (r.not_billable) " not billable)" }
                    dt { "Ledger bookings" } dd { (r.ledger_bookings) }
                    dt { "Matched" } dd { (r.matched) }
                    dt { "SimplyBook calls" } dd { (r.simplybook_calls) }
                    dt { "Company time zone" } dd { @if r.simplybook_time_zone.is_empty() { "unknown" } @else { (r.simplybook_time_zone) } }
                }
                @if !r.gaps.is_empty() {
                    table {
                        caption { "Gaps" }
                        thead { tr { th { "Booking" } th { "Gap" } th { "SimplyBook" } th { "Ledger" } th { "Repair" } } }
                        tbody {
                            @for g in &r.gaps {
                                tr {
                                    td { a href={"/bookings/" (r.tenant_id) "/" (g.booking_ref)} { (g.booking_ref) } }
                                    td { (g.kind.replace('_', " ")) }
                                    td { (g.simplybook) }
                                    td { (g.ledger) }
                                    td { (g.repair) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn outcome(r: &TenantReconciliation) -> String {
    match r.outcome.as_str() {
        "clean" => "no gap".to_string(),
        "gaps" => format!("{} gap(s)", r.gaps.len()),
        "failed" => "SimplyBook could not be asked".to_string(),
        "not_possible" => "not possible".to_string(),
        "" if !r.error.is_empty() => "not stored".to_string(),
        other => other.replace('_', " "),
    }
}

pub async fn run(
    State(state): State<Shared>,
    who: Operator,
    Form(form_in): Form<RunForm>,
) -> Result<Response, Refusal> {
    who.check_write(&form_in.csrf, Access::Billing)?;
    let period = form_in.period.trim().to_string();
    let tenant = form_in.tenant.trim().to_string();
    if period.is_empty() {
        return Err(Refusal::BadRequest(
            "give a month (YYYY-MM), previous or current".into(),
        ));
    }
    if !form_in.confirmed {
        let who_for = if tenant.is_empty() {
            "every tenant with SimplyBook admin credentials".to_string()
        } else {
            format!("tenant {tenant}")
        };
        let body = html! {
            p { "Reconcile " strong { (who_for) } " for " strong { (period) } " with SimplyBook now"
                @if form_in.repair { ", and send each missing or differing booking through ingest for the ledger to confirm and record" }
                "? It asks SimplyBook's API, which can take a while." }
            form.write method="post" action="/reconciliation" {
                input type="hidden" name="csrf" value=(who.session.csrf);
                input type="hidden" name="confirmed" value="true";
                input type="hidden" name="tenant" value=(tenant);
                input type="hidden" name="period" value=(period);
                @if form_in.repair { input type="hidden" name="repair" value="true"; }
                p { button.primary type="submit" { "Run the reconciliation" } " " a href="/reconciliation" { "Cancel" } }
            }
        };
        return Ok(page(&who, "Confirm", body));
    }
    let reports = state
        .backend
        .ledger
        .clone()
        .reconcile_simply_book(as_operator(
            ReconcileSimplyBookRequest {
                tenant_id: tenant.clone(),
                period: period.clone(),
                repair: form_in.repair,
                alert: false,
            },
            &who.session,
        ))
        .await
        .map_err(refusal)?
        .into_inner()
        .tenants;
    metrics::counter!("console_writes_total", "write" => "reconcile_simplybook").increment(1);
    let tenants = tenant_ids(&state).await.unwrap_or_default();
    let body = html! {
        @if reports.is_empty() {
            p.notice role="status" { "No tenant has SimplyBook admin credentials to reconcile with." }
        } @else {
            p.notice role="status" { "Reconciled: "
                (reports.iter().filter(|r| r.outcome == "clean").count()) " of " (reports.len())
                " without a gap." }
        }
        @for r in &reports { (report(r)) }
        (form(&who, &tenants, &RunForm { tenant, period, repair: form_in.repair, ..RunForm::default() }))
    };
    Ok(page(&who, "Reconciliation", body))
}

#[cfg(test)]
mod tests {
    use billing_proto::ledger::ReconciliationGap;

    use super::*;

    #[test]
    fn a_report_reads_as_billingctl_prints_it() {
        let gaps = TenantReconciliation {
            tenant_id: "claire".into(),
            period: "2026-10".into(),
            simplybook_bookings: 3,
            ledger_bookings: 2,
            matched: 2,
            outcome: "gaps".into(),
            gaps: vec![ReconciliationGap {
                booking_ref: "9104".into(),
                kind: "missing_in_ledger".into(),
                simplybook: "confirmed AUD 60.00".into(),
                ..ReconciliationGap::default()
            }],
            ..TenantReconciliation::default()
        };
        let html = report(&gaps).into_string();
        assert!(html.contains("claire 2026-10: 1 gap(s)"), "{html}");
        assert!(html.contains("missing in ledger"), "{html}");
        assert!(html.contains("href=\"/bookings/claire/9104\""), "{html}");
        let failed = TenantReconciliation {
            tenant_id: "kenji".into(),
            period: "2026-10".into(),
            outcome: "failed".into(),
            error: "login refused".into(),
            ..TenantReconciliation::default()
        };
        let html = report(&failed).into_string();
        assert!(html.contains("SimplyBook could not be asked"), "{html}");
        assert!(html.contains("login refused"), "{html}");
        assert!(!html.contains("Matched"), "{html}");
    }
}
