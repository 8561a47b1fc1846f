//! Tenants: their billing profiles (as invoicing holds them), one tenant's profile with links
//! to its bookings, invoices, dead letters and hash-chain check. Read only here: profiles are
//! edited with `billingctl tenants` (issue 22 item 5 is not built yet).

use axum::extract::{Path, State};
use axum::response::Response;
use billing_proto::invoicing::ListTenantProfilesRequest;
use maud::html;

use crate::format::{local, zone};
use crate::web::{Operator, Refusal, Shared, page, refusal};

pub async fn list(State(state): State<Shared>, who: Operator) -> Result<Response, Refusal> {
    let mut profiles = state
        .backend
        .invoicing
        .clone()
        .list_tenant_profiles(ListTenantProfilesRequest {})
        .await
        .map_err(refusal)?
        .into_inner()
        .profiles;
    profiles.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
    let body = html! {
        table {
            thead { tr { th { "Tenant" } th { "Legal name" } th { "Billing email" } th { "Zone" } th { "Currency" } th { "Invoicing" } th.num { "Terms (days)" } } }
            tbody {
                @for p in &profiles {
                    tr {
                        td { a href={"/tenants/" (p.tenant_id)} { (p.tenant_id) } }
                        td { (p.legal_name) }
                        td { (p.billing_email) }
                        td { (p.time_zone) }
                        td { (p.currency) }
                        td { (p.invoicing_mode) }
                        td.num { (p.payment_terms_days) }
                    }
                }
            }
        }
    };
    Ok(page(&who, "Tenants", body))
}

pub async fn detail(
    State(state): State<Shared>,
    who: Operator,
    Path(tenant): Path<String>,
) -> Result<Response, Refusal> {
    let p = super::tenant_profile(&state, &tenant).await?;
    let tz = zone(&p.time_zone);
    let body = html! {
        dl {
            dt { "Legal name" } dd { (p.legal_name) }
            dt { "Billing email" } dd { (p.billing_email) }
            dt { "Address" } dd { @for line in p.address.lines() { (line) br; } }
            dt { "Tax id" } dd { (p.tax_id) }
            dt { "Time zone" } dd { (p.time_zone) }
            dt { "Currency" } dd { (p.currency) }
            dt { "Payment terms" } dd { (p.payment_terms_days) " days" }
            dt { "Tax rate" } dd { (p.tax_rate) }
            dt { "Invoicing" } dd { (p.invoicing_mode) @if !p.stripe_customer_id.is_empty() { " (Stripe customer " (p.stripe_customer_id) ")" } }
            dt { "Invoice numbers" } dd { (p.invoice_prefix) "-YYYY-NNNN" }
            dt { "Profile updated" } dd { (local(p.updated_at.as_ref(), tz)) }
        }
        p {
            a href={"/bookings?tenant=" (p.tenant_id)} { "Bookings" } " · "
            a href={"/invoices?tenant=" (p.tenant_id)} { "Invoices" } " · "
            a href={"/dead-letters?tenant=" (p.tenant_id)} { "Dead letters" } " · "
            a href={"/audit?tenant=" (p.tenant_id)} { "Audit log" } " · "
            a href={"/chain/" (p.tenant_id)} { "Hash-chain check" }
        }
    };
    Ok(page(&who, &format!("Tenant {}", p.tenant_id), body))
}
