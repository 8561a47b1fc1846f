//! The overview: per tenant, this month and last month in the tenant's own zone: bookings and
//! fees (the ledger's period summary), the invoice and its payment status, the reconciliation
//! with SimplyBook and its gaps, and the tenant's dead letters.

use axum::extract::State;
use axum::response::Response;
use billing_domain::period::BillingPeriod;
use billing_proto::convert::timestamp;
use billing_proto::invoicing::{
    Invoice, ListInvoicesRequest, ListTenantProfilesRequest, TenantProfile,
};
use billing_proto::ledger::{
    GetMonthDepositsRequest, ListDeadLettersRequest, SummarizePeriodRequest,
};
use chrono::Utc;
use maud::{Markup, html};

use crate::format::{local, money, zone};
use crate::web::{Operator, Refusal, Shared, refusal};

/// One tenant's month, as the overview shows it.
struct Month {
    period: BillingPeriod,
    bookings: u32,
    fees: String,
    invoice: Option<Invoice>,
    /// `None` when no reconciliation ran for the month.
    gaps: Option<usize>,
    reconciled_at: String,
}

async fn month(
    state: &Shared,
    profile: &TenantProfile,
    period: BillingPeriod,
) -> Result<Month, Refusal> {
    let tz = zone(&profile.time_zone);
    let (start, end) = period.bounds(tz);
    let summary = state
        .backend
        .ledger
        .clone()
        .summarize_period(SummarizePeriodRequest {
            tenant_id: profile.tenant_id.clone(),
            start: Some(timestamp(start)),
            end: Some(timestamp(end)),
        })
        .await
        .map_err(refusal)?
        .into_inner();
    let invoices = state
        .backend
        .invoicing
        .clone()
        .list_invoices(ListInvoicesRequest {
            tenant_id: profile.tenant_id.clone(),
            status: String::new(),
            period: period.to_string(),
        })
        .await
        .map_err(refusal)?
        .into_inner()
        .invoices;
    // The live invoice of the month (a voided one only when there is no other).
    let invoice = invoices
        .iter()
        .find(|i| i.status != "void")
        .or_else(|| invoices.last())
        .cloned();
    let deposits = state
        .backend
        .ledger
        .clone()
        .get_month_deposits(GetMonthDepositsRequest {
            tenant_id: profile.tenant_id.clone(),
            period: period.to_string(),
        })
        .await
        .map_err(refusal)?
        .into_inner();
    let reconciliation = deposits.reconciliation;
    Ok(Month {
        period,
        bookings: summary.booking_count,
        fees: money(summary.platform_fee_total.as_ref()),
        invoice,
        gaps: reconciliation.as_ref().map(|r| r.gaps.len()),
        reconciled_at: reconciliation
            .as_ref()
            .map(|r| local(r.ran_at.as_ref(), tz))
            .unwrap_or_default(),
    })
}

fn month_row(m: &Month) -> Markup {
    html! {
        tr {
            td { (m.period) }
            td.num { (m.bookings) }
            td.num { (m.fees) }
            @match &m.invoice {
                Some(i) => {
                    td { a href={"/invoices/" (i.id)} { (i.number) } }
                    td { (i.status) }
                    td.num { (money(i.balance.as_ref())) }
                }
                None => { td { "—" } td { "not invoiced" } td {} }
            }
            td {
                @match m.gaps {
                    None => { "not reconciled" }
                    Some(0) => { "no gaps (" (m.reconciled_at) ")" }
                    Some(n) => { strong { (n) " gaps" } " (" (m.reconciled_at) ")" }
                }
            }
        }
    }
}

pub async fn page_for(state: &Shared, who: &Operator) -> Result<Response, Refusal> {
    let profiles = state
        .backend
        .invoicing
        .clone()
        .list_tenant_profiles(ListTenantProfilesRequest {})
        .await
        .map_err(refusal)?
        .into_inner()
        .profiles;
    let now = Utc::now();
    let mut tenants = Vec::new();
    for profile in &profiles {
        let current = BillingPeriod::containing(now, zone(&profile.time_zone));
        let this = month(state, profile, current).await?;
        let last = month(state, profile, current.previous()).await?;
        let dead = state
            .backend
            .ledger
            .clone()
            .list_dead_letters(ListDeadLettersRequest {
                tenant_id: profile.tenant_id.clone(),
                after_sequence: 0,
                limit: 1000,
                consumer: String::new(),
            })
            .await
            .map_err(refusal)?
            .into_inner()
            .dead_letters
            .len();
        tenants.push((profile, this, last, dead));
    }
    let body = html! {
        @if tenants.is_empty() { p { "No tenant has a billing profile yet." } }
        @for (profile, this, last, dead) in &tenants {
            section {
                h2 { (profile.legal_name) " (" (profile.tenant_id) ")" }
                p {
                    "Months in " (profile.time_zone) ", " (profile.currency) ". "
                    @if *dead > 0 {
                        a href={"/dead-letters?tenant=" (profile.tenant_id)} { strong { "Dead letters: " (dead) } }
                    } @else { "No dead letters." }
                }
                table {
                    thead { tr { th { "Month" } th.num { "Bookings" } th.num { "Fees" } th { "Invoice" } th { "Status" } th.num { "Balance" } th { "Reconciliation" } } }
                    tbody { (month_row(this)) (month_row(last)) }
                }
            }
        }
    };
    Ok(crate::web::page(who, "Overview", body))
}

pub async fn page(State(state): State<Shared>, who: Operator) -> Result<Response, Refusal> {
    page_for(&state, &who).await
}
