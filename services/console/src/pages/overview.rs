//! The overview: per tenant, this month and last month in the tenant's own zone: bookings and
//! fees (the ledger's period summary), the invoice and its payment status, the deposits
//! received, the reconciliation with SimplyBook and its gaps, and the tenant's dead letters;
//! and above them the latest operator alerts the services raised, as the notifier emailed them
//! (the console has no NATS identity to read the ALERTS stream itself).

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
use billing_proto::notifier::{AlertEmail, ListAlertEmailsRequest};
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
    /// The bookings' deposits by outcome (`3 received, 1 missing`), and the month's lines no
    /// booking claims.
    deposits: String,
    reconciled_at: String,
}

async fn month(
    state: &Shared,
    profile: &TenantProfile,
    period: BillingPeriod,
) -> Result<Month, Refusal> {
    let tz = zone(&profile.time_zone);
    let (start, end) = period.bounds(tz);
    // The three reads at once: a page of several tenants makes a dozen calls.
    let mut ledger = state.backend.ledger.clone();
    let mut deposits_ledger = state.backend.ledger.clone();
    let mut invoicing = state.backend.invoicing.clone();
    let (summary, invoices, deposits) = tokio::join!(
        ledger.summarize_period(SummarizePeriodRequest {
            tenant_id: profile.tenant_id.clone(),
            start: Some(timestamp(start)),
            end: Some(timestamp(end)),
        }),
        invoicing.list_invoices(ListInvoicesRequest {
            tenant_id: profile.tenant_id.clone(),
            status: String::new(),
            period: period.to_string(),
        }),
        deposits_ledger.get_month_deposits(GetMonthDepositsRequest {
            tenant_id: profile.tenant_id.clone(),
            period: period.to_string(),
        }),
    );
    let summary = summary.map_err(refusal)?.into_inner();
    let invoices = invoices.map_err(refusal)?.into_inner().invoices;
    let deposits = deposits.map_err(refusal)?.into_inner();
    // The live invoice of the month (a voided one only when there is no other).
    let invoice = invoices
        .iter()
        .find(|i| i.status != "void")
        .or_else(|| invoices.last())
        .cloned();
    let deposit_summary = deposit_summary(
        deposits.bookings.iter().map(|b| b.outcome.as_str()),
        deposits.unmatched.len(),
    );
    let reconciliation = deposits.reconciliation;
    Ok(Month {
        deposits: deposit_summary,
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

/// `3 received, 1 missing; 1 line unclaimed`: the ledger's deposit outcomes of a month's
/// bookings (those not yet due left out), and the deposit lines no booking claims.
fn deposit_summary<'a>(outcomes: impl Iterator<Item = &'a str>, unmatched: usize) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for outcome in outcomes.filter(|o| *o != "not_due") {
        *counts.entry(outcome).or_insert(0usize) += 1;
    }
    let mut text = counts
        .iter()
        .map(|(outcome, n)| format!("{n} {}", outcome.replace('_', " ")))
        .collect::<Vec<_>>()
        .join(", ");
    if unmatched > 0 {
        let lines = if unmatched == 1 { "line" } else { "lines" };
        if !text.is_empty() {
            text.push_str("; ");
        }
        text.push_str(&format!("{unmatched} {lines} unclaimed"));
    }
    if text.is_empty() {
        "—".to_string()
    } else {
        text
    }
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
            td { (m.deposits) }
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

/// Operator alerts shown on the overview.
const ALERTS_SHOWN: u32 = 10;

/// The latest alerts, or `None` when the notifier did not answer (the page shows the rest).
async fn alerts(state: &Shared) -> Option<Vec<AlertEmail>> {
    match state
        .backend
        .notifier
        .clone()
        .list_alert_emails(ListAlertEmailsRequest {
            limit: ALERTS_SHOWN,
        })
        .await
    {
        Ok(reply) => Some(reply.into_inner().alerts),
        Err(status) => {
            tracing::warn!(code = ?status.code(), "listing the operator alerts failed");
            None
        }
    }
}

fn alerts_section(alerts: Option<&[AlertEmail]>) -> Markup {
    let utc = chrono_tz::UTC;
    html! {
        section {
            h2 { "Operator alerts" }
            @match alerts {
                None => p { "The notifier did not answer: the alerts cannot be shown now." }
                Some([]) => p { "No alert raised." }
                Some(list) => {
                    p { "The latest alerts the services raised (at most " (ALERTS_SHOWN) "), newest first, as the notifier emailed them to the operator. Alerts carry no resolution: check whether each still holds." }
                    table {
                        thead { tr { th { "Raised (UTC)" } th { "Alert" } th { "Email" } } }
                        tbody {
                            @for a in list {
                                tr {
                                    td { (local(a.received_at.as_ref(), utc)) }
                                    td { (a.subject) }
                                    td { (a.state) @if !a.last_error.is_empty() { br; small { (a.last_error) } } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn page_for(state: &Shared, who: &Operator) -> Result<Response, Refusal> {
    let mut invoicing = state.backend.invoicing.clone();
    let (profiles, alerts) = tokio::join!(
        invoicing.list_tenant_profiles(ListTenantProfilesRequest {}),
        alerts(state)
    );
    let profiles = profiles.map_err(refusal)?.into_inner().profiles;
    let now = Utc::now();
    let mut tenants = Vec::new();
    for profile in &profiles {
        let current = BillingPeriod::containing(now, zone(&profile.time_zone));
        let mut ledger = state.backend.ledger.clone();
        let (this, last, dead) = tokio::join!(
            month(state, profile, current),
            month(state, profile, current.previous()),
            ledger.list_dead_letters(ListDeadLettersRequest {
                tenant_id: profile.tenant_id.clone(),
                after_sequence: 0,
                limit: 1000,
                consumer: String::new(),
            }),
        );
        let (this, last) = (this?, last?);
        let dead = dead.map_err(refusal)?.into_inner().dead_letters.len();
        tenants.push((profile, this, last, dead));
    }
    let body = html! {
        (alerts_section(alerts.as_deref()))
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
                    thead { tr { th { "Month" } th.num { "Bookings" } th.num { "Fees" } th { "Invoice" } th { "Status" } th.num { "Balance" } th { "Deposits" } th { "Reconciliation" } } }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_show_their_subject_and_email_state_or_say_why_not() {
        let alert = AlertEmail {
            alert_id: "price_unknown:claire:e1".into(),
            subject: "[WARNING] A SimplyBook booking of tenant claire has no known price".into(),
            state: "pending".into(),
            received_at: Some(timestamp(chrono::DateTime::UNIX_EPOCH)),
            sent_at: None,
            last_error: "connection refused".into(),
        };
        let html = alerts_section(Some(&[alert])).into_string();
        assert!(html.contains("[WARNING] A SimplyBook booking"), "{html}");
        assert!(html.contains("1970-01-01 00:00 UTC"), "{html}");
        assert!(html.contains("connection refused"), "{html}");
        assert!(
            alerts_section(Some(&[]))
                .into_string()
                .contains("No alert raised")
        );
        assert!(
            alerts_section(None)
                .into_string()
                .contains("did not answer")
        );
    }

    #[test]
    fn deposits_are_counted_by_outcome() {
        let outcomes = ["received", "missing", "received", "not_due", "refund_due"];
        assert_eq!(
            deposit_summary(outcomes.into_iter(), 1),
            "1 missing, 2 received, 1 refund due; 1 line unclaimed"
        );
        assert_eq!(deposit_summary(["not_due"].into_iter(), 0), "—");
        assert_eq!(deposit_summary([].into_iter(), 2), "2 lines unclaimed");
    }
}
