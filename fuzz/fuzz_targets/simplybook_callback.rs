//! SimplyBook's native callback body, which only a URL token authenticates.
#![no_main]

use billing_domain::callback::Callback;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(callback) = Callback::parse(body) {
        // Ids and hashes travel in NATS headers and API signatures: short ASCII tokens only.
        for field in [&callback.booking_id, &callback.booking_hash] {
            assert!(!field.is_empty() && field.len() <= 64);
            assert!(field.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
    }
});
