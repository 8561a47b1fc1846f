//! SimplyBook.me's JSON-RPC API as the ledger uses it to confirm a callback: the request
//! signature and the booking details, turned into the same [`BookingPayload`] a signed forwarder
//! sends, so both paths share one set of money and time rules.
//!
//! Field mapping of `getBookingDetails` (check it against a live account before relying on a
//! field not listed here): `id`, `start_date_time` (`YYYY-MM-DD HH:MM:SS`, the company's local
//! time), `event_id`/`event_name` (service), `unit_name` (provider), `client_name`,
//! `client_email`, `client_phone`, `price` (string or number, parsed exactly), optional
//! `currency`, and the state: `status` when present (`confirmed`, `canceled`/`cancelled`,
//! `completed`, `no_show`), otherwise `is_confirmed` (`"1"` confirmed, `"0"` cancelled).

use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::booking::{BookingPayload, BookingStatus, PayloadError};

/// `getBookingDetails`' `sign` parameter: `md5(booking_id + booking_hash + secret_key)`, hex.
pub fn booking_sign(booking_id: &str, booking_hash: &str, secret_key: &str) -> String {
    let mut md5 = Md5::new();
    md5.update(booking_id.as_bytes());
    md5.update(booking_hash.as_bytes());
    md5.update(secret_key.as_bytes());
    hex::encode(md5.finalize())
}

/// SimplyBook sends ids and flags as strings or numbers, depending on the field and version.
#[derive(Deserialize)]
#[serde(untagged)]
enum Text {
    S(String),
    N(i64),
}

impl Text {
    fn into_string(self) -> String {
        match self {
            Text::S(s) => s,
            Text::N(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
struct Details {
    id: Text,
    start_date_time: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    is_confirmed: Option<Text>,
    #[serde(default)]
    event_id: Option<Text>,
    event_name: String,
    #[serde(default)]
    event_duration: Option<Text>,
    #[serde(default)]
    unit_name: Option<String>,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    client_email: Option<String>,
    #[serde(default)]
    client_phone: Option<String>,
    price: Box<RawValue>,
    #[serde(default)]
    currency: Option<String>,
}

fn status_of(
    status: Option<&str>,
    is_confirmed: Option<&str>,
) -> Result<BookingStatus, PayloadError> {
    match (status, is_confirmed) {
        (Some("confirmed"), _) => Ok(BookingStatus::Confirmed),
        (Some("canceled" | "cancelled"), _) => Ok(BookingStatus::Cancelled),
        (Some("completed"), _) => Ok(BookingStatus::Completed),
        (Some("no_show"), _) => Ok(BookingStatus::NoShow),
        (Some(other), _) => Err(PayloadError::Malformed(format!(
            "unknown booking status {other:?}"
        ))),
        (None, Some("1")) => Ok(BookingStatus::Confirmed),
        (None, Some("0")) => Ok(BookingStatus::Cancelled),
        (None, _) => Err(PayloadError::Malformed(
            "booking details carry neither status nor is_confirmed".into(),
        )),
    }
}

/// Turns a `getBookingDetails` result into a booking payload. `booking_hash` is the callback's
/// (the details do not repeat it).
pub fn details_to_payload(
    result: &RawValue,
    booking_hash: &str,
) -> Result<BookingPayload, PayloadError> {
    let d: Details =
        serde_json::from_str(result.get()).map_err(|e| PayloadError::Malformed(e.to_string()))?;
    let is_confirmed = d.is_confirmed.map(Text::into_string);
    let status = status_of(d.status.as_deref(), is_confirmed.as_deref())?;
    let wire = serde_json::json!({
        "booking_id": d.id.into_string(),
        "booking_hash": booking_hash,
        "status": status.as_str(),
        "datetime": d.start_date_time,
        "currency": d.currency,
        "service": {
            "id": d.event_id.map(Text::into_string),
            "name": d.event_name,
            "duration": d.event_duration.and_then(|t| t.into_string().parse::<u32>().ok()),
        },
        "provider": {"name": d.unit_name},
        "client": {"name": d.client_name, "email": d.client_email, "phone": d.client_phone},
    });
    // Through the one payload parser, with the price's exact JSON text spliced in (a JSON tree
    // would turn a numeric price into a float).
    let mut text = wire.to_string();
    text.pop();
    text.push_str(&format!(r#","price":{}}}"#, d.price.get()));
    BookingPayload::parse(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).expect("json")
    }

    #[test]
    fn sign_is_md5_of_id_hash_and_secret() {
        // md5("1" + "abc" + "secret") computed independently (Python hashlib).
        assert_eq!(
            booking_sign("1", "abc", "secret"),
            "b3aa6c13af81cef54aaa19b8131bc41a"
        );
    }

    #[test]
    fn details_become_a_payload_with_the_exact_price_and_state() {
        let details = raw(
            r#"{"id":"2262","code":"x7","start_date_time":"2026-10-14 10:00:00",
                "end_date_time":"2026-10-14 11:00:00","is_confirmed":"1","event_id":"7",
                "event_name":"Massage 60","event_duration":"60","unit_name":"Claire",
                "client_name":"Test Client","client_email":"c@example.test","price":"10.01"}"#,
        );
        let p = details_to_payload(&details, "514c").expect("payload");
        assert_eq!(p.booking_id, "2262");
        assert_eq!(p.booking_hash.as_deref(), Some("514c"));
        assert_eq!(p.price, Decimal::new(1001, 2));
        assert_eq!(p.status, BookingStatus::Confirmed);
        assert_eq!(p.service.name, "Massage 60");
        assert_eq!(p.service.duration, Some(60));
        let numeric = raw(
            r#"{"id":2262,"start_date_time":"2026-10-14 10:00:00","status":"canceled",
                "event_name":"Massage","price":150.10}"#,
        );
        let p = details_to_payload(&numeric, "h").expect("payload");
        assert_eq!(p.status, BookingStatus::Cancelled);
        assert_eq!(p.price.to_string(), "150.10");
    }

    #[test]
    fn details_without_state_or_price_are_refused() {
        let no_state = raw(
            r#"{"id":"1","start_date_time":"2026-10-14 10:00:00","event_name":"M","price":"1"}"#,
        );
        assert!(details_to_payload(&no_state, "h").is_err());
        let bad_price = raw(
            r#"{"id":"1","start_date_time":"2026-10-14 10:00:00","event_name":"M",
                "is_confirmed":"1","price":"ten"}"#,
        );
        assert!(matches!(
            details_to_payload(&bad_price, "h"),
            Err(PayloadError::Price(_))
        ));
    }
}
