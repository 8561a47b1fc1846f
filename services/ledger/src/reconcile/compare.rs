//! Comparing a booking as SimplyBook has it now with the ledger's, without I/O: the kinds of
//! gap, what SimplyBook's details say ([`Remote`]), and how the two differ.

use billing_domain::TenantConfig;
use billing_domain::simplybook::{DetailsError, Resolved};
use billing_proto::ledger::ReconciliationGap;
use chrono::{DateTime, NaiveDateTime, Utc};
use rust_decimal::Decimal;

use crate::simplybook::FetchError;
use crate::store::ReconcileRow;

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

/// A booking as SimplyBook has it now.
#[derive(Debug, Clone)]
pub(super) struct Remote {
    pub(super) id: String,
    pub(super) status: String,
    pub(super) session_at: DateTime<Utc>,
    pub(super) price: Decimal,
    pub(super) currency: Option<String>,
    /// The value is the service's list price (see `billing_domain::simplybook::Resolved`).
    pub(super) priced_from_service: bool,
}

impl Remote {
    pub(super) fn of(resolved: Resolved, tenant: &TenantConfig) -> Result<Remote, String> {
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
    pub(super) fn billable_by(&self, tenant: &TenantConfig) -> bool {
        self.price > Decimal::ZERO
            && self
                .currency
                .as_deref()
                .is_none_or(|c| c.eq_ignore_ascii_case(tenant.currency.code()))
    }
}

/// Why a booking's details could not be had.
pub(super) enum FetchFailure {
    /// SimplyBook answered that it does not have it.
    NotFound(String),
    /// SimplyBook could not be asked, or answered something unreadable.
    Unreadable(String),
}

pub(super) fn failure(e: FetchError) -> FetchFailure {
    match e {
        FetchError::NotFound(m) => FetchFailure::NotFound(m),
        FetchError::Details(DetailsError::PriceUnknown(m)) => FetchFailure::Unreadable(m),
        other => FetchFailure::Unreadable(other.to_string()),
    }
}

/// A listed `YYYY-MM-DD HH:MM:SS` in the tenant's zone, as the ledger records session times
/// (a time in a daylight-saving gap or overlap resolved by the same rule).
pub(super) fn local_to_utc(local: &str, tenant: &TenantConfig) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S").ok()?;
    billing_domain::local_time::resolve(naive, tenant.time_zone).map(|t| t.with_timezone(&Utc))
}

pub(super) fn describe(r: &Remote) -> String {
    format!("{} {} {}", r.status, r.session_at.to_rfc3339(), r.price)
}

pub(super) fn gap(r: &Remote, kind: &str, simplybook: String, ledger: String) -> ReconciliationGap {
    ReconciliationGap {
        booking_ref: r.id.clone(),
        kind: kind.into(),
        simplybook,
        ledger,
        repair: String::new(),
    }
}

/// How the ledger's booking differs from SimplyBook's: (kind, SimplyBook's value, ledger's).
pub(super) fn differences(r: &Remote, row: &ReconcileRow) -> Vec<(&'static str, String, String)> {
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
