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

impl FinancialFields<'_> {
    /// Canonical bytes: a version tag then each field length-prefixed, amounts at the currency
    /// exponent and rates normalized, so equal values always encode identically.
    pub fn canonical(&self, prev_hash: &str) -> Vec<u8> {
        let fields = [
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
        ];
        let mut out = Vec::with_capacity(256);
        for f in fields {
            out.extend_from_slice(f.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(f.as_bytes());
            out.push(b';');
        }
        out
    }

    /// Lowercase hex SHA-256 of the canonical encoding chained to `prev_hash`.
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
