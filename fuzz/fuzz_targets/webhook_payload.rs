//! A signed SimplyBook booking body (what ingest checks the shape of and the ledger decodes).
#![no_main]

use billing_domain::BookingPayload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(payload) = BookingPayload::parse(body) {
        // Whatever parsed has the fields the ledger relies on.
        assert!(!payload.booking_id.is_empty());
        // Session times are parsed in any zone without panicking.
        let _ = payload.session_at(chrono_tz::Australia::Sydney);
        let _ = payload.session_at(chrono_tz::Asia::Tokyo);
    }
});
