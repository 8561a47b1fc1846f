//! What reconciliation compares: the Company Administration API's `getBookings` rows (no hash, no
//! price) and the company's Status-feature labels by id (`getStatuses`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::details::StatusLabel;
use super::resolve::{StatusLabels, refine};
use super::wire::{Text, flag, keyed_entries};
use crate::booking::{BookingStatus, PayloadError};
use crate::callback::is_token_like;

/// The company's Status-feature labels by id, from the admin `getStatuses` (an array of
/// `{id, name, color, is_default, description}`): list rows name a booking's status by id.
pub fn parse_statuses(result: &RawValue) -> Result<BTreeMap<String, StatusLabel>, PayloadError> {
    #[derive(Deserialize)]
    struct Wire {
        id: Text,
        name: String,
        #[serde(default)]
        is_default: Option<Text>,
    }
    let mut statuses = BTreeMap::new();
    for (_, raw) in keyed_entries("status list", result)? {
        let w: Wire = serde_json::from_str(raw.get())
            .map_err(|e| PayloadError::Malformed(format!("status list entry: {e}")))?;
        statuses.insert(
            w.id.into_string(),
            StatusLabel {
                name: w.name,
                is_default: w.is_default.is_some_and(|t| flag(t).unwrap_or(false)),
            },
        );
    }
    Ok(statuses)
}

/// One booking as the Company Administration API's `getBookings` lists it. The rows carry no
/// booking hash and no price; what they do carry is compared with the ledger first, and only
/// bookings that differ or are missing are fetched in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedBooking {
    pub id: String,
    /// When the session starts, `YYYY-MM-DD HH:MM:SS` in the company's local time.
    pub start: String,
    /// `is_confirm`: false for a cancelled booking (or one awaiting approval).
    pub is_confirmed: Option<bool>,
    /// The Approve-booking feature's `new | approved | canceled`, when the company uses it.
    pub approve_status: Option<String>,
    pub event_id: Option<String>,
    /// The Status feature's status, by id (see [`parse_statuses`]).
    pub status_id: Option<String>,
}

impl ListedBooking {
    /// The state the row shows, in the terms [`resolve`](super::resolve()) uses for details
    /// (without the Status feature's label, which rows carry only as an id).
    pub fn state(&self) -> Option<BookingStatus> {
        match (self.approve_status.as_deref(), self.is_confirmed) {
            (Some("new"), _) => Some(BookingStatus::Pending),
            (Some("canceled" | "cancelled"), _) | (_, Some(false)) => {
                Some(BookingStatus::Cancelled)
            }
            (_, Some(true)) => Some(BookingStatus::Confirmed),
            _ => None,
        }
    }

    /// The state the row shows with the Status feature's label (by id in `statuses`) refined
    /// through the tenant's map, as [`resolve`](super::resolve()) decides it from details.
    pub fn status(
        &self,
        statuses: &BTreeMap<String, StatusLabel>,
        labels: &StatusLabels,
    ) -> Option<BookingStatus> {
        let label = self.status_id.as_ref().and_then(|id| statuses.get(id));
        self.state().map(|base| refine(base, label, labels).0)
    }
}

#[derive(Deserialize)]
struct ListEntry {
    #[serde(default)]
    id: Option<Text>,
    #[serde(default)]
    start_date: Option<String>,
    #[serde(default)]
    is_confirm: Option<Text>,
    #[serde(default)]
    approve_status: Option<String>,
    #[serde(default)]
    event_id: Option<Text>,
    #[serde(default)]
    status: Option<Text>,
}

/// Turns a `getBookings` answer (an array of rows, or an object keyed by booking id) into the
/// bookings it lists. The error names the entry and what is wrong with it.
pub fn parse_booking_list(result: &RawValue) -> Result<Vec<ListedBooking>, PayloadError> {
    keyed_entries("booking list", result)?
        .into_iter()
        .enumerate()
        .map(|(i, (key, raw))| {
            let at = key
                .as_ref()
                .map_or_else(|| format!("entry {i}"), |k| format!("entry {k:?}"));
            listed_booking(&raw, key.as_deref(), &at)
        })
        .collect()
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
    let start = e
        .start_date
        .ok_or_else(|| malformed(format!("booking {id} has no start_date")))?;
    Ok(ListedBooking {
        is_confirmed: e
            .is_confirm
            .map(flag)
            .transpose()
            .map_err(|err| malformed(err.to_string()))?,
        approve_status: e.approve_status.filter(|s| !s.is_empty()),
        event_id: e.event_id.map(Text::into_string),
        status_id: e.status.map(Text::into_string).filter(|s| !s.is_empty()),
        id,
        start,
    })
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::simplybook::testing::{fixture, labels, raw};

    #[test]
    fn booking_lists_are_arrays_or_objects_keyed_by_id_without_hashes() {
        let listed = parse_booking_list(&raw(fixture!("bookings/list_array"))).expect("list");
        let rows: Vec<_> = listed
            .iter()
            .map(|b| (b.id.as_str(), b.start.as_str(), b.state()))
            .collect();
        assert_eq!(
            rows,
            [
                (
                    "2262",
                    "2026-10-14 10:00:00",
                    Some(BookingStatus::Confirmed)
                ),
                (
                    "2263",
                    "2026-10-14 11:30:00",
                    Some(BookingStatus::Cancelled)
                ),
            ]
        );
        let keyed =
            parse_booking_list(&raw(fixture!("bookings/list_object_keyed"))).expect("keyed");
        assert!(!keyed.is_empty());
        assert_eq!(
            parse_booking_list(&raw(fixture!("bookings/list_empty"))).expect("empty"),
            vec![]
        );
        let pending = raw(
            r#"[{"id":"1","start_date":"2026-10-14 10:00:00","is_confirm":"0","approve_status":"new"}]"#,
        );
        assert_eq!(
            parse_booking_list(&pending).expect("pending")[0].state(),
            Some(BookingStatus::Pending)
        );
        let cases = [
            (
                r#"[{"id":"22 62","start_date":"2026-10-14 10:00:00"}]"#,
                r#"entry 0: id "22 62" is not"#,
            ),
            (
                r#"[{"start_date":"2026-10-14 10:00:00"}]"#,
                "entry 0: missing id",
            ),
            (r#"[{"id":"1"}]"#, "booking 1 has no start_date"),
            (
                r#"{"7":{"id":"8","start_date":"2026-10-14 10:00:00"}}"#,
                r#"entry "7": is keyed "7" but has id "8""#,
            ),
            ("null", "neither an array nor an object"),
        ];
        for (list, expected) in cases {
            let err = parse_booking_list(&raw(list)).expect_err(list).to_string();
            assert!(err.contains(expected), "{list}: {err}");
        }
    }

    #[test]
    fn a_rows_status_id_is_read_through_the_companys_labels_and_the_tenants_map() {
        let statuses = parse_statuses(&raw(fixture!("statuses/status_list"))).expect("statuses");
        let listed = parse_booking_list(&raw(fixture!("bookings/list_array"))).expect("list");
        // Row 2262 shows status 5, "Completed"; 2263 is cancelled whatever its label.
        assert_eq!(listed[0].status_id.as_deref(), Some("5"));
        assert_eq!(
            listed[0].status(&statuses, &labels()),
            Some(BookingStatus::Completed)
        );
        assert_eq!(
            listed[0].status(&statuses, &StatusLabels::new()),
            Some(BookingStatus::Confirmed),
            "an unmapped label stays confirmed"
        );
        assert_eq!(
            listed[1].status(&statuses, &labels()),
            Some(BookingStatus::Cancelled)
        );
    }
}
