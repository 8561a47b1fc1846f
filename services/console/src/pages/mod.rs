//! The pages, one module a subject: the frame every page shares (`layout`), signing in and out
//! (`login`), the overview, invoices, dead letters, bookings, tenants, reconciliation (run now) and the audit log; and the table helpers they share (a
//! column sorted and a list paged on the server).

pub mod audit;
pub mod bookings;
pub mod dead_letters;
pub mod invoices;
pub mod layout;
pub mod login;
pub mod overview;
pub mod reconciliation;
pub mod tenants;

/// A tenant's billing profile (name, currency, time zone) as invoicing holds it.
pub async fn tenant_profile(
    state: &crate::web::Shared,
    tenant: &str,
) -> Result<billing_proto::invoicing::TenantProfile, crate::web::Refusal> {
    Ok(state
        .backend
        .invoicing
        .clone()
        .get_tenant_profile(billing_proto::invoicing::GetTenantProfileRequest {
            tenant_id: tenant.to_string(),
        })
        .await
        .map_err(crate::web::refusal)?
        .into_inner())
}

/// `path` with the query `pairs`, those with an empty value left out (a filter not set).
pub fn query_href(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            out.append_pair(k, v);
        }
    }
    format!("{path}?{}", out.finish())
}

/// A sorted, paged list's `desc` and `page` query values: empty (left out) for the defaults.
pub fn order_and_page(desc: bool, page: usize) -> (&'static str, String) {
    let page = if page > 1 {
        page.to_string()
    } else {
        String::new()
    };
    (if desc { "true" } else { "" }, page)
}

/// Rows on one page of a table.
pub const PAGE_SIZE: usize = 25;

/// Which slice of `len` rows page `page` (from 1) shows, and how many pages there are.
pub fn page_bounds(len: usize, page: usize) -> (std::ops::Range<usize>, usize) {
    let pages = len.div_ceil(PAGE_SIZE).max(1);
    let page = page.clamp(1, pages);
    let start = (page - 1) * PAGE_SIZE;
    (start..(start + PAGE_SIZE).min(len), pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_the_rows_once() {
        assert_eq!(page_bounds(0, 1), (0..0, 1));
        assert_eq!(page_bounds(25, 1), (0..25, 1));
        assert_eq!(page_bounds(26, 2), (25..26, 2));
        // Past the end: the last page; before the start: the first.
        assert_eq!(page_bounds(26, 9), (25..26, 2));
        assert_eq!(page_bounds(26, 0), (0..25, 2));
    }
}
