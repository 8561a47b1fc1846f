//! The booking payload a signed forwarder sends with the details inline (the seed's shape),
//! parsed without floats and validated into typed fields.
//!
//! The session start is RFC 3339, or SimplyBook's company-local `YYYY-MM-DD HH:MM:SS` read in the
//! tenant's zone by [`crate::local_time::resolve`]: a time inside a daylight-saving gap moves
//! forward by the length of the gap (Sydney's `2026-10-04 02:30:00` is 02:30 +10, the instant
//! the clock showed as 03:30 +11), and a time inside an overlap is its first occurrence, with
//! the earlier offset (Sydney's `2026-04-05 02:30:00` is 02:30 +11).

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

#[derive(Debug, Clone, Deserialize)]
pub struct ServiceInfo {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub duration: Option<u32>,
}

/// A booking's client as the event names them: personal data, so `Debug` never prints it (see
/// [`crate::privacy`] for how it is stored).
#[derive(Clone, Default, Deserialize)]
pub struct ClientInfo {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    /// SimplyBook's id of the client, when the event came from SimplyBook's API.
    #[serde(default)]
    pub client_id: Option<String>,
}

impl std::fmt::Debug for ClientInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientInfo([personal data])")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProviderInfo {
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Deserialize)]
struct Wire {
    booking_id: String,
    #[serde(default)]
    booking_hash: Option<String>,
    #[serde(default)]
    status: Option<BookingStatus>,
    price: Box<RawValue>,
    #[serde(default)]
    currency: Option<String>,
    datetime: String,
    service: ServiceInfo,
    #[serde(default)]
    client: Option<ClientInfo>,
    #[serde(default)]
    provider: Option<ProviderInfo>,
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
        let wire: Wire =
            serde_json::from_slice(body).map_err(|e| PayloadError::Malformed(e.to_string()))?;
        if wire.booking_id.trim().is_empty() || wire.booking_id.len() > 100 {
            return Err(PayloadError::Malformed(
                "booking_id must be 1-100 characters".into(),
            ));
        }
        Ok(BookingPayload {
            price: parse_price(wire.price.get())?,
            booking_id: wire.booking_id,
            booking_hash: wire.booking_hash,
            status: wire.status.unwrap_or(BookingStatus::Confirmed),
            currency: wire.currency,
            datetime: wire.datetime,
            service: wire.service,
            client: wire.client,
            provider: wire.provider,
        })
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
