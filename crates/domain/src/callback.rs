//! SimplyBook.me's native callback: which booking changed and how, without its details.
//!
//! SimplyBook POSTs `{"booking_id":"2262","booking_hash":"514c…","company":"claire",
//! "notification_type":"create"}` and signs nothing, so the callback proves only that someone
//! knew the tenant's callback URL. The ledger confirms each one by fetching the booking from
//! SimplyBook's API, which also makes out-of-order callbacks converge on the current state.

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// What happened to the booking, as SimplyBook names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationType {
    Create,
    Change,
    Cancel,
    Notify,
}

impl NotificationType {
    pub fn as_str(&self) -> &'static str {
        match self {
            NotificationType::Create => "create",
            NotificationType::Change => "change",
            NotificationType::Cancel => "cancel",
            NotificationType::Notify => "notify",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("body is not a SimplyBook callback: {0}")]
pub struct CallbackError(String);

/// A callback whose fields have the documented shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    pub booking_id: String,
    pub booking_hash: String,
    pub company: String,
    pub notification_type: NotificationType,
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    booking_id: &'a str,
    #[serde(borrow)]
    booking_hash: &'a str,
    #[serde(borrow)]
    company: &'a str,
    notification_type: NotificationType,
}

/// Ids and hashes travel in message headers and API signatures: 1–64 ASCII letters or digits.
pub fn is_token_like(value: &str) -> bool {
    !value.is_empty() && value.len() <= 64 && value.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn token_like(field: &str, value: &str) -> Result<(), CallbackError> {
    if is_token_like(value) {
        Ok(())
    } else {
        Err(CallbackError(format!(
            "{field} must be 1-64 letters or digits"
        )))
    }
}

impl Callback {
    /// Parses and validates a callback body. Unknown fields are ignored (SimplyBook may add some).
    pub fn parse(body: &[u8]) -> Result<Self, CallbackError> {
        let raw: Raw<'_> =
            serde_json::from_slice(body).map_err(|e| CallbackError(e.to_string()))?;
        token_like("booking_id", raw.booking_id)?;
        token_like("booking_hash", raw.booking_hash)?;
        if raw.company.is_empty() || raw.company.len() > 100 {
            return Err(CallbackError("company must be 1-100 characters".into()));
        }
        Ok(Callback {
            booking_id: raw.booking_id.to_string(),
            booking_hash: raw.booking_hash.to_string(),
            company: raw.company.to_string(),
            notification_type: raw.notification_type,
        })
    }

    /// The callback's identity for deduplication (`Nats-Msg-Id` and the ledger's event key).
    ///
    /// A booking is created and cancelled once, so `booking_id:type:booking_hash` identifies
    /// those callbacks and a retried one is a duplicate. A booking can change many times and
    /// every change callback looks the same; deduplicating them by content would drop a second
    /// change whose predecessor had already been fetched. So `change` and `notify` also carry
    /// the time ingest received them: a retry is fetched again, which changes nothing.
    pub fn event_id(&self, tenant: &str, received_at: DateTime<Utc>) -> String {
        let base = format!(
            "simplybook:{tenant}:{}:{}:{}",
            self.booking_id,
            self.notification_type.as_str(),
            self.booking_hash
        );
        match self.notification_type {
            NotificationType::Create | NotificationType::Cancel => base,
            NotificationType::Change | NotificationType::Notify => {
                format!("{base}:{}", received_at.timestamp_micros())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GENUINE: &str = r#"{"booking_id":"2262","booking_hash":"514ccafaa45aa779ff50e4642c37ba5d","company":"claire","notification_type":"create"}"#;

    #[test]
    fn parses_the_documented_callback() {
        let cb = Callback::parse(GENUINE.as_bytes()).expect("valid");
        assert_eq!(cb.booking_id, "2262");
        assert_eq!(cb.booking_hash, "514ccafaa45aa779ff50e4642c37ba5d");
        assert_eq!(cb.company, "claire");
        assert_eq!(cb.notification_type, NotificationType::Create);
        let extra = GENUINE.replace('}', r#","webhook_timestamp":1}"#);
        assert!(
            Callback::parse(extra.as_bytes()).is_ok(),
            "unknown fields ignored"
        );
    }

    #[test]
    fn rejects_bad_shapes_with_the_reason() {
        let cases = [
            ("not json", "expected"),
            (r#"{"booking_id":"1"}"#, "missing field"),
            (
                &GENUINE.replace("\"2262\"", "2262"),
                "invalid type: integer",
            ),
            (&GENUINE.replace("2262", "22 62"), "booking_id"),
            (&GENUINE.replace("514ccafa", "514c/../"), "booking_hash"),
            (
                &GENUINE.replace("\"create\"", "\"delete\""),
                "unknown variant",
            ),
            (&GENUINE.replace("\"claire\"", "\"\""), "company"),
        ];
        for (body, expected) in cases {
            let err = Callback::parse(body.as_bytes())
                .expect_err(body)
                .to_string();
            assert!(err.contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn creates_and_cancels_deduplicate_by_content_changes_do_not() {
        let t1 = DateTime::from_timestamp(1_790_000_000, 0).expect("time");
        let t2 = DateTime::from_timestamp(1_790_000_060, 0).expect("time");
        let create = Callback::parse(GENUINE.as_bytes()).expect("valid");
        assert_eq!(
            create.event_id("claire", t1),
            "simplybook:claire:2262:create:514ccafaa45aa779ff50e4642c37ba5d"
        );
        assert_eq!(create.event_id("claire", t1), create.event_id("claire", t2));
        let change = Callback {
            notification_type: NotificationType::Change,
            ..create
        };
        assert_ne!(change.event_id("claire", t1), change.event_id("claire", t2));
    }
}
