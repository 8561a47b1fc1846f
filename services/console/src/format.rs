//! How the pages show money and time: amounts with their currency at its minor unit (parsed
//! from the services' decimal strings, never floats), instants in the tenant's zone.

use billing_domain::Currency;
use billing_proto::Money;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

/// `AUD 1234.50`-style text for a service's `Money`; empty when it is missing, the amount as
/// sent when its currency is unknown.
pub fn money(m: Option<&Money>) -> String {
    let Some(m) = m else {
        return String::new();
    };
    let amount: Option<Decimal> = m.amount.parse().ok();
    match (m.currency_code.parse::<Currency>(), amount) {
        (Ok(currency), Some(amount)) => format!("{} {}", currency.code(), currency.format(amount)),
        _ => format!("{} {}", m.currency_code, m.amount),
    }
}

/// The amount of `m`, for sorting.
pub fn amount(m: Option<&Money>) -> Decimal {
    m.and_then(|m| m.amount.parse().ok()).unwrap_or_default()
}

/// A zone name as the services send it; Australia/Sydney (the services' default) when empty or
/// unknown.
pub fn zone(name: &str) -> Tz {
    name.parse().unwrap_or(chrono_tz::Australia::Sydney)
}

/// `2026-09-03 14:05 AEST`: an instant in `tz`.
pub fn local(t: Option<&prost_types::Timestamp>, tz: Tz) -> String {
    billing_proto::convert::datetime(t)
        .map(|t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_show_with_their_currency_and_times_in_the_zone() {
        let aud = Money {
            currency_code: "AUD".into(),
            amount: "30.1".into(),
        };
        assert_eq!(money(Some(&aud)), "AUD 30.10");
        let jpy = Money {
            currency_code: "JPY".into(),
            amount: "1200".into(),
        };
        assert_eq!(money(Some(&jpy)), "JPY 1200");
        assert_eq!(money(None), "");
        assert_eq!(amount(Some(&aud)), Decimal::new(301, 1));
        let t = prost_types::Timestamp {
            seconds: 1_788_400_000,
            nanos: 0,
        };
        let sydney = local(Some(&t), zone("Australia/Sydney"));
        let tokyo = local(Some(&t), zone("Asia/Tokyo"));
        assert_ne!(sydney, tokyo);
        assert!(tokyo.ends_with("JST"), "{tokyo}");
        assert_eq!(zone("Not/AZone"), chrono_tz::Australia::Sydney);
    }
}
