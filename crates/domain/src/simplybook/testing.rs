//! What the unit tests of these modules share: the contract fixtures, raw JSON values and a
//! tenant's status labels.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::booking::BookingStatus;

/// A contract fixture (tests/fixtures/simplybook/, each with its source in the README).
macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!(
            "../../../../tests/fixtures/simplybook/",
            $path,
            ".json"
        ))
    };
}
pub(super) use fixture;

pub(super) fn raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_string()).expect("json")
}

/// A tenant's map of Status-feature labels (`StatusLabels`), in odd case and spacing.
pub(super) fn labels() -> BTreeMap<String, BookingStatus> {
    BTreeMap::from([
        ("Completed".to_string(), BookingStatus::Completed),
        (" no SHOW ".to_string(), BookingStatus::NoShow),
    ])
}
