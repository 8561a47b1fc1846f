//! The company's services as `getEventList` lists them: a booking whose details carry no price is
//! valued at its service's.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::wire::{Text, amount, keyed_entries};
use crate::booking::PayloadError;

/// One of the company's services as `getEventList` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventInfo {
    pub id: String,
    pub name: Option<String>,
    /// The service's price; `None` when the company shows no price.
    pub price: Option<Decimal>,
    pub currency: Option<String>,
    pub duration: Option<u32>,
}

#[derive(Deserialize)]
struct EventWire {
    #[serde(default)]
    id: Option<Text>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    price: Option<Box<RawValue>>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    duration: Option<Text>,
}

/// Turns a `getEventList` answer (an object keyed by event id, or an array) into the services
/// by id.
pub fn parse_event_list(result: &RawValue) -> Result<BTreeMap<String, EventInfo>, PayloadError> {
    let entries = keyed_entries("event list", result)?;
    let mut events = BTreeMap::new();
    for (key, raw) in entries {
        let e: EventWire = serde_json::from_str(raw.get())
            .map_err(|err| PayloadError::Malformed(format!("event list entry: {err}")))?;
        let id = match (e.id.map(Text::into_string), key) {
            (Some(id), _) => id,
            (None, Some(key)) => key,
            (None, None) => {
                return Err(PayloadError::Malformed(
                    "event list entry without an id".into(),
                ));
            }
        };
        let price = match e.price.as_deref() {
            None => None,
            Some(raw) if matches!(raw.get().trim(), "null" | "\"\"") => None,
            Some(raw) => Some(amount("event price", raw)?),
        };
        events.insert(
            id.clone(),
            EventInfo {
                id,
                name: e.name,
                price,
                currency: e.currency.filter(|c| !c.is_empty()),
                duration: e.duration.and_then(|d| d.into_string().trim().parse().ok()),
            },
        );
    }
    Ok(events)
}
