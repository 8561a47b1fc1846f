//! Stripe webhook signatures: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…][,v0=…]`, each `v1`
//! an HMAC-SHA256 of `{t}.{raw body}` keyed by the whole `whsec_…` string. Accepted when any `v1`
//! matches any configured secret (rotation), within a tolerance of our clock.
//!
//! Verified here rather than with async-stripe, whose parser keeps only the last `v1`.
//!
//! The cost of a verification is bounded by the body, not by the header: each secret's MAC is
//! computed once and compared with at most [`MAX_SIGNATURES`] candidates; a header with more, or
//! with an empty `v1=`, is refused before any MAC is computed.

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Stripe's own libraries default to five minutes.
pub const TOLERANCE_SECS: i64 = 300;

/// The most `v1` signatures one header may carry. Stripe sends one per active secret of the
/// endpoint (two during a rotation); eight leaves room without letting a header multiply the
/// work.
pub const MAX_SIGNATURES: usize = 8;

/// An HMAC-SHA256 tag, and its length in hex.
const TAG_LEN: usize = 32;
const TAG_HEX_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StripeSignatureError {
    #[error("missing or malformed Stripe-Signature header")]
    Malformed,
    #[error("signature timestamp is too old")]
    Stale,
    #[error("signature timestamp is in the future")]
    Future,
    #[error("more than {MAX_SIGNATURES} v1 signatures")]
    TooManySignatures,
    #[error("an empty v1 signature")]
    EmptySignature,
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
            StripeSignatureError::TooManySignatures => "too_many_signatures",
            StripeSignatureError::EmptySignature => "empty_signature",
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
    // Candidates that cannot be a tag (wrong length, not hex) count towards the limit but are
    // not kept: they never match.
    let (mut candidates, mut tags) = (0, Vec::new());
    for item in header.split(',') {
        match item.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", sig)) => {
                candidates += 1;
                if candidates > MAX_SIGNATURES {
                    return Err(StripeSignatureError::TooManySignatures);
                }
                if sig.is_empty() {
                    return Err(StripeSignatureError::EmptySignature);
                }
                let mut tag = [0; TAG_LEN];
                if sig.len() == TAG_HEX_LEN && hex::decode_to_slice(sig, &mut tag).is_ok() {
                    tags.push(tag);
                }
            }
            _ => {}
        }
    }
    let t = timestamp.ok_or(StripeSignatureError::Malformed)?;
    let ts: i64 = t.parse().map_err(|_| StripeSignatureError::Malformed)?;
    if tags.is_empty() {
        return Err(StripeSignatureError::Mismatch);
    }
    if ts < now_unix - TOLERANCE_SECS {
        return Err(StripeSignatureError::Stale);
    }
    if ts > now_unix + TOLERANCE_SECS {
        return Err(StripeSignatureError::Future);
    }
    for secret in secrets {
        // Once per secret, whatever the number of candidates; each compared in constant time.
        let expected = mac(secret, t, body).finalize().into_bytes();
        let matched = tags.iter().fold(subtle::Choice::from(0), |any, tag| {
            any | expected.as_slice().ct_eq(tag)
        });
        if bool::from(matched) {
            return Ok(ts);
        }
    }
    Err(StripeSignatureError::Mismatch)
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

    /// The `v1=<hex>` part of a header made by [`sign`].
    fn v1(header: &str) -> &str {
        &header[header.find(",v1=").map_or(0, |i| i + 1)..]
    }

    #[test]
    fn the_number_and_shape_of_candidates_are_bounded() {
        let good = sign(SECRET, NOW, BODY);
        let ours = v1(&good);
        let old_sig = sign(OLD, NOW, BODY);
        let other = v1(&old_sig);
        let header = |candidates: &[&str]| format!("t={NOW},{}", candidates.join(","));
        // Eight candidates, the genuine one last: accepted.
        let mut eight = vec![other; MAX_SIGNATURES - 1];
        eight.push(ours);
        assert_eq!(verify(&header(&eight), BODY, &[SECRET], NOW), Ok(NOW));
        // Nine, the genuine one first: refused before any MAC is computed.
        let mut nine = vec![ours];
        nine.extend(vec![other; MAX_SIGNATURES]);
        assert_eq!(
            verify(&header(&nine), BODY, &[SECRET], NOW),
            Err(StripeSignatureError::TooManySignatures)
        );
        assert_eq!(
            verify(&header(&["v1=ab"; 9]), BODY, &[SECRET], NOW),
            Err(StripeSignatureError::TooManySignatures)
        );
        // v0 and unknown schemes are no candidates, however many.
        let mut v0 = vec!["v0=abcd"; 20];
        v0.push(ours);
        assert_eq!(verify(&header(&v0), BODY, &[SECRET], NOW), Ok(NOW));
        // An empty candidate, wherever it is, is refused.
        for candidates in [&["v1="][..], &[ours, "v1="], &["v1=", ours]] {
            assert_eq!(
                verify(&header(candidates), BODY, &[SECRET], NOW),
                Err(StripeSignatureError::EmptySignature),
                "{candidates:?}"
            );
        }
        // The genuine candidate repeated is still the genuine candidate.
        assert_eq!(
            verify(&header(&[ours; MAX_SIGNATURES]), BODY, &[SECRET], NOW),
            Ok(NOW)
        );
        // Tampered: one digit off, cut short, longer.
        let mut flipped = ours.to_string();
        let last = if flipped.ends_with('0') { "1" } else { "0" };
        flipped.replace_range(flipped.len() - 1.., last);
        for candidate in [
            flipped.as_str(),
            &ours[..ours.len() - 2],
            &format!("{ours}00"),
        ] {
            assert_eq!(
                verify(&header(&[candidate]), BODY, &[SECRET], NOW),
                Err(StripeSignatureError::Mismatch),
                "{candidate}"
            );
        }
        // Rotation with the limit: the old secret signed, eight candidates.
        let mut eight = vec!["v1=ab"; MAX_SIGNATURES - 1];
        eight.push(other);
        assert_eq!(verify(&header(&eight), BODY, &[SECRET, OLD], NOW), Ok(NOW));
    }

    #[test]
    fn refusals_have_their_own_reasons() {
        assert_eq!(
            StripeSignatureError::TooManySignatures.reason(),
            "too_many_signatures"
        );
        assert_eq!(
            StripeSignatureError::EmptySignature.reason(),
            "empty_signature"
        );
    }
}
