//! `getBookingDetails`: the `sign` its request carries and its answer read as SimplyBook sends
//! it (what a booking is worth and what state it is in are decided in `resolve`).

use md5::{Digest, Md5};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::wire::{Text, amount, flag, plugin};
use crate::booking::{ClientInfo, PayloadError};

/// `getBookingDetails`' `sign` parameter: `md5(booking_id + booking_hash + secret_key)`, hex.
pub fn booking_sign(booking_id: &str, booking_hash: &str, secret_key: &str) -> String {
    let mut md5 = Md5::new();
    md5.update(booking_id.as_bytes());
    md5.update(booking_hash.as_bytes());
    md5.update(secret_key.as_bytes());
    hex::encode(md5.finalize())
}

#[derive(Deserialize)]
struct DetailsWire {
    id: Text,
    #[serde(default)]
    code: Option<Text>,
    start_date_time: String,
    #[serde(default)]
    end_date_time: Option<String>,
    #[serde(default)]
    is_confirmed: Option<Text>,
    #[serde(default)]
    approve_status: Option<String>,
    #[serde(default)]
    event_id: Option<Text>,
    #[serde(default)]
    event_name: Option<String>,
    #[serde(default)]
    unit_name: Option<String>,
    #[serde(default)]
    client_id: Option<Text>,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    client_email: Option<String>,
    #[serde(default)]
    client_phone: Option<String>,
    #[serde(default)]
    status: Option<Box<RawValue>>,
    #[serde(default)]
    price: Option<Box<RawValue>>,
    #[serde(default)]
    promo: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct StatusWire {
    name: String,
    #[serde(default)]
    is_default: Option<Text>,
}

#[derive(Deserialize)]
struct PriceWire {
    amount: Box<RawValue>,
    #[serde(default)]
    currency: Option<String>,
}

#[derive(Deserialize)]
struct PromoWire {
    #[serde(default)]
    code: Option<Text>,
}

/// The label SimplyBook's Status feature shows for a booking: the company's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLabel {
    pub name: String,
    /// The company's default status (what every new booking shows until someone changes it).
    pub is_default: bool,
}

/// `getBookingDetails`' answer, read as SimplyBook sends it.
#[derive(Debug, Clone)]
pub struct BookingDetails {
    pub id: String,
    /// The booking code clients see (e.g. `x7k2m`).
    pub code: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS`, the company's local time.
    pub start: String,
    pub end: Option<String>,
    /// `is_confirmed`: `Some(false)` for a cancelled booking, or one awaiting approval.
    pub is_confirmed: Option<bool>,
    /// The Approve-booking feature's `new | approved | canceled`.
    pub approve_status: Option<String>,
    pub event_id: Option<String>,
    pub event_name: Option<String>,
    pub unit_name: Option<String>,
    pub client: ClientInfo,
    pub status_label: Option<StatusLabel>,
    /// The payments feature's price: the amount charged and its currency.
    pub price: Option<(Decimal, Option<String>)>,
    /// The promotion feature's code, when one applies (the amount is then not the service's).
    pub promo: Option<String>,
}

impl BookingDetails {
    pub fn parse(result: &RawValue) -> Result<BookingDetails, PayloadError> {
        let d: DetailsWire = serde_json::from_str(result.get())
            .map_err(|e| PayloadError::Malformed(format!("booking details: {e}")))?;
        let status: Option<StatusWire> = plugin("status", d.status.as_deref())?;
        let price: Option<PriceWire> = plugin("price", d.price.as_deref())?;
        let promo: Option<PromoWire> = plugin("promo", d.promo.as_deref())?;
        let price = match price {
            Some(p) => Some((amount("price.amount", &p.amount)?, p.currency)),
            None => None,
        };
        Ok(BookingDetails {
            id: d.id.into_string(),
            code: d.code.map(Text::into_string),
            start: d.start_date_time,
            end: d.end_date_time,
            is_confirmed: d.is_confirmed.map(flag).transpose()?,
            approve_status: d.approve_status.filter(|s| !s.is_empty()),
            event_id: d.event_id.map(Text::into_string),
            event_name: d.event_name,
            unit_name: d.unit_name,
            client: ClientInfo {
                name: d.client_name,
                email: d.client_email,
                phone: d.client_phone,
                client_id: d.client_id.map(Text::into_string),
            },
            status_label: status.map(|s| StatusLabel {
                name: s.name,
                is_default: s.is_default.is_some_and(|t| flag(t).unwrap_or(false)),
            }),
            price,
            promo: promo.map(|p| p.code.map(Text::into_string).unwrap_or_default()),
        })
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::simplybook::testing::{fixture, raw};

    #[test]
    fn sign_is_md5_of_id_hash_and_secret() {
        // md5("1" + "abc" + "secret") computed independently (Python hashlib).
        assert_eq!(
            booking_sign("1", "abc", "secret"),
            "b3aa6c13af81cef54aaa19b8131bc41a"
        );
    }

    #[test]
    fn plugin_members_are_objects_or_empty_and_nothing_else() {
        let base = fixture!("details/confirmed_plain");
        for empty in ["null", "[]", "[ ]"] {
            let text = base.replace("\"status\": []", &format!("\"status\": {empty}"));
            assert!(
                BookingDetails::parse(&raw(&text))
                    .expect(empty)
                    .status_label
                    .is_none()
            );
        }
        let odd = base.replace("\"price\": []", "\"price\": [1]");
        let err = BookingDetails::parse(&raw(&odd)).expect_err("a non-empty array");
        assert!(
            err.to_string()
                .contains("price is neither an object nor []"),
            "{err}"
        );
        let bad_amount =
            fixture!("details/confirmed_paid_price_object").replace("\"150.0000\"", "\"ten\"");
        assert!(matches!(
            BookingDetails::parse(&raw(&bad_amount)),
            Err(PayloadError::Price(_))
        ));
        let numeric = base
            .replace("\"id\": \"2262\"", "\"id\": 2262")
            .replace("\"is_confirmed\": \"1\"", "\"is_confirmed\": 1");
        let d = BookingDetails::parse(&raw(&numeric)).expect("numbers for strings");
        assert_eq!((d.id.as_str(), d.is_confirmed), ("2262", Some(true)));
    }
}
