//! Tamper evidence for financial records: SHA-256 over a canonical, unambiguous encoding of a
//! record's financial fields and the previous record's hash in the tenant's chain.

use hmac::{KeyInit, Mac};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

use crate::money::Currency;

/// The key of a keyed chain: each record's hash is HMAC-SHA256 over its canonical encoding, with
/// a key the database does not hold, so whoever can write the tables (even with the triggers
/// disabled) cannot compute a valid hash for a record they changed or made up.
#[derive(Clone)]
pub struct ChainKey(Secret<Vec<u8>>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a chain key must be at least 32 bytes (it has {0})")]
pub struct ChainKeyError(usize);

impl ChainKey {
    pub fn new(bytes: Vec<u8>) -> Result<Self, ChainKeyError> {
        if bytes.len() < 32 {
            return Err(ChainKeyError(bytes.len()));
        }
        Ok(ChainKey(Secret::new(bytes)))
    }
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(..)")
    }
}

/// Lowercase hex of SHA-256 over `bytes`, or of HMAC-SHA256 with `key`.
fn digest(bytes: &[u8], key: Option<&ChainKey>) -> String {
    match key {
        None => hex::encode(Sha256::digest(bytes)),
        Some(key) => {
            let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key.0.expose())
                .expect("HMAC takes a key of any length");
            mac.update(bytes);
            hex::encode(mac.finalize().into_bytes())
        }
    }
}

/// The hash a tenant's first record chains from.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The financial fields of one booking record, exactly as stored.
#[derive(Debug, Clone)]
pub struct FinancialFields<'a> {
    pub tenant_id: &'a str,
    pub booking_ref: &'a str,
    pub currency: Currency,
    pub total: Decimal,
    pub deposit: Decimal,
    pub cash: Decimal,
    pub platform_fee: Decimal,
    pub deposit_rate: Decimal,
    pub fee_rate: Decimal,
    /// The keyed digest of the booking's client identity (`billing_domain::privacy`), empty when
    /// it named none; `None` for records written before client digests were chained, which keep
    /// the v1 encoding. Never the client's details themselves: erasing a client destroys their
    /// data key and leaves this, so the chain verifies after an erasure.
    pub client_digest: Option<&'a str>,
}

/// Each field length-prefixed (`len:value;`), so field boundaries cannot shift.
fn encode(fields: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    for f in fields {
        out.extend_from_slice(f.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(f.as_bytes());
        out.push(b';');
    }
    out
}

impl FinancialFields<'_> {
    /// Canonical bytes: a version tag then each field length-prefixed, amounts at the currency
    /// exponent and rates normalized, so equal values always encode identically.
    pub fn canonical(&self, prev_hash: &str) -> Vec<u8> {
        let tag = match self.client_digest {
            None => "booking-record-v1",
            Some(_) => "booking-record-v2",
        };
        let mut fields = vec![
            tag.to_string(),
            self.tenant_id.to_string(),
            self.booking_ref.to_string(),
            self.currency.code().to_string(),
            self.currency.format(self.total),
            self.currency.format(self.deposit),
            self.currency.format(self.cash),
            self.currency.format(self.platform_fee),
            self.deposit_rate.normalize().to_string(),
            self.fee_rate.normalize().to_string(),
        ];
        if let Some(digest) = self.client_digest {
            fields.push(digest.to_string());
        }
        fields.push(prev_hash.to_string());
        encode(&fields)
    }

    /// Lowercase hex SHA-256 of the canonical encoding chained to `prev_hash`.
    pub fn chained_hash(&self, prev_hash: &str) -> String {
        self.chained_hash_with(prev_hash, None)
    }

    /// The hash chained to `prev_hash`, keyed when `key` is given (see [`ChainKey`]).
    pub fn chained_hash_with(&self, prev_hash: &str, key: Option<&ChainKey>) -> String {
        digest(&self.canonical(prev_hash), key)
    }
}

/// A price revision of a recorded booking: the change (delta) and the amounts after it. It is a
/// record of its own on the tenant's chain; the original booking is never edited.
#[derive(Debug, Clone)]
pub struct RevisionFields<'a> {
    pub tenant_id: &'a str,
    pub booking_ref: &'a str,
    /// 1 for the first revision of this booking, then 2, 3, ...
    pub revision_no: i32,
    pub currency: Currency,
    pub total_delta: Decimal,
    pub deposit_delta: Decimal,
    pub cash_delta: Decimal,
    pub fee_delta: Decimal,
    pub total_after: Decimal,
    pub fee_after: Decimal,
}

impl RevisionFields<'_> {
    /// Canonical bytes, tagged so a revision can never be read as a booking record.
    pub fn canonical(&self, prev_hash: &str) -> Vec<u8> {
        let c = self.currency;
        encode(&[
            "booking-revision-v1".to_string(),
            self.tenant_id.to_string(),
            self.booking_ref.to_string(),
            self.revision_no.to_string(),
            c.code().to_string(),
            c.format(self.total_delta),
            c.format(self.deposit_delta),
            c.format(self.cash_delta),
            c.format(self.fee_delta),
            c.format(self.total_after),
            c.format(self.fee_after),
            prev_hash.to_string(),
        ])
    }

    pub fn chained_hash(&self, prev_hash: &str) -> String {
        self.chained_hash_with(prev_hash, None)
    }

    /// The hash chained to `prev_hash`, keyed when `key` is given (see [`ChainKey`]).
    pub fn chained_hash_with(&self, prev_hash: &str, key: Option<&ChainKey>) -> String {
        digest(&self.canonical(prev_hash), key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).expect("decimal")
    }

    fn fields() -> FinancialFields<'static> {
        FinancialFields {
            tenant_id: "claire",
            booking_ref: "2262",
            currency: Currency::AUD,
            total: d("150.00"),
            deposit: d("30.00"),
            cash: d("120.00"),
            platform_fee: d("30.00"),
            deposit_rate: d("0.20"),
            fee_rate: d("0.2"),
            client_digest: None,
        }
    }

    #[test]
    fn equal_values_hash_equally_whatever_their_scale() {
        let mut other = fields();
        other.total = d("150");
        other.deposit_rate = d("0.2000");
        assert_eq!(
            fields().chained_hash(GENESIS_HASH),
            other.chained_hash(GENESIS_HASH)
        );
    }

    #[test]
    fn any_changed_field_or_predecessor_changes_the_hash() {
        let base = fields().chained_hash(GENESIS_HASH);
        let mut f = fields();
        f.platform_fee = d("30.01");
        assert_ne!(f.chained_hash(GENESIS_HASH), base);
        let mut f = fields();
        f.booking_ref = "2263";
        assert_ne!(f.chained_hash(GENESIS_HASH), base);
        assert_ne!(fields().chained_hash(&base), base);
        assert_eq!(base.len(), 64);
    }

    #[test]
    fn a_revision_never_hashes_like_a_booking_and_covers_its_delta() {
        let revision = RevisionFields {
            tenant_id: "claire",
            booking_ref: "2262",
            revision_no: 1,
            currency: Currency::AUD,
            total_delta: d("-30.00"),
            deposit_delta: d("-6.00"),
            cash_delta: d("-24.00"),
            fee_delta: d("-6.00"),
            total_after: d("120.00"),
            fee_after: d("24.00"),
        };
        let hash = revision.chained_hash(GENESIS_HASH);
        assert_ne!(hash, fields().chained_hash(GENESIS_HASH));
        let mut other = revision.clone();
        other.fee_delta = d("-6.01");
        assert_ne!(other.chained_hash(GENESIS_HASH), hash);
        assert!(String::from_utf8_lossy(&revision.canonical(GENESIS_HASH)).contains("6:-30.00;"));
    }

    #[test]
    fn the_encoding_is_pinned_by_a_test_vector() {
        // SHA-256 of the canonical bytes, computed independently (Python hashlib): a change of
        // the encoding would break every stored chain, so it must fail here first.
        assert_eq!(
            fields().chained_hash(GENESIS_HASH),
            "af913fc4f9676be80f17a6941e27aa16ea53264267db9dd4fd65211215c1df80"
        );
    }

    #[test]
    fn records_with_a_client_digest_use_the_pinned_v2_encoding() {
        // Pinned like v1 (Python hashlib over the same length-prefixed fields, the digest
        // before the previous hash). v1 records keep their hash: the digest is not part of it.
        let digest = "ab".repeat(32);
        let v2 = FinancialFields {
            client_digest: Some(&digest),
            ..fields()
        };
        assert_eq!(
            v2.chained_hash(GENESIS_HASH),
            "092a08bdf272d19ba9ab4724f09b94b3a81ce20a1f4f23a372242fa9d6683bc7"
        );
        let no_client = FinancialFields {
            client_digest: Some(""),
            ..fields()
        };
        assert_eq!(
            no_client.chained_hash(GENESIS_HASH),
            "d1acdae9b4578858558255bad8dc7928155a274033ea77c1ae8b893873289740"
        );
        assert_ne!(
            no_client.chained_hash(GENESIS_HASH),
            fields().chained_hash(GENESIS_HASH)
        );
    }

    #[test]
    fn a_keyed_hash_is_hmac_sha256_and_needs_the_key() {
        let key = ChainKey::new(b"fake-chain-key-for-tests-0123456789".to_vec()).expect("key");
        let keyed = fields().chained_hash_with(GENESIS_HASH, Some(&key));
        // Pinned: HMAC-SHA256(key, canonical bytes), computed independently (Python hmac).
        assert_eq!(
            keyed,
            "94b08a77ef9f5ad4d6b007a0aacc3f097de1270c776a59e4309a839ba2138535"
        );
        assert_ne!(keyed, fields().chained_hash(GENESIS_HASH));
        let other = ChainKey::new(b"another-fake-chain-key-0123456789ab".to_vec()).expect("key");
        assert_ne!(
            fields().chained_hash_with(GENESIS_HASH, Some(&other)),
            keyed
        );
        assert!(ChainKey::new(b"short".to_vec()).is_err());
        assert_eq!(format!("{key:?}"), "ChainKey(..)");
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        let mut a = fields();
        a.tenant_id = "ab";
        a.booking_ref = "c";
        let mut b = fields();
        b.tenant_id = "a";
        b.booking_ref = "bc";
        assert_ne!(a.chained_hash(GENESIS_HASH), b.chained_hash(GENESIS_HASH));
    }
}
