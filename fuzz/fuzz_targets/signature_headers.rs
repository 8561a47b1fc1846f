//! Signature headers as senders (and attackers) write them: Stripe's `Stripe-Signature` and the
//! Standard Webhooks `webhook-id` / `webhook-timestamp` / `webhook-signature`. Nothing forged
//! may verify: a header that passes must carry the real signature of the body.
#![no_main]

use billing_domain::standard_webhooks::{self, SignedHeaders, SigningKey};
use billing_domain::stripe_signature;
use libfuzzer_sys::fuzz_target;

const STRIPE_SECRET: &str = "whsec_fuzz_fake_secret";
const NOW: i64 = 1_790_000_000;

fuzz_target!(|data: &[u8]| {
    // header \n body, or the three Standard Webhooks headers \n-separated before the body.
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let first = parts.next().unwrap_or("");
    let second = parts.next().unwrap_or("");
    let third = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("").as_bytes();

    if let Ok(timestamp) = stripe_signature::verify(first, body, &[STRIPE_SECRET], NOW) {
        let expected = stripe_signature::sign(STRIPE_SECRET, timestamp, body);
        let v1 = expected.split("v1=").nth(1).unwrap_or("");
        assert!(
            first.contains(v1),
            "a Stripe header verified without the body's signature"
        );
    }

    let key = SigningKey::parse("whsec_ZnV6ei1mYWtlLXNlY3JldA==").expect("valid key");
    let headers = SignedHeaders {
        id: first,
        timestamp: second,
        signature: third,
    };
    if let Ok(timestamp) = standard_webhooks::verify(headers, body, &[key.clone()], NOW) {
        let expected = key.sign(first, timestamp, body);
        let sig = expected.split(',').nth(1).unwrap_or("");
        assert!(
            third.contains(sig),
            "a webhook verified without the body's signature"
        );
    }
});
