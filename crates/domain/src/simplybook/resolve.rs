//! A booking's details decided into our terms: its state (SimplyBook's fields, then the tenant's
//! map of Status-feature labels) and its value (a price, the service's, or unknown), by the
//! rules written on [`resolve`].

use std::collections::BTreeMap;

use super::details::{BookingDetails, StatusLabel};
use super::events::EventInfo;
use crate::booking::{BookingPayload, BookingStatus, PayloadError, ProviderInfo, ServiceInfo};

/// A tenant's map from its SimplyBook status labels to our statuses, matched without regard to
/// case or surrounding spaces (e.g. `{"Completed": "completed", "No show": "no_show"}`).
pub type StatusLabels = BTreeMap<String, BookingStatus>;

fn mapped(labels: &StatusLabels, label: &str) -> Option<BookingStatus> {
    let label = label.trim();
    labels
        .iter()
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(label))
        .map(|(_, s)| *s)
}

/// A confirmed booking's Status-feature label through the tenant's map: (status, the label when
/// nobody has mapped it). Other states, the company's default label and no label leave the state
/// as it is.
pub(super) fn refine(
    base: BookingStatus,
    label: Option<&StatusLabel>,
    labels: &StatusLabels,
) -> (BookingStatus, Option<String>) {
    match (base, label) {
        (BookingStatus::Confirmed, Some(l)) => match mapped(labels, &l.name) {
            Some(status) => (status, None),
            None if l.is_default => (base, None),
            None => (base, Some(l.name.clone())),
        },
        _ => (base, None),
    }
}

/// Why a booking's details cannot become a booking.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetailsError {
    /// Nothing says what the booking is worth: never recorded as 0.
    #[error("price unknown: {0}")]
    PriceUnknown(String),
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

/// A booking as SimplyBook has it, decided into our terms.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub payload: BookingPayload,
    /// The Status feature's label, as the company wrote it.
    pub status_label: Option<String>,
    /// Set when the label is not in the tenant's map (and not the company's default): the
    /// status was then taken from SimplyBook's confirmation alone, and someone should map it.
    pub unmapped_label: Option<String>,
    /// The value is the service's list price (no price object): it values a booking when first
    /// recorded, and a later change of the service's price does not re-price it.
    pub priced_from_service: bool,
}

/// Decides a booking's state and value from its details, the service they name (from
/// `getEventList`, when the details carry no price) and the tenant's status labels.
///
/// State, from SimplyBook's own fields first:
/// 1. `approve_status` `new` → `pending` (awaiting approval: recorded, neither billed nor
///    cancelled); `canceled` → `cancelled`; `approved` or absent → as `is_confirmed` says;
/// 2. `is_confirmed` `0` → `cancelled`; `1` (or absent with an approval) → `confirmed`;
/// 3. a confirmed booking's Status-feature label refines it through the tenant's map (e.g.
///    "Completed" → `completed`, "No show" → `no_show`). A label not in the map stays
///    `confirmed`, is kept as text and flagged ([`Resolved::unmapped_label`]); it is never
///    guessed from its wording. The company's default label needs no mapping.
///
/// Value:
/// - the payments feature's `price.amount` when present: what SimplyBook charges for the
///   booking, in `price.currency` (whether it is before or after a promotion's discount is not
///   documented; it is what the client was asked to pay, so it is what we bill on);
/// - otherwise the service's price from `getEventList`. A group booking of several places is
///   several bookings in SimplyBook (`book(…, count)` makes a batch of them), each priced on its
///   own, so no count multiplies a price;
/// - a promotion without the payments feature: the details give the promotion's percentage but
///   SimplyBook documents neither how it rounds the discounted price nor whether the discount
///   applies to the whole price, so the value is unknown ([`DetailsError::PriceUnknown`]),
///   never the undiscounted price;
/// - no price object and no priced service: unknown, never 0.
pub fn resolve(
    d: &BookingDetails,
    booking_hash: Option<&str>,
    event: Option<&EventInfo>,
    labels: &StatusLabels,
) -> Result<Resolved, DetailsError> {
    let base = match (d.approve_status.as_deref(), d.is_confirmed) {
        (Some("new"), _) => BookingStatus::Pending,
        (Some("canceled" | "cancelled"), _) => BookingStatus::Cancelled,
        (Some("approved") | None, Some(false)) => BookingStatus::Cancelled,
        (Some("approved"), _) | (None, Some(true)) => BookingStatus::Confirmed,
        (None, None) => {
            return Err(PayloadError::Malformed(
                "booking details carry neither is_confirmed nor approve_status".into(),
            )
            .into());
        }
        (Some(other), _) => {
            return Err(PayloadError::Malformed(format!(
                "unknown approve_status {other:?} (expected new, approved or canceled)"
            ))
            .into());
        }
    };
    let label = d.status_label.as_ref();
    let (status, unmapped_label) = refine(base, label, labels);

    let (price, currency) = match (&d.price, &d.promo, event) {
        (Some((amount, currency)), _, _) => (*amount, currency.clone()),
        (None, Some(promo), _) => {
            return Err(DetailsError::PriceUnknown(format!(
                "booking {} uses promotion {promo:?} and the company does not use SimplyBook's \
                 payments feature, so the discounted price is not in its details; record its \
                 value in SimplyBook's payments feature, or bill it by hand",
                d.id
            )));
        }
        (
            None,
            None,
            Some(EventInfo {
                price: Some(price),
                currency,
                ..
            }),
        ) => (*price, currency.clone()),
        (None, None, Some(e)) => {
            return Err(DetailsError::PriceUnknown(format!(
                "booking {} has no price and its service {} lists none",
                d.id, e.id
            )));
        }
        (None, None, None) => {
            return Err(DetailsError::PriceUnknown(format!(
                "booking {} has no price and its service {} is not in the company's service list",
                d.id,
                d.event_id.as_deref().unwrap_or("(none named)")
            )));
        }
    };
    if d.id.trim().is_empty() || d.id.len() > 100 {
        return Err(PayloadError::Malformed("booking id must be 1-100 characters".into()).into());
    }
    let service_name = d
        .event_name
        .clone()
        .or_else(|| event.and_then(|e| e.name.clone()))
        .unwrap_or_else(|| format!("service {}", d.event_id.as_deref().unwrap_or("?")));
    Ok(Resolved {
        payload: BookingPayload {
            booking_id: d.id.clone(),
            booking_hash: booking_hash.map(str::to_string),
            status,
            price,
            currency,
            datetime: d.start.clone(),
            service: ServiceInfo {
                id: d.event_id.clone(),
                name: service_name,
                duration: event.and_then(|e| e.duration),
            },
            client: Some(d.client.clone()),
            provider: Some(ProviderInfo {
                name: d.unit_name.clone(),
            }),
        },
        status_label: label.map(|l| l.name.clone()),
        unmapped_label,
        priced_from_service: d.price.is_none(),
    })
}
#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;
    use crate::simplybook::events::parse_event_list;
    use crate::simplybook::testing::{fixture, labels, raw};

    fn resolved(details: &str) -> Result<Resolved, DetailsError> {
        let events = parse_event_list(&raw(fixture!("events/event_list"))).expect("events");
        let d = BookingDetails::parse(&raw(details)).expect("details");
        let event = d.event_id.as_ref().and_then(|id| events.get(id));
        resolve(&d, Some("h"), event, &labels())
    }

    #[test]
    fn every_details_fixture_resolves_to_its_state_and_value() {
        let d = |s: &str| Decimal::from_str_exact(s).expect("decimal");
        // (fixture, status, price, label, unmapped)
        let cases = [
            (
                fixture!("details/confirmed_plain"),
                BookingStatus::Confirmed,
                d("150.0000"),
                None,
                false,
            ),
            (
                fixture!("details/confirmed_paid_price_object"),
                BookingStatus::Confirmed,
                d("150.0000"),
                None,
                false,
            ),
            (
                fixture!("details/confirmed_pay_later_price_object"),
                BookingStatus::Confirmed,
                d("150.0000"),
                None,
                false,
            ),
            (
                fixture!("details/confirmed_not_paid_price_object"),
                BookingStatus::Confirmed,
                d("150.0000"),
                None,
                false,
            ),
            (
                fixture!("details/status_default"),
                BookingStatus::Confirmed,
                d("150.0000"),
                Some("Approved"),
                false,
            ),
            (
                fixture!("details/status_label_completed"),
                BookingStatus::Completed,
                d("150.0000"),
                Some("Completed"),
                false,
            ),
            (
                fixture!("details/status_label_no_show"),
                BookingStatus::NoShow,
                d("150.0000"),
                Some("No show"),
                false,
            ),
            (
                fixture!("details/approval_pending"),
                BookingStatus::Pending,
                d("150.0000"),
                None,
                false,
            ),
            (
                fixture!("details/approval_approved"),
                BookingStatus::Confirmed,
                d("150.0000"),
                None,
                false,
            ),
            (
                fixture!("details/approval_canceled"),
                BookingStatus::Cancelled,
                d("150.0000"),
                None,
                false,
            ),
            (
                fixture!("details/cancelled"),
                BookingStatus::Cancelled,
                d("150.0000"),
                None,
                false,
            ),
            (
                fixture!("details/public_api_with_membership_package_keys"),
                BookingStatus::Confirmed,
                d("150.0000"),
                None,
                false,
            ),
        ];
        for (text, status, price, label, unmapped) in cases {
            let r = resolved(text).expect(text);
            assert_eq!(r.payload.status, status, "{text}");
            assert_eq!(r.payload.price, price, "{text}");
            assert_eq!(r.payload.currency.as_deref(), Some("AUD"), "{text}");
            assert_eq!(r.status_label.as_deref(), label, "{text}");
            assert_eq!(r.unmapped_label.is_some(), unmapped, "{text}");
            assert_eq!(r.payload.datetime, "2026-10-14 10:00:00");
            assert_eq!(r.payload.booking_hash.as_deref(), Some("h"));
        }
    }

    #[test]
    fn an_unknown_label_stays_confirmed_and_is_flagged_but_never_overrides_a_cancellation() {
        let arrived =
            fixture!("details/status_label_completed").replace("\"Completed\"", "\"Arrived\"");
        let r = resolved(&arrived).expect("details");
        assert_eq!(r.payload.status, BookingStatus::Confirmed);
        assert_eq!(r.unmapped_label.as_deref(), Some("Arrived"));
        let cancelled = fixture!("details/status_label_completed")
            .replace("\"is_confirmed\": \"1\"", "\"is_confirmed\": \"0\"");
        let r = resolved(&cancelled).expect("details");
        assert_eq!(
            r.payload.status,
            BookingStatus::Cancelled,
            "a label refines confirmed only"
        );
        assert_eq!(r.unmapped_label, None);
    }

    #[test]
    fn a_value_nobody_states_is_unknown_never_zero() {
        let promo = resolved(fixture!("details/location_and_promo_objects"));
        assert!(
            matches!(&promo, Err(DetailsError::PriceUnknown(m)) if m.contains("SPRING10")),
            "{promo:?}"
        );
        let unlisted = fixture!("details/confirmed_plain")
            .replace("\"event_id\": \"7\"", "\"event_id\": \"99\"");
        assert!(matches!(
            resolved(&unlisted),
            Err(DetailsError::PriceUnknown(_))
        ));
        let d = BookingDetails::parse(&raw(fixture!("details/confirmed_plain"))).expect("details");
        let unpriced = EventInfo {
            id: "7".into(),
            name: None,
            price: None,
            currency: None,
            duration: None,
        };
        assert!(matches!(
            resolve(&d, None, Some(&unpriced), &labels()),
            Err(DetailsError::PriceUnknown(_))
        ));
    }
}
