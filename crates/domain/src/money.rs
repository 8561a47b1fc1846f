//! Exact money: ISO 4217 currencies, rates, and the deposit / cash / platform-fee split.
//!
//! Rules (docs/architecture.md): deposit = round_half_up(total × deposit_rate), cash = total − deposit
//! so that deposit + cash = total exactly, fee = round_half_up(total × fee_rate), all at the
//! currency's minor-unit exponent.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency code {0:?} (expected an ISO 4217 code such as AUD)")]
    UnknownCurrency(String),
    #[error("amount {0:?} is not a decimal number")]
    NotANumber(String),
    #[error("amount {0} must be greater than zero")]
    NotPositive(Decimal),
    #[error("amount {amount} has more decimal places than {currency} allows ({exponent})")]
    TooPrecise {
        amount: Decimal,
        currency: Currency,
        exponent: u32,
    },
    #[error("rate {0} must be between 0 and 1")]
    RateOutOfRange(Decimal),
}

/// An ISO 4217 currency this system bills in, with its minor-unit exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: [u8; 3],
    exponent: u32,
}

/// Currencies the platform accepts. Extend the table, never guess an exponent.
const CURRENCIES: &[(&str, u32)] = &[
    ("AUD", 2),
    ("NZD", 2),
    ("USD", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("CAD", 2),
    ("SGD", 2),
    ("CHF", 2),
    ("JPY", 0),
    ("KRW", 0),
    ("BHD", 3),
    ("KWD", 3),
];

impl Currency {
    pub const AUD: Currency = Currency {
        code: *b"AUD",
        exponent: 2,
    };

    /// Every currency the ledger knows (the migration's `currency_exponent` lists the same).
    pub fn all() -> impl Iterator<Item = Currency> {
        CURRENCIES
            .iter()
            .map(|(code, _)| code.parse().expect("every listed currency parses"))
    }

    pub fn code(&self) -> &str {
        // The code is always ASCII: it comes from the CURRENCIES table.
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// Number of digits after the decimal point in this currency's minor unit.
    pub fn exponent(&self) -> u32 {
        self.exponent
    }

    /// Round half up (away from zero) to the currency's minor unit.
    pub fn round(&self, amount: Decimal) -> Decimal {
        let mut rounded =
            amount.round_dp_with_strategy(self.exponent, RoundingStrategy::MidpointAwayFromZero);
        rounded.rescale(self.exponent);
        rounded
    }

    /// Format with exactly the currency's number of decimals, e.g. `150.00`, `1500`.
    pub fn format(&self, amount: Decimal) -> String {
        self.round(amount).to_string()
    }

    /// A positive amount expressed in this currency (no more decimals than its minor unit).
    pub fn parse_amount(&self, text: &str) -> Result<Decimal, MoneyError> {
        let amount = parse_decimal(text)?;
        self.check_amount(amount)
    }

    /// Checks that a positive amount is representable in this currency, and scales it to the
    /// currency exponent.
    pub fn check_amount(&self, amount: Decimal) -> Result<Decimal, MoneyError> {
        if amount <= Decimal::ZERO {
            return Err(MoneyError::NotPositive(amount));
        }
        if amount.normalize().scale() > self.exponent {
            return Err(MoneyError::TooPrecise {
                amount,
                currency: *self,
                exponent: self.exponent,
            });
        }
        let mut scaled = amount;
        scaled.rescale(self.exponent);
        Ok(scaled)
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        CURRENCIES
            .iter()
            .find(|(code, _)| *code == upper)
            .map(|(code, exponent)| {
                let mut bytes = [0u8; 3];
                bytes.copy_from_slice(code.as_bytes());
                Currency {
                    code: bytes,
                    exponent: *exponent,
                }
            })
            .ok_or(MoneyError::UnknownCurrency(s.to_string()))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl<'de> serde::Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses a decimal from text without ever going through a float (`"10.01"`, `"1e2"`).
pub fn parse_decimal(text: &str) -> Result<Decimal, MoneyError> {
    let t = text.trim();
    Decimal::from_str_exact(t)
        .or_else(|_| Decimal::from_scientific(t))
        .map_err(|_| MoneyError::NotANumber(text.to_string()))
}

/// A fraction between 0 and 1 inclusive, such as a deposit or platform-fee rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(Decimal);

impl Rate {
    pub fn new(value: Decimal) -> Result<Self, MoneyError> {
        if value < Decimal::ZERO || value > Decimal::ONE {
            return Err(MoneyError::RateOutOfRange(value));
        }
        Ok(Rate(value))
    }

    /// The default 20% used for both deposit and platform fee.
    pub fn twenty_percent() -> Self {
        Rate(Decimal::new(20, 2))
    }

    pub fn value(&self) -> Decimal {
        self.0
    }
}

impl<'de> serde::Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Rates are written as strings ("0.20") so that no float ever parses them.
        let s = String::deserialize(d)?;
        parse_decimal(&s)
            .and_then(Rate::new)
            .map_err(serde::de::Error::custom)
    }
}

/// How one booking's total splits into what the client pays and what the platform earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookingAmounts {
    pub total: Decimal,
    pub deposit: Decimal,
    pub cash: Decimal,
    pub platform_fee: Decimal,
}

impl BookingAmounts {
    pub fn split(
        total: Decimal,
        currency: Currency,
        deposit_rate: Rate,
        fee_rate: Rate,
    ) -> Result<Self, MoneyError> {
        let total = currency.check_amount(total)?;
        let deposit = currency.round(total * deposit_rate.value());
        let cash = total - deposit;
        let platform_fee = currency.round(total * fee_rate.value());
        Ok(BookingAmounts {
            total,
            deposit,
            cash,
            platform_fee,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).expect("test decimal")
    }

    fn split(total: &str, currency: &str) -> BookingAmounts {
        BookingAmounts::split(
            d(total),
            currency.parse().expect("currency"),
            Rate::twenty_percent(),
            Rate::twenty_percent(),
        )
        .expect("valid split")
    }

    #[test]
    fn split_table_keeps_deposit_plus_cash_equal_to_total() {
        // (total, currency, deposit, cash, fee)
        let cases = [
            ("150.00", "AUD", "30.00", "120.00", "30.00"),
            ("10.01", "AUD", "2.00", "8.01", "2.00"),
            ("0.01", "AUD", "0.00", "0.01", "0.00"),
            ("0.03", "AUD", "0.01", "0.02", "0.01"),
            ("10.03", "AUD", "2.01", "8.02", "2.01"),
            ("99.99", "AUD", "20.00", "79.99", "20.00"),
            ("12.5", "AUD", "2.50", "10.00", "2.50"),
            ("1003", "JPY", "201", "802", "201"),
            ("1", "JPY", "0", "1", "0"),
            ("13", "JPY", "3", "10", "3"),
            ("1.005", "BHD", "0.201", "0.804", "0.201"),
        ];
        for (total, cur, deposit, cash, fee) in cases {
            let a = split(total, cur);
            assert_eq!(a.deposit, d(deposit), "deposit of {total} {cur}");
            assert_eq!(a.cash, d(cash), "cash of {total} {cur}");
            assert_eq!(a.platform_fee, d(fee), "fee of {total} {cur}");
            assert_eq!(
                a.deposit + a.cash,
                a.total,
                "deposit + cash of {total} {cur}"
            );
        }
    }

    #[test]
    fn half_cent_rounds_up() {
        // 0.125 × 0.2 = 0.025 → 0.03 (half up), not banker's 0.02.
        let a = BookingAmounts::split(
            d("0.13"),
            Currency::AUD,
            Rate::new(d("0.5")).expect("rate"),
            Rate::new(d("0.5")).expect("rate"),
        )
        .expect("split");
        assert_eq!(a.deposit, d("0.07"));
        assert_eq!(a.cash, d("0.06"));
    }

    #[test]
    fn amounts_are_scaled_to_the_currency_exponent() {
        let a = split("150", "AUD");
        assert_eq!(a.total.to_string(), "150.00");
        assert_eq!(a.cash.to_string(), "120.00");
    }

    #[test]
    fn bad_amounts_are_rejected_with_a_reason() {
        let aud = Currency::AUD;
        assert_eq!(
            aud.parse_amount("0"),
            Err(MoneyError::NotPositive(Decimal::ZERO))
        );
        assert!(matches!(
            aud.parse_amount("-5.00"),
            Err(MoneyError::NotPositive(_))
        ));
        assert!(matches!(
            aud.parse_amount("abc"),
            Err(MoneyError::NotANumber(_))
        ));
        assert!(matches!(
            aud.parse_amount("10.005"),
            Err(MoneyError::TooPrecise { .. })
        ));
        assert!(matches!(
            "JPY".parse::<Currency>().expect("jpy").parse_amount("10.5"),
            Err(MoneyError::TooPrecise { .. })
        ));
        // Trailing zeros beyond the exponent are fine: 10.0100 is 10.01.
        assert_eq!(aud.parse_amount("10.0100"), Ok(d("10.01")));
        assert_eq!(aud.parse_amount("1e2"), Ok(d("100.00")));
    }

    #[test]
    fn currencies_parse_case_insensitively_and_reject_unknown_codes() {
        assert_eq!("aud".parse::<Currency>(), Ok(Currency::AUD));
        assert_eq!("JPY".parse::<Currency>().map(|c| c.exponent()), Ok(0));
        assert!(matches!(
            "XXX".parse::<Currency>(),
            Err(MoneyError::UnknownCurrency(_))
        ));
    }

    #[test]
    fn rates_outside_zero_to_one_are_rejected() {
        assert!(Rate::new(d("1.01")).is_err());
        assert!(Rate::new(d("-0.01")).is_err());
        assert!(Rate::new(d("1")).is_ok());
    }
}
