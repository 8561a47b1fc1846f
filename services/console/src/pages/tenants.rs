//! Tenants: their billing profiles (as invoicing holds them), one tenant's profile with links
//! to its bookings, invoices, dead letters and hash-chain check, and the profile edited (admin:
//! invoicing's PutTenantProfile), confirmed with what changes before it is saved. A new tenant
//! is onboarded with `billingctl tenants onboard` (docs/operations.md): that writes the tenant
//! files, which the console cannot.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use billing_proto::invoicing::{ListTenantProfilesRequest, PutTenantProfileRequest, TenantProfile};
use billing_runtime::auth::Access;
use maud::{Markup, html};
use serde::Deserialize;

use crate::backend::as_operator;
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

#[derive(Deserialize, Default)]
pub struct DetailQuery {
    #[serde(default)]
    done: String,
}

pub async fn detail(
    State(state): State<Shared>,
    who: Operator,
    Path(tenant): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Result<Response, Refusal> {
    let p = super::tenant_profile(&state, &tenant).await?;
    let tz = zone(&p.time_zone);
    let body = html! {
        @if q.done == "saved" {
            p.notice role="status" { "The billing profile was saved." }
        }
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
        @if who.may(Access::Admin) {
            h2 { "Edit the billing profile" }
            (edit_form(&who, &p))
        }
    };
    Ok(page(&who, &format!("Tenant {}", p.tenant_id), body))
}

/// The profile's editable fields. The currency is not among them: it must stay the ledger's
/// currency for the tenant (the tenants file's).
#[derive(Deserialize, Default)]
pub struct ProfileForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirmed: bool,
    legal_name: String,
    billing_email: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    tax_id: String,
    #[serde(default)]
    time_zone: String,
    payment_terms_days: String,
    #[serde(default)]
    tax_rate: String,
    invoicing_mode: String,
    #[serde(default)]
    stripe_customer_id: String,
    #[serde(default)]
    invoice_prefix: String,
}

impl ProfileForm {
    /// `current` with this form's values; the form's text as typed (invoicing checks it).
    fn applied(&self, current: &TenantProfile) -> Result<TenantProfile, String> {
        let terms = self.payment_terms_days.trim();
        let payment_terms_days = terms
            .parse()
            .map_err(|_| format!("payment terms {terms:?} must be a whole number of days"))?;
        Ok(TenantProfile {
            legal_name: self.legal_name.trim().to_string(),
            billing_email: self.billing_email.trim().to_string(),
            // Browsers send a textarea's line breaks as CR LF.
            address: self.address.replace("\r\n", "\n").trim().to_string(),
            tax_id: self.tax_id.trim().to_string(),
            time_zone: self.time_zone.trim().to_string(),
            payment_terms_days,
            tax_rate: self.tax_rate.trim().to_string(),
            invoicing_mode: self.invoicing_mode.trim().to_string(),
            stripe_customer_id: self.stripe_customer_id.trim().to_string(),
            invoice_prefix: self.invoice_prefix.trim().to_string(),
            updated_at: None,
            ..current.clone()
        })
    }
}

fn edit_form(who: &Operator, p: &TenantProfile) -> Markup {
    let field = |name: &str, label: &str, value: &str| {
        html! {
            p { label for=(name) { (label) } br; input id=(name) name=(name) value=(value); }
        }
    };
    html! {
        form.write method="post" action={"/tenants/" (p.tenant_id) "/profile"} {
            input type="hidden" name="csrf" value=(who.session.csrf);
            (field("legal_name", "Legal name", &p.legal_name))
            (field("billing_email", "Billing email", &p.billing_email))
            p { label for="address" { "Address" } br; textarea id="address" name="address" rows="3" { (p.address) } }
            (field("tax_id", "Tax id", &p.tax_id))
            (field("time_zone", "Time zone (IANA)", &p.time_zone))
            (field("payment_terms_days", "Payment terms (days)", &p.payment_terms_days.to_string()))
            (field("tax_rate", "Tax rate (fraction, e.g. 0.10)", &p.tax_rate))
            p {
                label for="invoicing_mode" { "Invoicing" } br;
                select id="invoicing_mode" name="invoicing_mode" {
                    @for mode in ["manual", "stripe"] {
                        option value=(mode) selected[p.invoicing_mode == mode] { (mode) }
                    }
                }
            }
            (field("stripe_customer_id", "Stripe customer id (Stripe mode)", &p.stripe_customer_id))
            (field("invoice_prefix", "Invoice prefix", &p.invoice_prefix))
            p { small { "The currency (" (p.currency) ") is the ledger's and is changed in the tenants file. Invoices already issued keep what they say." } }
            p { button.primary type="submit" { "Review the changes" } }
        }
    }
}

pub async fn save(
    State(state): State<Shared>,
    who: Operator,
    Path(tenant): Path<String>,
    Form(form): Form<ProfileForm>,
) -> Result<Response, Refusal> {
    who.check_write(&form.csrf, Access::Admin)?;
    let current = super::tenant_profile(&state, &tenant).await?;
    let next = form.applied(&current).map_err(Refusal::BadRequest)?;
    let changes = changes(&current, &next);
    if changes.is_empty() {
        return Ok(Redirect::to(&format!("/tenants/{}", current.tenant_id)).into_response());
    }
    if !form.confirmed {
        let terms = next.payment_terms_days.to_string();
        let what = html! {
            p { "Change the billing profile of " strong { (current.tenant_id) } ":" }
            table {
                thead { tr { th { "Field" } th { "Now" } th { "After" } } }
                tbody {
                    @for (name, old, new) in &changes {
                        tr { td { (name) } td { (old) } td { (new) } }
                    }
                }
            }
            p { "The next invoices use it; those already issued stay as they are." }
        };
        return Ok(super::invoices::confirm(
            &who,
            &format!("/tenants/{}/profile", current.tenant_id),
            what,
            &[
                ("legal_name", &next.legal_name),
                ("billing_email", &next.billing_email),
                ("address", &next.address),
                ("tax_id", &next.tax_id),
                ("time_zone", &next.time_zone),
                ("payment_terms_days", &terms),
                ("tax_rate", &next.tax_rate),
                ("invoicing_mode", &next.invoicing_mode),
                ("stripe_customer_id", &next.stripe_customer_id),
                ("invoice_prefix", &next.invoice_prefix),
            ],
            "Save the profile",
            false,
        ));
    }
    state
        .backend
        .invoicing
        .clone()
        .put_tenant_profile(as_operator(
            PutTenantProfileRequest {
                profile: Some(next),
            },
            &who.session,
        ))
        .await
        .map_err(refusal)?;
    metrics::counter!("console_writes_total", "write" => "tenant_profile").increment(1);
    Ok(Redirect::to(&format!("/tenants/{}?done=saved", current.tenant_id)).into_response())
}

/// The fields `next` changes, with their values before and after.
fn changes(current: &TenantProfile, next: &TenantProfile) -> Vec<(&'static str, String, String)> {
    let fields: [(&str, &str, &str); 9] = [
        ("Legal name", &current.legal_name, &next.legal_name),
        ("Billing email", &current.billing_email, &next.billing_email),
        ("Address", &current.address, &next.address),
        ("Tax id", &current.tax_id, &next.tax_id),
        ("Time zone", &current.time_zone, &next.time_zone),
        ("Tax rate", &current.tax_rate, &next.tax_rate),
        ("Invoicing", &current.invoicing_mode, &next.invoicing_mode),
        (
            "Stripe customer",
            &current.stripe_customer_id,
            &next.stripe_customer_id,
        ),
        (
            "Invoice prefix",
            &current.invoice_prefix,
            &next.invoice_prefix,
        ),
    ];
    let mut changed: Vec<_> = fields
        .into_iter()
        .filter(|(_, old, new)| old != new)
        .map(|(name, old, new)| (name, old.to_string(), new.to_string()))
        .collect();
    if current.payment_terms_days != next.payment_terms_days {
        changed.push((
            "Payment terms (days)",
            current.payment_terms_days.to_string(),
            next.payment_terms_days.to_string(),
        ));
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_fields_changed_are_listed_and_the_currency_is_kept() {
        let current = TenantProfile {
            tenant_id: "claire".into(),
            legal_name: "Claire".into(),
            billing_email: "c@example.test".into(),
            currency: "AUD".into(),
            payment_terms_days: 7,
            invoicing_mode: "manual".into(),
            ..TenantProfile::default()
        };
        let form = ProfileForm {
            legal_name: " Claire Pty Ltd ".into(),
            billing_email: "c@example.test".into(),
            address: "1 Road\r\nTown".into(),
            payment_terms_days: "14".into(),
            invoicing_mode: "manual".into(),
            ..ProfileForm::default()
        };
        let next = form.applied(&current).expect("valid");
        assert_eq!(next.currency, "AUD");
        assert_eq!(next.address, "1 Road\nTown");
        let names: Vec<&str> = changes(&current, &next).iter().map(|c| c.0).collect();
        assert_eq!(names, ["Legal name", "Address", "Payment terms (days)"]);
        let bad = ProfileForm {
            payment_terms_days: "two weeks".into(),
            ..form
        };
        assert!(bad.applied(&current).is_err());
    }
}
