//! SimplyBook API responses: `getBookingDetails` (turned into a booking payload) and
//! `getBookings` (the month's list for reconciliation).
#![no_main]

use billing_domain::simplybook::{details_to_payload, parse_booking_list};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(raw) = serde_json::from_str::<Box<RawValue>>(text) else {
        return;
    };
    if let Ok(payload) = details_to_payload(&raw, "fuzzhash") {
        assert_eq!(payload.booking_hash.as_deref(), Some("fuzzhash"));
    }
    if let Ok(list) = parse_booking_list(&raw) {
        for b in list {
            assert!(!b.id.is_empty() && b.id.len() <= 64);
            assert!(!b.hash.is_empty() && b.hash.len() <= 64);
        }
    }
});
