//! Bookings: a tenant's month of bookings (filtered by status, or straight to one booking by its
//! SimplyBook id; sorted and paged here), one booking with its status history and price
//! revisions, and the tenant's hash-chain check. All reads.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use billing_domain::BillingPeriod;
use billing_proto::convert::timestamp;
use billing_proto::ledger::{
    Booking, GetBookingRequest, ListBookingsRequest, VerifyIntegrityRequest,
};
use chrono::Utc;
use maud::html;
use serde::Deserialize;

use super::{PAGE_SIZE, page_bounds};
use crate::format::{amount, local, money, zone};
use crate::web::{Operator, Refusal, Shared, page, refusal};

/// The most bookings one month's list reads (ten pages of the ledger's largest).
const MAX_BOOKINGS: usize = 10_000;
const STATUSES: [&str; 5] = ["pending", "confirmed", "cancelled", "completed", "no_show"];

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    period: String,
    #[serde(default)]
    status: String,
    /// A SimplyBook booking id: straight to that booking.
    #[serde(default, rename = "ref")]
    booking_ref: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    desc: bool,
    #[serde(default)]
    page: usize,
}

fn sort(bookings: &mut [Booking], column: &str, desc: bool) {
    let session = |b: &Booking| b.session_at.as_ref().map(|t| (t.seconds, t.nanos));
    match column {
        "ref" => bookings.sort_by(|a, b| a.booking_ref.cmp(&b.booking_ref)),
        "status" => {
            bookings.sort_by(|a, b| a.status.cmp(&b.status).then(session(a).cmp(&session(b))))
        }
        "total" => bookings.sort_by_key(|b| amount(b.total.as_ref())),
        "fee" => bookings.sort_by_key(|b| amount(b.platform_fee.as_ref())),
        _ => bookings.sort_by(|a, b| {
            session(a)
                .cmp(&session(b))
                .then(a.booking_ref.cmp(&b.booking_ref))
        }),
    }
    if desc {
        bookings.reverse();
    }
}

fn href(q: &ListQuery, sort: &str, desc: bool, page: usize) -> String {
    let (desc, page) = super::order_and_page(desc, page);
    super::query_href(
        "/bookings",
        &[
            ("tenant", q.tenant.as_str()),
            ("period", q.period.as_str()),
            ("status", q.status.as_str()),
            ("sort", sort),
            ("desc", desc),
            ("page", &page),
        ],
    )
}

fn booking_path(tenant: &str, booking_ref: &str) -> String {
    // Form encoding writes a space as '+', which a path keeps as '+': use %20 ('+' itself is
    // already %2B).
    let enc = |s: &str| {
        form_urlencoded::byte_serialize(s.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    format!("/bookings/{}/{}", enc(tenant), enc(booking_ref))
}

pub async fn list(
    State(state): State<Shared>,
    who: Operator,
    Query(q): Query<ListQuery>,
) -> Result<Response, Refusal> {
    let tenant = q.tenant.trim().to_string();
    if !tenant.is_empty() && !q.booking_ref.trim().is_empty() {
        return Ok(Redirect::to(&booking_path(&tenant, q.booking_ref.trim())).into_response());
    }
    let mut bookings = Vec::new();
    let mut shown_period = String::new();
    let mut tz_name = String::new();
    if !tenant.is_empty() {
        let profile = super::tenant_profile(&state, &tenant).await?;
        let tz = zone(&profile.time_zone);
        tz_name = profile.time_zone.clone();
        let period = match q.period.trim() {
            "" => BillingPeriod::containing(Utc::now(), tz),
            text => text.parse().map_err(|_| {
                Refusal::BadRequest(format!("the period must be YYYY-MM, not {text:?}"))
            })?,
        };
        shown_period = period.to_string();
        let (from, to) = period.bounds(tz);
        let mut token = String::new();
        loop {
            let page = state
                .backend
                .ledger
                .clone()
                .list_bookings(ListBookingsRequest {
                    tenant_id: tenant.clone(),
                    from: Some(timestamp(from)),
                    to: Some(timestamp(to)),
                    limit: 1000,
                    status: q.status.trim().to_string(),
                    page_token: token.clone(),
                })
                .await
                .map_err(refusal)?
                .into_inner();
            bookings.extend(page.bookings);
            token = page.next_page_token;
            if token.is_empty() || bookings.len() >= MAX_BOOKINGS {
                break;
            }
        }
    }
    sort(&mut bookings, &q.sort, q.desc);
    let (rows, pages) = page_bounds(bookings.len(), q.page);
    let page_no = q.page.clamp(1, pages);
    let tz = zone(&tz_name);
    let column = |key: &str, label: &str, class: &str| {
        let marker = match (q.sort == key, q.desc) {
            (true, false) => " ▲",
            (true, true) => " ▼",
            _ => "",
        };
        html! { th class=(class) { a href=(href(&q, key, q.sort == key && !q.desc, 1)) { (label) (marker) } } }
    };
    let body = html! {
        form.filters method="get" action="/bookings" {
            div { label for="tenant" { "Tenant" } br; input #tenant name="tenant" value=(tenant) required; }
            div { label for="period" { "Month (YYYY-MM)" } br; input #period name="period" value=(shown_period) pattern="[0-9]{4}-[0-9]{2}"; }
            div {
                label for="status" { "Status" } br;
                select #status name="status" {
                    option value="" { "any" }
                    @for s in STATUSES { option value=(s) selected[q.status == s] { (s) } }
                }
            }
            div { label for="ref" { "Or a booking id" } br; input #ref name="ref" value=(q.booking_ref); }
            div { button type="submit" { "Search" } }
        }
        @if tenant.is_empty() {
            p { "Name a tenant to see its bookings." }
        } @else {
            p {
                (bookings.len()) " bookings in " (shown_period) " (" (tz_name) "). "
                a href={"/chain/" (tenant)} { "Check the tenant's hash chain" }
            }
            table {
                thead {
                    tr {
                        (column("ref", "Booking", ""))
                        (column("session", "Session", ""))
                        th { "Service" }
                        (column("status", "Status", ""))
                        (column("total", "Total", "num"))
                        th.num { "Deposit" }
                        (column("fee", "Fee", "num"))
                        th.num { "Revision" }
                    }
                }
                tbody {
                    @for b in &bookings[rows] {
                        tr {
                            td { a href=(booking_path(&tenant, &b.booking_ref)) { (b.booking_ref) } }
                            td { (local(b.session_at.as_ref(), tz)) }
                            td { (b.service_name) }
                            td { (b.status) }
                            td.num { (money(b.total.as_ref())) }
                            td.num { (money(b.deposit.as_ref())) }
                            td.num { (money(b.platform_fee.as_ref())) }
                            td.num { (b.revision) }
                        }
                    }
                }
            }
            @if pages > 1 {
                nav.pages aria-label="Pages" {
                    @for p in 1..=pages {
                        @if p == page_no { strong { (p) } } @else { a href=(href(&q, &q.sort, q.desc, p)) { (p) } }
                    }
                    span { " (" (PAGE_SIZE) " a page)" }
                }
            }
        }
    };
    Ok(page(&who, "Bookings", body))
}

pub async fn detail(
    State(state): State<Shared>,
    who: Operator,
    Path((tenant, booking_ref)): Path<(String, String)>,
) -> Result<Response, Refusal> {
    let profile = super::tenant_profile(&state, &tenant).await?;
    let tz = zone(&profile.time_zone);
    let found = state
        .backend
        .ledger
        .clone()
        .get_booking(GetBookingRequest {
            tenant_id: tenant.clone(),
            booking_ref: booking_ref.clone(),
        })
        .await
        .map_err(refusal)?
        .into_inner();
    let b = found.booking.unwrap_or_default();
    let body = html! {
        dl {
            dt { "Tenant" } dd { a href={"/tenants/" (tenant)} { (tenant) } }
            dt { "Status" } dd { strong { (b.status) } }
            dt { "Session (" (profile.time_zone) ")" } dd { (local(b.session_at.as_ref(), tz)) }
            dt { "Service" } dd { (b.service_name) }
            dt { "Recorded" } dd { (local(b.recorded_at.as_ref(), tz)) }
            dt { "Rates" } dd { "deposit " (b.deposit_rate) ", platform fee " (b.platform_fee_rate) }
            dt { "Record hash" } dd { code { (b.record_hash) } }
        }
        table {
            thead { tr { th { "Amounts (revision " (b.revision) ")" } th.num { "" } } }
            tbody {
                tr { th { "Total" } td.num { (money(b.total.as_ref())) } }
                tr { th { "Deposit" } td.num { (money(b.deposit.as_ref())) } }
                tr { th { "Cash" } td.num { (money(b.cash.as_ref())) } }
                tr { th { "Platform fee" } td.num { (money(b.platform_fee.as_ref())) } }
            }
        }
        h2 { "History" }
        table {
            thead { tr { th { "When (" (profile.time_zone) ")" } th { "Status" } th { "Session" } th { "Service" } th { "Event" } } }
            tbody {
                @for h in &found.history {
                    tr {
                        td { (local(h.changed_at.as_ref(), tz)) }
                        td { (h.status) }
                        td { (local(h.session_at.as_ref(), tz)) }
                        td { (h.service_name) }
                        td { (h.event_id) }
                    }
                }
            }
        }
        h2 { "Price revisions" }
        @if found.revisions.is_empty() { p { "None: the amounts are as first recorded." } } @else {
            table {
                thead { tr { th.num { "Revision" } th { "Recorded" } th.num { "Total change" } th.num { "Fee change" } th.num { "Total after" } th.num { "Fee after" } } }
                tbody {
                    @for r in &found.revisions {
                        tr {
                            td.num { (r.revision) }
                            td { (local(r.recorded_at.as_ref(), tz)) }
                            td.num { (money(r.total_delta.as_ref())) }
                            td.num { (money(r.fee_delta.as_ref())) }
                            td.num { (money(r.total_after.as_ref())) }
                            td.num { (money(r.fee_after.as_ref())) }
                        }
                    }
                }
            }
        }
        p { a href={"/chain/" (tenant)} { "Check the tenant's hash chain" } }
    };
    Ok(page(&who, &format!("Booking {booking_ref}"), body))
}

pub async fn chain(
    State(state): State<Shared>,
    who: Operator,
    Path(tenant): Path<String>,
) -> Result<Response, Refusal> {
    let report = state
        .backend
        .ledger
        .clone()
        .verify_integrity(VerifyIntegrityRequest {
            tenant_id: tenant.clone(),
        })
        .await
        .map_err(refusal)?
        .into_inner();
    let body = html! {
        @if report.intact {
            p.notice role="status" { "Intact: " (report.records_checked) " records match their hashes and link to their predecessors." }
        } @else {
            p.warning role="alert" { "Broken: the chain does not verify." }
        }
        dl {
            dt { "Records checked" } dd { (report.records_checked) }
            dt { "Head hash" } dd { code { (report.head_hash) } }
            dt { "Anchored at" } dd { "chain position " (report.anchored_seq) }
        }
        @if let Some(v) = &report.first_violation {
            h2 { "First violation" }
            dl {
                dt { "Position" } dd { (v.chain_seq) }
                dt { "Record" } dd { (v.record_kind) " " (v.record_id) " (booking " (v.booking_ref) ")" }
                dt { "What" } dd { (v.reason) }
            }
        }
    };
    Ok(page(&who, &format!("Hash chain of {tenant}"), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookings_sort_by_amount_and_links_are_encoded() {
        let booking = |r: &str, total: &str| Booking {
            booking_ref: r.into(),
            total: Some(billing_proto::Money {
                currency_code: "AUD".into(),
                amount: total.into(),
            }),
            ..Booking::default()
        };
        let mut list = vec![
            booking("1", "100"),
            booking("2", "99.99"),
            booking("3", "150"),
        ];
        sort(&mut list, "total", true);
        let order: Vec<&str> = list.iter().map(|b| b.booking_ref.as_str()).collect();
        assert_eq!(order, ["3", "1", "2"]);
        assert_eq!(
            booking_path("claire", "a/b c"),
            "/bookings/claire/a%2Fb%20c"
        );
    }
}
