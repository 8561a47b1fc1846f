//! SimplyBook API responses: `getBookingDetails` (read, then resolved into a booking with the
//! company's services), `getEventList` and `getBookings` (the month's list for reconciliation).
//! Seeds: the contract fixtures of `tests/fixtures/simplybook/`.
#![no_main]

use std::collections::BTreeMap;

use billing_domain::BookingStatus;
use billing_domain::simplybook::{
    BookingDetails, DetailsError, parse_booking_list, parse_event_list, resolve,
};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(raw) = serde_json::from_str::<Box<RawValue>>(text) else {
        return;
    };
    let events = parse_event_list(&raw).unwrap_or_default();
    let labels = BTreeMap::from([("Completed".to_string(), BookingStatus::Completed)]);
    if let Ok(details) = BookingDetails::parse(&raw) {
        let event = details.event_id.as_ref().and_then(|id| events.get(id));
        match resolve(&details, Some("fuzzhash"), event, &labels) {
            Ok(resolved) => {
                assert_eq!(resolved.payload.booking_hash.as_deref(), Some("fuzzhash"));
                assert_eq!(resolved.payload.booking_id, details.id);
                // A value is never made up: it is the price object's or the service's.
                let known = details.price.as_ref().map(|(amount, _)| *amount);
                let listed = event.and_then(|e| e.price);
                assert!(Some(resolved.payload.price) == known.or(listed));
            }
            Err(DetailsError::PriceUnknown(_)) => {
                assert!(details.price.is_none());
            }
            Err(DetailsError::Payload(_)) => {}
        }
    }
    if let Ok(list) = parse_booking_list(&raw) {
        for b in list {
            assert!(!b.id.is_empty() && b.id.len() <= 64);
        }
    }
});
