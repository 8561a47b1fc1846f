//! Conversions between wire types (Timestamp, Money) and chrono / rust_decimal.

use chrono::{DateTime, Utc};
pub use prost_types::Timestamp;
use rust_decimal::Decimal;

use crate::Money;

pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// `None` when the timestamp is missing or out of range.
pub fn datetime(t: Option<&Timestamp>) -> Option<DateTime<Utc>> {
    let t = t?.normalized();
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

/// `amount` must already be at the currency's exponent (e.g. from `Currency::format`).
pub fn money(currency_code: &str, amount: String) -> Money {
    Money {
        currency_code: currency_code.to_string(),
        amount,
    }
}

/// The decimal amount of a wire `Money`; `None` when missing or not a decimal.
pub fn amount(m: Option<&Money>) -> Option<Decimal> {
    Decimal::from_str_exact(&m?.amount).ok()
}
