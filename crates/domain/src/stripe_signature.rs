//! Stripe webhook signatures: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…][,v0=…]`, each `v1`
//! an HMAC-SHA256 of `{t}.{raw body}` keyed by the whole `whsec_…` string. Accepted when any `v1`
//! matches any configured secret (rotation), within a tolerance of our clock.
//!
//! Verified here rather than with async-stripe, whose parser keeps only the last `v1`.

use hmac::{KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Stripe's own libraries default to five minutes.
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StripeSignatureError {
    #[error("missing or malformed Stripe-Signature header")]
    Malformed,
    #[error("signature timestamp is too old")]
    Stale,
    #[error("signature timestamp is in the future")]
    Future,
    #[error("no v1 signature matches")]
    Mismatch,
}

impl StripeSignatureError {
    /// A short label for metrics and audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            StripeSignatureError::Malformed => "missing_header",
            StripeSignatureError::Stale => "stale_timestamp",
            StripeSignatureError::Future => "future_timestamp",
            StripeSignatureError::Mismatch => "bad_signature",
        }
    }
}

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header Stripe would send for `body` at `timestamp` (used by tests and tools).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
}

/// Verifies a `Stripe-Signature` header; returns the signed timestamp.
pub fn verify(
    header: &str,
    body: &[u8],
    secrets: &[&str],
    now_unix: i64,
) -> Result<i64, StripeSignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for item in header.split(',') {
        match item.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", sig)) => {
                if let Ok(bytes) = hex::decode(sig) {
                    candidates.push(bytes);
                }
            }
            _ => {}
        }
    }
    let t = timestamp.ok_or(StripeSignatureError::Malformed)?;
    let ts: i64 = t.parse().map_err(|_| StripeSignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(StripeSignatureError::Mismatch);
    }
    if ts < now_unix - TOLERANCE_SECS {
        return Err(StripeSignatureError::Stale);
    }
    if ts > now_unix + TOLERANCE_SECS {
        return Err(StripeSignatureError::Future);
    }
    let matches = secrets.iter().any(|secret| {
        candidates
            .iter()
            .any(|c| mac(secret, t, body).verify_slice(c).is_ok())
    });
    if matches {
        Ok(ts)
    } else {
        Err(StripeSignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Obviously fake secrets.
    const SECRET: &str = "whsec_test_fake_secret_for_unit_tests";
    const OLD: &str = "whsec_test_fake_old_secret";
    const NOW: i64 = 1_790_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event","type":"invoice.paid"}"#;

    #[test]
    fn matches_an_independently_computed_signature() {
        // python3: hmac.new(b"whsec_test_fake_secret_for_unit_tests",
        //   b'1790000000.{"id":"evt_1","object":"event","type":"invoice.paid"}', sha256).hexdigest()
        assert_eq!(
            sign(SECRET, NOW, BODY),
            "t=1790000000,v1=799c2248330ed1503f768438e733cc9d32c2b5a66a74d347c36d90de7ba731e5"
        );
    }

    #[test]
    fn verification_table() {
        let good = sign(SECRET, NOW, BODY);
        assert_eq!(verify(&good, BODY, &[SECRET], NOW), Ok(NOW));
        // Rotation: either configured secret may have signed.
        assert_eq!(verify(&good, BODY, &[OLD, SECRET], NOW), Ok(NOW));
        // Several v1 values (Stripe sends one per active secret): any may match, also the first.
        let old_sig = sign(OLD, NOW, BODY);
        let both = format!(
            "{},v1={}",
            good,
            &old_sig[old_sig.find("v1=").unwrap_or(0) + 3..]
        );
        assert_eq!(verify(&both, BODY, &[SECRET], NOW), Ok(NOW));
        assert_eq!(verify(&both, BODY, &[OLD], NOW), Ok(NOW));
        // v0 and unknown schemes are ignored.
        assert_eq!(
            verify(&format!("{good},v0=deadbeef,x=1"), BODY, &[SECRET], NOW),
            Ok(NOW)
        );
        assert_eq!(
            verify(&good, b"{\"id\":\"evt_2\"}", &[SECRET], NOW),
            Err(StripeSignatureError::Mismatch)
        );
        assert_eq!(
            verify(&good, BODY, &[OLD], NOW),
            Err(StripeSignatureError::Mismatch)
        );
        assert_eq!(
            verify(&good, BODY, &[SECRET], NOW + TOLERANCE_SECS + 1),
            Err(StripeSignatureError::Stale)
        );
        assert_eq!(
            verify(&good, BODY, &[SECRET], NOW - TOLERANCE_SECS - 1),
            Err(StripeSignatureError::Future)
        );
        assert_eq!(
            verify("v1=abcd", BODY, &[SECRET], NOW),
            Err(StripeSignatureError::Malformed)
        );
        assert_eq!(
            verify("t=now,v1=abcd", BODY, &[SECRET], NOW),
            Err(StripeSignatureError::Malformed)
        );
        assert_eq!(
            verify(&format!("t={NOW},v0=abcd"), BODY, &[SECRET], NOW),
            Err(StripeSignatureError::Mismatch)
        );
    }
}
