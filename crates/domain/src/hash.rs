//! Tamper evidence for financial records: SHA-256 over a canonical, unambiguous encoding of a
//! record's financial fields and the previous record's hash in the tenant's chain.

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::money::Currency;

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
        encode(&[
            "booking-record-v1".to_string(),
            self.tenant_id.to_string(),
            self.booking_ref.to_string(),
            self.currency.code().to_string(),
            self.currency.format(self.total),
            self.currency.format(self.deposit),
            self.currency.format(self.cash),
            self.currency.format(self.platform_fee),
            self.deposit_rate.normalize().to_string(),
            self.fee_rate.normalize().to_string(),
            prev_hash.to_string(),
        ])
    }

    /// Lowercase hex SHA-256 of the canonical encoding chained to `prev_hash`.
    pub fn chained_hash(&self, prev_hash: &str) -> String {
        hex::encode(Sha256::digest(self.canonical(prev_hash)))
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
        hex::encode(Sha256::digest(self.canonical(prev_hash)))
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
