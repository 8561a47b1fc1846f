//! The Standard Webhooks signature scheme (standardwebhooks.com): HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}`, keyed by the base64 part of a `whsec_…` secret,
//! sent as `webhook-signature: v1,<base64> [v1,<base64> …]`.
//!
//! The cost of a verification is bounded by the body, not by the header: each key's MAC is
//! computed once and compared with at most [`MAX_SIGNATURES`] candidates; a header with more, or
//! with an empty one, is refused before any MAC is computed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<Sha256>;

/// How far a timestamp may be from our clock, either way.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// The most `v1` signatures one header may carry. A sender signs with each of its active
/// secrets, one or two during a rotation; eight leaves room without letting a header multiply
/// the work.
pub const MAX_SIGNATURES: usize = 8;

/// An HMAC-SHA256 tag, and its length in standard base64 (with padding).
const TAG_LEN: usize = 32;
const TAG_B64_LEN: usize = 44;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing webhook-id, webhook-timestamp or webhook-signature header")]
    MissingHeader,
    #[error("webhook-timestamp is not a unix timestamp")]
    BadTimestamp,
    #[error("webhook-timestamp is too old")]
    Stale,
    #[error("webhook-timestamp is in the future")]
    Future,
    #[error("more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    #[error("an empty signature")]
    EmptySignature,
    #[error("no signature matches")]
    Mismatch,
}

impl VerifyError {
    /// A short label for metrics and audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader => "missing_header",
            VerifyError::BadTimestamp => "bad_timestamp",
            VerifyError::Stale => "stale_timestamp",
            VerifyError::Future => "future_timestamp",
            VerifyError::TooManySignatures => "too_many_signatures",
            VerifyError::EmptySignature => "empty_signature",
            VerifyError::Mismatch => "bad_signature",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("webhook secret must be whsec_ followed by base64")]
pub struct SecretFormatError;

/// A decoded signing key.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

impl SigningKey {
    /// Parses `whsec_<base64>` (the prefix is optional, as in the reference libraries).
    pub fn parse(secret: &str) -> Result<Self, SecretFormatError> {
        let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
        let key = B64.decode(b64).map_err(|_| SecretFormatError)?;
        if key.is_empty() {
            return Err(SecretFormatError);
        }
        Ok(SigningKey(key))
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` header value for this key: `v1,<base64>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, &timestamp.to_string(), body).finalize();
        format!("v1,{}", B64.encode(tag.into_bytes()))
    }
}

/// The three headers of a signed request.
#[derive(Debug, Clone, Copy)]
pub struct SignedHeaders<'a> {
    pub id: &'a str,
    pub timestamp: &'a str,
    pub signature: &'a str,
}

/// The `v1` candidates of a `webhook-signature` header, decoded; at most [`MAX_SIGNATURES`].
/// A candidate that cannot be a tag (wrong length, not base64) is kept as `None`: it counts
/// towards the limit but never matches.
fn candidates(header: &str) -> Result<Vec<Option<[u8; TAG_LEN]>>, VerifyError> {
    let mut found = Vec::new();
    for part in header.split(' ') {
        // Other versions (and the empty parts of doubled spaces) are not ours to check.
        let Some(b64) = part.strip_prefix("v1,") else {
            continue;
        };
        if found.len() == MAX_SIGNATURES {
            return Err(VerifyError::TooManySignatures);
        }
        if b64.is_empty() {
            return Err(VerifyError::EmptySignature);
        }
        let tag = (b64.len() == TAG_B64_LEN)
            .then(|| B64.decode(b64).ok())
            .flatten()
            .and_then(|bytes| <[u8; TAG_LEN]>::try_from(bytes).ok());
        found.push(tag);
    }
    Ok(found)
}

/// Verifies a request against any of `keys` (several during a rotation).
/// Returns the parsed timestamp on success.
pub fn verify(
    headers: SignedHeaders<'_>,
    body: &[u8],
    keys: &[SigningKey],
    now_unix: i64,
) -> Result<i64, VerifyError> {
    if headers.id.is_empty() || headers.timestamp.is_empty() || headers.signature.is_empty() {
        return Err(VerifyError::MissingHeader);
    }
    let ts: i64 = headers
        .timestamp
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    let candidates = candidates(headers.signature)?;
    if ts < now_unix - TOLERANCE_SECS {
        return Err(VerifyError::Stale);
    }
    if ts > now_unix + TOLERANCE_SECS {
        return Err(VerifyError::Future);
    }
    let tags: Vec<[u8; TAG_LEN]> = candidates.into_iter().flatten().collect();
    if tags.is_empty() {
        return Err(VerifyError::Mismatch);
    }
    for key in keys {
        // Once per key, whatever the number of candidates; each compared in constant time.
        let expected = key
            .mac(headers.id, headers.timestamp, body)
            .finalize()
            .into_bytes();
        let matched = tags.iter().fold(subtle::Choice::from(0), |any, tag| {
            any | expected.as_slice().ct_eq(tag)
        });
        if bool::from(matched) {
            return Ok(ts);
        }
    }
    Err(VerifyError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Obviously fake test secrets.
    const SECRET: &str = "whsec_ZmFrZS10ZXN0LXNlY3JldC1ub3QtcmVhbA==";
    const OLD_SECRET: &str = "whsec_b2xkLWZha2UtdGVzdC1zZWNyZXQ=";
    const NOW: i64 = 1_790_000_000;

    fn key(s: &str) -> SigningKey {
        SigningKey::parse(s).expect("secret")
    }

    fn check(sig: &str, ts: &str, body: &[u8], keys: &[SigningKey]) -> Result<i64, VerifyError> {
        verify(
            SignedHeaders {
                id: "msg_1",
                timestamp: ts,
                signature: sig,
            },
            body,
            keys,
            NOW,
        )
    }

    #[test]
    fn matches_the_reference_test_vector() {
        // From the Standard Webhooks specification's examples.
        let k = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            k.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn verification_table() {
        let body = b"{\"booking_id\":\"1\"}";
        let good = key(SECRET).sign("msg_1", NOW, body);
        let ts = NOW.to_string();
        let current = [key(SECRET)];
        assert_eq!(check(&good, &ts, body, &current), Ok(NOW));
        // Rotation: the new secret first, the old one still accepted.
        let rotated = [key(OLD_SECRET), key(SECRET)];
        assert_eq!(check(&good, &ts, body, &rotated), Ok(NOW));
        // Several signatures in one header, one of them valid.
        let multi = format!("v1,AAAA {good}");
        assert_eq!(check(&multi, &ts, body, &current), Ok(NOW));
        // Wrong key, tampered body, stale, future, garbage, missing.
        let wrong = key(OLD_SECRET).sign("msg_1", NOW, body);
        assert_eq!(
            check(&wrong, &ts, body, &current),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check(&good, &ts, b"{\"booking_id\":\"2\"}", &current),
            Err(VerifyError::Mismatch)
        );
        let stale_ts = NOW - TOLERANCE_SECS - 1;
        let stale = key(SECRET).sign("msg_1", stale_ts, body);
        assert_eq!(
            check(&stale, &stale_ts.to_string(), body, &current),
            Err(VerifyError::Stale)
        );
        let future_ts = NOW + TOLERANCE_SECS + 1;
        let future = key(SECRET).sign("msg_1", future_ts, body);
        assert_eq!(
            check(&future, &future_ts.to_string(), body, &current),
            Err(VerifyError::Future)
        );
        assert_eq!(
            check(&good, "yesterday", body, &current),
            Err(VerifyError::BadTimestamp)
        );
        assert_eq!(
            check("v2,abc", &ts, body, &current),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check("", &ts, body, &current),
            Err(VerifyError::MissingHeader)
        );
    }

    #[test]
    fn the_number_and_shape_of_candidates_are_bounded() {
        let body = b"{\"booking_id\":\"1\"}";
        let ts = NOW.to_string();
        let good = key(SECRET).sign("msg_1", NOW, body);
        let wrong = key(OLD_SECRET).sign("msg_1", NOW, body);
        let keys = [key(SECRET)];
        let header = |candidates: &[&str]| candidates.join(" ");
        // Eight candidates, the genuine one last: accepted.
        let mut eight = vec![wrong.as_str(); MAX_SIGNATURES - 1];
        eight.push(&good);
        assert_eq!(check(&header(&eight), &ts, body, &keys), Ok(NOW));
        // Nine, the genuine one first: refused before any MAC is computed.
        let mut nine = vec![good.as_str()];
        nine.extend(vec![wrong.as_str(); MAX_SIGNATURES]);
        assert_eq!(
            check(&header(&nine), &ts, body, &keys),
            Err(VerifyError::TooManySignatures)
        );
        // Even nine candidates that are not tags at all, or a stale header with nine, say so.
        let junk = vec!["v1,AAAA"; MAX_SIGNATURES + 1];
        assert_eq!(
            check(&header(&junk), &ts, body, &keys),
            Err(VerifyError::TooManySignatures)
        );
        assert_eq!(
            check(&header(&nine), &(NOW - 3600).to_string(), body, &keys),
            Err(VerifyError::TooManySignatures)
        );
        // Other versions and doubled spaces are no candidates.
        let others = format!("{}  {good}", vec!["v2,AAAA"; 20].join(" "));
        assert_eq!(check(&others, &ts, body, &keys), Ok(NOW));
        // An empty candidate, wherever it is, is refused.
        for sig in ["v1,", &format!("{good} v1,"), &format!("v1, {good}")] {
            assert_eq!(
                check(sig, &ts, body, &keys),
                Err(VerifyError::EmptySignature),
                "{sig}"
            );
        }
        // The genuine candidate repeated is still the genuine candidate.
        let repeated = header(&[good.as_str(); MAX_SIGNATURES]);
        assert_eq!(check(&repeated, &ts, body, &keys), Ok(NOW));
        // Tampered: a tag one bit off, a tag cut short, a tag with more after it.
        let mut tag = B64.decode(&good[3..]).expect("base64");
        tag[0] ^= 1;
        let flipped = format!("v1,{}", B64.encode(&tag));
        for sig in [
            flipped,
            good[..good.len() - 4].to_string(),
            format!("{good}AAAA"),
        ] {
            assert_eq!(
                check(&sig, &ts, body, &keys),
                Err(VerifyError::Mismatch),
                "{sig}"
            );
        }
        // Rotation with the limit: two keys, the old one signed, eight candidates.
        let rotated = [key(SECRET), key(OLD_SECRET)];
        let mut eight = vec!["v1,AAAA"; MAX_SIGNATURES - 1];
        eight.push(&wrong);
        assert_eq!(check(&header(&eight), &ts, body, &rotated), Ok(NOW));
    }

    #[test]
    fn refusals_have_their_own_reasons() {
        assert_eq!(
            VerifyError::TooManySignatures.reason(),
            "too_many_signatures"
        );
        assert_eq!(VerifyError::EmptySignature.reason(), "empty_signature");
    }

    #[test]
    fn secrets_must_be_base64() {
        assert!(SigningKey::parse("whsec_!!!").is_err());
        assert!(SigningKey::parse("whsec_").is_err());
    }
}
