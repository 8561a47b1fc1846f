//! Signature headers as senders (and attackers) write them: Stripe's `Stripe-Signature` and the
//! Standard Webhooks `webhook-id` / `webhook-timestamp` / `webhook-signature`. A header that
//! verifies must verify only its own body: the same header with any other body is refused.
//! (The seeds are genuinely signed, so the fuzzer starts from headers that verify.) A header
//! that verifies also carries at most `MAX_SIGNATURES` candidates, none of them empty: the cost
//! of a verification never grows with the header.
#![no_main]

use billing_domain::standard_webhooks::{self, SignedHeaders, SigningKey};
use billing_domain::stripe_signature;
use libfuzzer_sys::fuzz_target;

/// `v1` candidates of a Stripe header and of a Standard Webhooks header, and whether one is empty.
fn stripe_candidates(header: &str) -> (usize, bool) {
    let v1: Vec<&str> = header
        .split(',')
        .filter_map(|item| item.trim().strip_prefix("v1="))
        .collect();
    (v1.len(), v1.iter().any(|c| c.is_empty()))
}

fn webhook_candidates(header: &str) -> (usize, bool) {
    let v1: Vec<&str> = header
        .split(' ')
        .filter_map(|part| part.strip_prefix("v1,"))
        .collect();
    (v1.len(), v1.iter().any(|c| c.is_empty()))
}

const STRIPE_SECRET: &str = "whsec_fuzz_fake_secret";
const NOW: i64 = 1_790_000_000;

fuzz_target!(|data: &[u8]| {
    // The Stripe header (or the webhook id), the timestamp, the signature, then the body.
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let first = parts.next().unwrap_or("");
    let second = parts.next().unwrap_or("");
    let third = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("").as_bytes();
    let mut other = body.to_vec();
    other.push(b'x');

    if stripe_signature::verify(first, body, &[STRIPE_SECRET], NOW).is_ok() {
        let (n, empty) = stripe_candidates(first);
        assert!(
            n <= stripe_signature::MAX_SIGNATURES && !empty,
            "a Stripe header with {n} candidates (empty: {empty}) verified"
        );
        assert!(
            stripe_signature::verify(first, &other, &[STRIPE_SECRET], NOW).is_err(),
            "a Stripe header verified a body it does not sign"
        );
    }

    let key = SigningKey::parse("whsec_ZnV6ei1mYWtlLXNlY3JldA==").expect("valid key");
    let headers = SignedHeaders {
        id: first,
        timestamp: second,
        signature: third,
    };
    if standard_webhooks::verify(headers, body, std::slice::from_ref(&key), NOW).is_ok() {
        let (n, empty) = webhook_candidates(third);
        assert!(
            n <= standard_webhooks::MAX_SIGNATURES && !empty,
            "a webhook-signature header with {n} candidates (empty: {empty}) verified"
        );
        assert!(
            standard_webhooks::verify(headers, &other, &[key], NOW).is_err(),
            "a webhook signature verified a body it does not sign"
        );
    }
});
