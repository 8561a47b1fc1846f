//! The booking payload a signed forwarder sends with the details inline (the seed's shape),
//! parsed without floats and validated into typed fields.
//!
//! The session start is RFC 3339, or SimplyBook's company-local `YYYY-MM-DD HH:MM:SS` read in the
//! tenant's zone by [`crate::local_time::resolve`]: a time inside a daylight-saving gap moves
//! forward by the length of the gap (Sydney's `2026-10-04 02:30:00` is 02:30 +10, the instant
//! the clock showed as 03:30 +11), and a time inside an overlap is its first occurrence, with
//! the earlier offset (Sydney's `2026-04-05 02:30:00` is 02:30 +11).

use std::borrow::Cow;

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::money::{MoneyError, parse_decimal};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    /// Awaiting the company's approval (SimplyBook's Approve-booking feature): recorded, neither
    /// billed nor cancelled.
    Pending,
    Confirmed,
    Cancelled,
    Completed,
    NoShow,
}

impl BookingStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            BookingStatus::Pending => "pending",
            BookingStatus::Confirmed => "confirmed",
            BookingStatus::Cancelled => "cancelled",
            BookingStatus::Completed => "completed",
            BookingStatus::NoShow => "no_show",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            BookingStatus::Pending,
            BookingStatus::Confirmed,
            BookingStatus::Cancelled,
            BookingStatus::Completed,
            BookingStatus::NoShow,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// Whether a booking in this status is billed in its month.
    pub fn is_billable(&self) -> bool {
        matches!(self, BookingStatus::Confirmed | BookingStatus::Completed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("body is not a valid booking payload: {0}")]
    Malformed(String),
    #[error("price: {0}")]
    Price(#[from] MoneyError),
    #[error("datetime {0:?} is neither RFC 3339 nor YYYY-MM-DD HH:MM:SS")]
    SessionTime(String),
    /// A well-formed local time that names no instant in the zone; with every real zone, only a
    /// date at the edge of chrono's range (hundreds of thousands of years away) gets here.
    #[error("datetime {0:?} names no instant in time zone {1}")]
    NoSuchLocalTime(String, Tz),
}

#[derive(Debug, Clone)]
pub struct ServiceInfo {
    pub id: Option<String>,
    pub name: String,
    pub duration: Option<u32>,
}

/// A booking's client as the event names them: personal data, so `Debug` never prints it (see
/// [`crate::privacy`] for how it is stored).
#[derive(Clone, Default)]
pub struct ClientInfo {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// SimplyBook's id of the client, when the event came from SimplyBook's API.
    pub client_id: Option<String>,
}

impl std::fmt::Debug for ClientInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientInfo([personal data])")
    }
}

#[derive(Debug, Clone)]
pub struct ProviderInfo {
    pub name: Option<String>,
}

/// The payload as sent, its strings borrowed from the body (copied only when they hold escapes):
/// reading it is the whole shape check, so ingest can check a body on its request path without
/// building the [`BookingPayload`] it never uses. [`BookingPayload::parse`] reads the same shape,
/// so both accept and refuse the same bodies with the same reasons.
#[derive(Deserialize)]
#[serde(expecting = "a booking object")]
struct Wire<'a> {
    #[serde(borrow)]
    booking_id: Text<'a>,
    #[serde(default, borrow)]
    booking_hash: Option<Text<'a>>,
    #[serde(default)]
    status: Option<BookingStatus>,
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(default, borrow)]
    currency: Option<Text<'a>>,
    #[serde(borrow)]
    datetime: Text<'a>,
    #[serde(borrow)]
    service: WireService<'a>,
    #[serde(default, borrow)]
    client: Option<WireClient<'a>>,
    #[serde(default, borrow)]
    provider: Option<WireProvider<'a>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a service object")]
struct WireService<'a> {
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(borrow)]
    name: Text<'a>,
    #[serde(default)]
    duration: Option<u32>,
}

#[derive(Deserialize)]
#[serde(expecting = "a client object")]
struct WireClient<'a> {
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    email: Option<Text<'a>>,
    #[serde(default, borrow)]
    phone: Option<Text<'a>>,
    #[serde(default, borrow)]
    client_id: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a provider object")]
struct WireProvider<'a> {
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
}

/// A JSON string, borrowed from the body unless it holds escapes. serde borrows a `Cow<str>`
/// field only when it is one directly, never inside an `Option`, hence this type.
struct Text<'a>(Cow<'a, str>);

impl<'a> Text<'a> {
    fn owned(self) -> String {
        self.0.into_owned()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text<'de>;
            // The words serde's own `String` uses, so a refusal reads the same.
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl<'a> Wire<'a> {
    fn read(body: &'a [u8]) -> Result<Self, PayloadError> {
        let wire: Wire<'a> =
            serde_json::from_slice(body).map_err(|e| PayloadError::Malformed(e.to_string()))?;
        if wire.booking_id.0.trim().is_empty() || wire.booking_id.0.len() > 100 {
            return Err(PayloadError::Malformed(
                "booking_id must be 1-100 characters".into(),
            ));
        }
        Ok(wire)
    }
}

/// A booking with its details inline, as a signed forwarder sends it.
#[derive(Debug, Clone)]
pub struct BookingPayload {
    pub booking_id: String,
    pub booking_hash: Option<String>,
    pub status: BookingStatus,
    /// The total as sent; the ledger checks it against the tenant's currency.
    pub price: Decimal,
    pub currency: Option<String>,
    pub datetime: String,
    pub service: ServiceInfo,
    pub client: Option<ClientInfo>,
    pub provider: Option<ProviderInfo>,
}

impl BookingPayload {
    pub fn parse(body: &[u8]) -> Result<Self, PayloadError> {
        let wire = Wire::read(body)?;
        let owned = |t: Option<Text<'_>>| t.map(Text::owned);
        Ok(BookingPayload {
            price: parse_price(wire.price.get())?,
            booking_id: wire.booking_id.owned(),
            booking_hash: owned(wire.booking_hash),
            status: wire.status.unwrap_or(BookingStatus::Confirmed),
            currency: owned(wire.currency),
            datetime: wire.datetime.owned(),
            service: ServiceInfo {
                id: owned(wire.service.id),
                name: wire.service.name.owned(),
                duration: wire.service.duration,
            },
            client: wire.client.map(|c| ClientInfo {
                name: owned(c.name),
                email: owned(c.email),
                phone: owned(c.phone),
                client_id: owned(c.client_id),
            }),
            provider: wire.provider.map(|p| ProviderInfo {
                name: owned(p.name),
            }),
        })
    }

    /// Whether `body` has the payload's shape: the [`PayloadError::Malformed`] that
    /// [`BookingPayload::parse`] would return, without building the payload. The price is not
    /// read: an amount that is not one is the ledger's to refuse and audit.
    pub fn check_shape(body: &[u8]) -> Result<(), PayloadError> {
        Wire::read(body).map(drop)
    }

    /// The session start. A time without an offset (SimplyBook's `YYYY-MM-DD HH:MM:SS`) is the
    /// tenant's local time: one in a daylight-saving gap moves forward by the length of the gap,
    /// one in an overlap is the first occurrence (see [`crate::local_time::resolve`]).
    pub fn session_at(&self, tz: Tz) -> Result<DateTime<Utc>, PayloadError> {
        if let Ok(t) = DateTime::parse_from_rfc3339(&self.datetime) {
            return Ok(t.with_timezone(&Utc));
        }
        let naive = NaiveDateTime::parse_from_str(&self.datetime, "%Y-%m-%d %H:%M:%S")
            .map_err(|_| PayloadError::SessionTime(self.datetime.clone()))?;
        crate::local_time::resolve(naive, tz)
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| PayloadError::NoSuchLocalTime(self.datetime.clone(), tz))
    }
}

/// A price is a JSON string or number; either way its exact text is parsed, never a float.
fn parse_price(raw: &str) -> Result<Decimal, PayloadError> {
    let text = if raw.starts_with('"') {
        serde_json::from_str::<String>(raw).map_err(|e| PayloadError::Malformed(e.to_string()))?
    } else {
        raw.to_string()
    };
    Ok(parse_decimal(&text)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::SecondsFormat;

    fn body(price: &str, datetime: &str) -> Vec<u8> {
        format!(
            r#"{{"booking_id":"2262","booking_hash":"abc","price":{price},"datetime":"{datetime}",
               "service":{{"id":"7","name":"Massage 60 min","duration":60}},
               "client":{{"name":"Test Client","email":"client@example.test"}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn prices_parse_exactly_from_strings_and_numbers() {
        let p = BookingPayload::parse(&body("\"10.01\"", "2026-10-14T10:00:00+11:00"))
            .expect("payload");
        assert_eq!(p.price, Decimal::new(1001, 2));
        assert_eq!(p.status, BookingStatus::Confirmed);
        // 0.1 + 0.2 style values stay exact when sent as JSON numbers.
        let p =
            BookingPayload::parse(&body("150.10", "2026-10-14T10:00:00+11:00")).expect("payload");
        assert_eq!(p.price.to_string(), "150.10");
    }

    #[test]
    fn bad_prices_and_shapes_are_rejected_with_a_reason() {
        assert!(matches!(
            BookingPayload::parse(&body("\"ten\"", "2026-10-14T10:00:00Z")),
            Err(PayloadError::Price(MoneyError::NotANumber(_)))
        ));
        assert!(matches!(
            BookingPayload::parse(&body("null", "2026-10-14T10:00:00Z")),
            Err(PayloadError::Price(_))
        ));
        assert!(matches!(
            BookingPayload::parse(b"{\"booking_id\":\"1\"}"),
            Err(PayloadError::Malformed(_))
        ));
        assert!(matches!(
            BookingPayload::parse(b"not json"),
            Err(PayloadError::Malformed(_))
        ));
    }

    #[test]
    fn the_shape_check_refuses_what_parse_refuses_with_the_same_reason_and_reads_no_price() {
        let full = |client: &str| {
            format!(
                r#"{{"booking_id":"2262","price":"ten","datetime":"2026-10-14 10:00:00",
                   "service":{{"name":"Massage"}},"client":{client}}}"#
            )
            .into_bytes()
        };
        // A price that is no amount passes the shape check; parse refuses it.
        let body = full(r#"{"name":"A"}"#);
        assert_eq!(BookingPayload::check_shape(&body), Ok(()));
        assert!(matches!(
            BookingPayload::parse(&body),
            Err(PayloadError::Price(_))
        ));
        for (body, reason) in [
            (full(r#"{"name":5}"#), "invalid type: integer `5`, expected a string"),
            (full(r#""x""#), "expected a client object"),
            (
                b"{\"booking_id\":\" \",\"price\":1,\"datetime\":\"x\",\"service\":{\"name\":\"s\"}}"
                    .to_vec(),
                "booking_id must be 1-100 characters",
            ),
            (b"{\"booking_id\":\"1\"}".to_vec(), "missing field `price`"),
        ] {
            let shape = BookingPayload::check_shape(&body).expect_err(reason);
            let parsed = BookingPayload::parse(&body).expect_err(reason);
            assert_eq!(shape, parsed);
            assert!(shape.to_string().contains(reason), "{shape}");
        }
    }

    #[test]
    fn strings_with_escapes_are_read_whole() {
        let body = br#"{"booking_id":"22\"62","price":1,"datetime":"2026-10-14 10:00:00",
                        "service":{"id":null,"name":"Massage \u00e0 60"},
                        "client":{"name":"Zo\u00eb","email":null},"provider":null}"#;
        assert_eq!(BookingPayload::check_shape(body), Ok(()));
        let p = BookingPayload::parse(body).expect("payload");
        assert_eq!(p.booking_id, "22\"62");
        assert_eq!(p.service.name, "Massage \u{e0} 60");
        assert_eq!(p.service.id, None);
        let client = p.client.expect("client");
        assert_eq!(client.name.as_deref(), Some("Zo\u{eb}"));
        assert_eq!(client.email, None);
        assert!(p.provider.is_none());
    }

    #[test]
    fn local_session_times_use_the_tenant_zone() {
        let p = BookingPayload::parse(&body("100", "2026-10-31 23:30:00")).expect("payload");
        let at = p.session_at(chrono_tz::Australia::Sydney).expect("time");
        assert_eq!(at.to_rfc3339(), "2026-10-31T12:30:00+00:00");
        let p = BookingPayload::parse(&body("100", "31/10/2026")).expect("payload");
        assert!(p.session_at(chrono_tz::Australia::Sydney).is_err());
    }

    #[test]
    fn local_times_in_daylight_saving_gaps_and_overlaps_are_kept() {
        use chrono_tz::America::New_York;
        use chrono_tz::Australia::Sydney;
        for (tz, local, utc) in [
            (Sydney, "2026-10-14 10:00:00", "2026-10-13T23:00:00Z"),
            // The gap (02:00 +10 → 03:00 +11): forward by its length, 02:30 +10 = 03:30 +11.
            (Sydney, "2026-10-04 02:00:00", "2026-10-03T16:00:00Z"),
            (Sydney, "2026-10-04 02:30:00", "2026-10-03T16:30:00Z"),
            (Sydney, "2026-10-04 02:59:59", "2026-10-03T16:59:59Z"),
            (Sydney, "2026-10-04 03:00:00", "2026-10-03T16:00:00Z"),
            // The overlap (03:00 +11 → 02:00 +10): the first occurrence, +11.
            (Sydney, "2026-04-05 02:30:00", "2026-04-04T15:30:00Z"),
            (New_York, "2026-03-08 02:30:00", "2026-03-08T07:30:00Z"),
            (New_York, "2026-11-01 01:30:00", "2026-11-01T05:30:00Z"),
            (New_York, "2026-07-01 09:00:00", "2026-07-01T13:00:00Z"),
        ] {
            let p = BookingPayload::parse(&body("100", local)).expect("payload");
            let at = p
                .session_at(tz)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
            assert_eq!(at.as_deref(), Ok(utc), "{tz} {local}");
        }
    }

    #[test]
    fn only_unreadable_session_times_are_refused_and_the_reason_says_which_form_is_wanted() {
        for text in [
            "31/10/2026",
            "2026-10-04 02:30",
            "2026-02-30 10:00:00",
            "2026-10-04 24:00:00",
        ] {
            let p = BookingPayload::parse(&body("100", text)).expect("payload");
            let err = p.session_at(chrono_tz::Australia::Sydney).expect_err(text);
            assert_eq!(err, PayloadError::SessionTime(text.into()));
            assert!(
                err.to_string()
                    .contains("neither RFC 3339 nor YYYY-MM-DD HH:MM:SS"),
                "{err}"
            );
        }
    }
}
