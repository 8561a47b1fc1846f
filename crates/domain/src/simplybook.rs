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
//!
//! Field mapping of the Company Administration API's `getBookings(filter)`, which lists a
//! company's bookings for reconciliation (as we understand it; check it against a live account):
//! the result is an array of booking objects, or sometimes an object keyed by booking id; from
//! each we read `id` (string or number), `hash` (the booking hash, the value callbacks carry as
//! `booking_hash`) and `start_date` (`YYYY-MM-DD HH:MM:SS`, the company's local time). Every
//! other field is ignored.

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::booking::{BookingPayload, BookingStatus, PayloadError};
use crate::callback::is_token_like;

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

/// One booking as `getBookings` lists it: enough to match it against the ledger's bookings and
/// to fetch its details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedBooking {
    /// SimplyBook's booking id, as callbacks carry it.
    pub id: String,
    /// The booking hash, as callbacks carry it (`booking_hash`).
    pub hash: String,
    /// When the session starts, `YYYY-MM-DD HH:MM:SS` in the company's local time, as listed.
    pub start: String,
}

#[derive(Deserialize)]
struct ListEntry {
    #[serde(default)]
    id: Option<Text>,
    #[serde(default)]
    hash: Option<String>,
    #[serde(default)]
    start_date: Option<String>,
}

fn listed_booking(
    entry: &RawValue,
    key: Option<&str>,
    at: &str,
) -> Result<ListedBooking, PayloadError> {
    let malformed = |what: String| PayloadError::Malformed(format!("booking list {at}: {what}"));
    let e: ListEntry = serde_json::from_str(entry.get()).map_err(|e| malformed(e.to_string()))?;
    let id = match (e.id.map(Text::into_string), key) {
        (Some(id), Some(key)) if id != key => {
            return Err(malformed(format!("is keyed {key:?} but has id {id:?}")));
        }
        (Some(id), _) => id,
        (None, Some(key)) => key.to_string(),
        (None, None) => return Err(malformed("missing id".into())),
    };
    if !is_token_like(&id) {
        return Err(malformed(format!(
            "id {id:?} is not 1-64 letters or digits"
        )));
    }
    let hash = e
        .hash
        .ok_or_else(|| malformed(format!("booking {id} has no hash")))?;
    if !is_token_like(&hash) {
        return Err(malformed(format!(
            "booking {id} has a hash that is not 1-64 letters or digits"
        )));
    }
    let start = e
        .start_date
        .ok_or_else(|| malformed(format!("booking {id} has no start_date")))?;
    Ok(ListedBooking { id, hash, start })
}

/// Turns a `getBookings` result (an array of bookings, or an object keyed by booking id) into
/// the bookings it lists, validating ids and hashes as callbacks are validated. The error names
/// the entry and what is wrong with it.
pub fn parse_booking_list(result: &RawValue) -> Result<Vec<ListedBooking>, PayloadError> {
    let malformed = |e: serde_json::Error| PayloadError::Malformed(format!("booking list: {e}"));
    // By the first character rather than an untagged enum: serde cannot buffer a `RawValue`.
    match result.get().trim_start().chars().next() {
        Some('[') => serde_json::from_str::<Vec<Box<RawValue>>>(result.get())
            .map_err(malformed)?
            .iter()
            .enumerate()
            .map(|(i, entry)| listed_booking(entry, None, &format!("entry {i}")))
            .collect(),
        // Keyed by booking id: PHP encodes an array whose keys are not 0, 1, … as an object.
        Some('{') => serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(result.get())
            .map_err(malformed)?
            .iter()
            .map(|(key, entry)| listed_booking(entry, Some(key), &format!("entry {key:?}")))
            .collect(),
        _ => Err(PayloadError::Malformed(
            "booking list is neither an array nor an object keyed by booking id".into(),
        )),
    }
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

    #[test]
    fn a_booking_list_array_gives_id_hash_and_start_and_ignores_other_fields() {
        let list = raw(r#"[{"id":"2262","hash":"514ccafaa45aa779ff50e4642c37ba5d",
                 "start_date":"2026-10-14 10:00:00","end_date":"2026-10-14 11:00:00",
                 "is_confirm":"1","event":"Massage 60","client":"Test Client"},
                {"id":"2263","hash":"b1","start_date":"2026-10-15 09:30:00"}]"#);
        let listed = parse_booking_list(&list).expect("list");
        assert_eq!(
            listed,
            vec![
                ListedBooking {
                    id: "2262".into(),
                    hash: "514ccafaa45aa779ff50e4642c37ba5d".into(),
                    start: "2026-10-14 10:00:00".into(),
                },
                ListedBooking {
                    id: "2263".into(),
                    hash: "b1".into(),
                    start: "2026-10-15 09:30:00".into(),
                },
            ]
        );
        assert_eq!(parse_booking_list(&raw("[]")).expect("empty"), vec![]);
    }

    #[test]
    fn a_booking_list_keyed_by_id_is_accepted() {
        let list = raw(
            r#"{"2262":{"id":"2262","hash":"a1","start_date":"2026-10-14 10:00:00"},
                "2263":{"hash":"b1","start_date":"2026-10-15 09:30:00"}}"#,
        );
        let listed = parse_booking_list(&list).expect("list");
        let ids: Vec<_> = listed.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["2262", "2263"]);
        assert_eq!(listed[1].hash, "b1");
        assert_eq!(parse_booking_list(&raw("{}")).expect("empty"), vec![]);
    }

    #[test]
    fn numeric_booking_ids_are_read_as_text() {
        let list = raw(r#"[{"id":2262,"hash":"a1","start_date":"2026-10-14 10:00:00"}]"#);
        assert_eq!(parse_booking_list(&list).expect("list")[0].id, "2262");
    }

    #[test]
    fn bad_booking_lists_are_refused_naming_what_is_wrong() {
        let cases = [
            (
                r#"[{"id":"1","start_date":"2026-10-14 10:00:00"}]"#,
                "booking 1 has no hash",
            ),
            (
                r#"[{"id":"1","hash":"a/../b","start_date":"2026-10-14 10:00:00"}]"#,
                "booking 1 has a hash that is not",
            ),
            (
                r#"[{"id":"1","hash":"","start_date":"2026-10-14 10:00:00"}]"#,
                "booking 1 has a hash that is not",
            ),
            (
                r#"[{"id":"22 62","hash":"a1","start_date":"2026-10-14 10:00:00"}]"#,
                r#"entry 0: id "22 62" is not 1-64 letters or digits"#,
            ),
            (
                r#"[{"id":1.5,"hash":"a1","start_date":"2026-10-14 10:00:00"}]"#,
                "entry 0",
            ),
            (
                r#"[{"hash":"a1","start_date":"2026-10-14 10:00:00"}]"#,
                "entry 0: missing id",
            ),
            (r#"[{"id":"1","hash":"a1"}]"#, "booking 1 has no start_date"),
            (
                r#"{"7":{"id":"8","hash":"a1","start_date":"2026-10-14 10:00:00"}}"#,
                r#"entry "7": is keyed "7" but has id "8""#,
            ),
            ("null", "neither an array nor an object"),
            (r#""none""#, "neither an array nor an object"),
            ("[1]", "entry 0"),
        ];
        for (list, expected) in cases {
            let err = parse_booking_list(&raw(list)).expect_err(list).to_string();
            assert!(err.contains(expected), "{list}: {err}");
        }
    }
}
