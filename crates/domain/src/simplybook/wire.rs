//! The shapes every SimplyBook answer shares: ids, flags and codes as strings or numbers, amounts
//! read from their exact text, members that are an object or `[]` depending on a feature, and
//! lists that are arrays or objects keyed by id.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::booking::PayloadError;
use crate::money::parse_decimal;

/// SimplyBook sends ids, flags and codes as strings or numbers, depending on field and version.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum Text {
    S(String),
    N(i64),
}

impl Text {
    pub(super) fn into_string(self) -> String {
        match self {
            Text::S(s) => s,
            Text::N(n) => n.to_string(),
        }
    }
}

/// A feature-dependent member: an object when the company uses the feature; `[]`, `null` or
/// absent when it does not. Anything else is an error naming the member.
pub(super) fn plugin<T: DeserializeOwned>(
    name: &str,
    raw: Option<&RawValue>,
) -> Result<Option<T>, PayloadError> {
    let Some(raw) = raw else { return Ok(None) };
    let text = raw.get().trim();
    if text == "null" || text.starts_with('[') && text[1..].trim() == "]" {
        return Ok(None);
    }
    if !text.starts_with('{') {
        return Err(PayloadError::Malformed(format!(
            "{name} is neither an object nor [] but {}",
            text.chars().take(40).collect::<String>()
        )));
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| PayloadError::Malformed(format!("{name}: {e}")))
}

/// An amount read from its exact JSON text (string or number), never through a float.
pub(super) fn amount(name: &str, raw: &RawValue) -> Result<Decimal, PayloadError> {
    let text = raw.get().trim();
    let text = if text.starts_with('"') {
        serde_json::from_str::<String>(text)
            .map_err(|e| PayloadError::Malformed(format!("{name}: {e}")))?
    } else {
        text.to_string()
    };
    Ok(parse_decimal(&text)?)
}

pub(super) fn flag(t: Text) -> Result<bool, PayloadError> {
    match t.into_string().trim() {
        "1" | "true" => Ok(true),
        "0" | "false" | "" => Ok(false),
        other => Err(PayloadError::Malformed(format!(
            "is_confirmed {other:?} is neither 1 nor 0"
        ))),
    }
}

/// An entry of a list, with its key when the list is an object keyed by id.
pub(super) type Entry = (Option<String>, Box<RawValue>);

/// The entries of a list that is an array or an object keyed by id, with their keys.
pub(super) fn keyed_entries(what: &str, result: &RawValue) -> Result<Vec<Entry>, PayloadError> {
    let malformed = |e: serde_json::Error| PayloadError::Malformed(format!("{what}: {e}"));
    // By the first character rather than an untagged enum: serde cannot buffer a `RawValue`.
    match result.get().trim_start().chars().next() {
        Some('[') => Ok(serde_json::from_str::<Vec<Box<RawValue>>>(result.get())
            .map_err(malformed)?
            .into_iter()
            .map(|e| (None, e))
            .collect()),
        Some('{') => Ok(
            serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(result.get())
                .map_err(malformed)?
                .into_iter()
                .map(|(k, e)| (Some(k), e))
                .collect(),
        ),
        _ => Err(PayloadError::Malformed(format!(
            "{what} is neither an array nor an object keyed by id"
        ))),
    }
}
