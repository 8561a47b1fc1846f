//! SimplyBook.me's JSON-RPC API as the ledger reads it: the request signature, booking details,
//! the company's services (for a booking's price), the admin booking list, and error codes.
//!
//! Every shape here comes from SimplyBook's documentation and its own clients, not from what
//! would be convenient; `docs/contracts/simplybook.md` names the source of each fact and
//! `tests/fixtures/simplybook/` holds an answer of each shape with its source. In short:
//! - fields that belong to an optional feature ("plugin") are an object when the company uses
//!   the feature and an empty array `[]` (PHP's empty array) when it does not: `price` (the
//!   payments feature), `status` (the Status feature), `location`, `promo`;
//! - ids, flags and amounts may be strings or numbers; amounts are read from their exact text;
//! - times are `YYYY-MM-DD HH:MM:SS` in the company's time zone;
//! - a list may be an array or an object keyed by id (a PHP array whose keys are not 0, 1, …).
//!
//! What a booking is worth and what state it is in are decided by [`resolve`], whose rules are
//! written on it.

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::booking::ServiceInfo;
use crate::booking::{BookingPayload, BookingStatus, ClientInfo, PayloadError, ProviderInfo};
use crate::callback::is_token_like;
use crate::money::parse_decimal;

/// `getBookingDetails`' `sign` parameter: `md5(booking_id + booking_hash + secret_key)`, hex.
pub fn booking_sign(booking_id: &str, booking_hash: &str, secret_key: &str) -> String {
    let mut md5 = Md5::new();
    md5.update(booking_id.as_bytes());
    md5.update(booking_hash.as_bytes());
    md5.update(secret_key.as_bytes());
    hex::encode(md5.finalize())
}

/// SimplyBook sends ids, flags and codes as strings or numbers, depending on field and version.
#[derive(Debug, Clone, Deserialize)]
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

/// A JSON-RPC error as SimplyBook sends it: `{"code": -32085, "message": "Signature error"}`,
/// the code often a string (`"-32085"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// The code as a number, when it is one (string or number on the wire).
    pub code: Option<i64>,
    pub message: String,
}

impl RpcError {
    /// Reads an `error` member; anything unreadable keeps its text as the message.
    pub fn parse(error: &RawValue) -> RpcError {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            code: Option<Text>,
            #[serde(default)]
            message: Option<String>,
        }
        match serde_json::from_str::<Wire>(error.get()) {
            Ok(w) => RpcError {
                code: w.code.and_then(|c| c.into_string().trim().parse().ok()),
                message: w.message.unwrap_or_default(),
            },
            Err(_) => RpcError {
                code: None,
                message: error.get().chars().take(200).collect(),
            },
        }
    }

    /// SimplyBook refuses the Company Administration API's login to companies with its HIPAA
    /// feature: reconciliation is not possible for them.
    pub fn is_admin_login_refused(&self) -> bool {
        self.code == Some(HIPAA_ADMIN_LOGIN_REFUSED)
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(code) => write!(f, "error {code}: {}", self.message),
            None => write!(f, "error: {}", self.message),
        }
    }
}

/// `getUserToken`'s refusal for a company using SimplyBook's HIPAA feature.
pub const HIPAA_ADMIN_LOGIN_REFUSED: i64 = -33005;

/// A feature-dependent member: an object when the company uses the feature; `[]`, `null` or
/// absent when it does not. Anything else is an error naming the member.
fn plugin<T: DeserializeOwned>(
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
fn amount(name: &str, raw: &RawValue) -> Result<Decimal, PayloadError> {
    let text = raw.get().trim();
    let text = if text.starts_with('"') {
        serde_json::from_str::<String>(text)
            .map_err(|e| PayloadError::Malformed(format!("{name}: {e}")))?
    } else {
        text.to_string()
    };
    Ok(parse_decimal(&text)?)
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

fn flag(t: Text) -> Result<bool, PayloadError> {
    match t.into_string().trim() {
        "1" | "true" => Ok(true),
        "0" | "false" | "" => Ok(false),
        other => Err(PayloadError::Malformed(format!(
            "is_confirmed {other:?} is neither 1 nor 0"
        ))),
    }
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

/// An entry of a list, with its key when the list is an object keyed by id.
type Entry = (Option<String>, Box<RawValue>);

/// The entries of a list that is an array or an object keyed by id, with their keys.
fn keyed_entries(what: &str, result: &RawValue) -> Result<Vec<Entry>, PayloadError> {
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

/// A tenant's map from its SimplyBook status labels to our statuses, matched without regard to
/// case or surrounding spaces (e.g. `{"Completed": "completed", "No show": "no_show"}`).
pub type StatusLabels = BTreeMap<String, BookingStatus>;

fn mapped(labels: &StatusLabels, label: &str) -> Option<BookingStatus> {
    let label = label.trim();
    labels
        .iter()
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(label))
        .map(|(_, s)| *s)
}

/// A confirmed booking's Status-feature label through the tenant's map: (status, the label when
/// nobody has mapped it). Other states, the company's default label and no label leave the state
/// as it is.
fn refine(
    base: BookingStatus,
    label: Option<&StatusLabel>,
    labels: &StatusLabels,
) -> (BookingStatus, Option<String>) {
    match (base, label) {
        (BookingStatus::Confirmed, Some(l)) => match mapped(labels, &l.name) {
            Some(status) => (status, None),
            None if l.is_default => (base, None),
            None => (base, Some(l.name.clone())),
        },
        _ => (base, None),
    }
}

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

/// Why a booking's details cannot become a booking.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetailsError {
    /// Nothing says what the booking is worth: never recorded as 0.
    #[error("price unknown: {0}")]
    PriceUnknown(String),
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

/// A booking as SimplyBook has it, decided into our terms.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub payload: BookingPayload,
    /// The Status feature's label, as the company wrote it.
    pub status_label: Option<String>,
    /// Set when the label is not in the tenant's map (and not the company's default): the
    /// status was then taken from SimplyBook's confirmation alone, and someone should map it.
    pub unmapped_label: Option<String>,
    /// The value is the service's list price (no price object): it values a booking when first
    /// recorded, and a later change of the service's price does not re-price it.
    pub priced_from_service: bool,
}

/// Decides a booking's state and value from its details, the service they name (from
/// `getEventList`, when the details carry no price) and the tenant's status labels.
///
/// State, from SimplyBook's own fields first:
/// 1. `approve_status` `new` → `pending` (awaiting approval: recorded, neither billed nor
///    cancelled); `canceled` → `cancelled`; `approved` or absent → as `is_confirmed` says;
/// 2. `is_confirmed` `0` → `cancelled`; `1` (or absent with an approval) → `confirmed`;
/// 3. a confirmed booking's Status-feature label refines it through the tenant's map (e.g.
///    "Completed" → `completed`, "No show" → `no_show`). A label not in the map stays
///    `confirmed`, is kept as text and flagged ([`Resolved::unmapped_label`]); it is never
///    guessed from its wording. The company's default label needs no mapping.
///
/// Value:
/// - the payments feature's `price.amount` when present: what SimplyBook charges for the
///   booking, in `price.currency` (whether it is before or after a promotion's discount is not
///   documented; it is what the client was asked to pay, so it is what we bill on);
/// - otherwise the service's price from `getEventList`. A group booking of several places is
///   several bookings in SimplyBook (`book(…, count)` makes a batch of them), each priced on its
///   own, so no count multiplies a price;
/// - a promotion without the payments feature: the details give the promotion's percentage but
///   SimplyBook documents neither how it rounds the discounted price nor whether the discount
///   applies to the whole price, so the value is unknown ([`DetailsError::PriceUnknown`]),
///   never the undiscounted price;
/// - no price object and no priced service: unknown, never 0.
pub fn resolve(
    d: &BookingDetails,
    booking_hash: Option<&str>,
    event: Option<&EventInfo>,
    labels: &StatusLabels,
) -> Result<Resolved, DetailsError> {
    let base = match (d.approve_status.as_deref(), d.is_confirmed) {
        (Some("new"), _) => BookingStatus::Pending,
        (Some("canceled" | "cancelled"), _) => BookingStatus::Cancelled,
        (Some("approved") | None, Some(false)) => BookingStatus::Cancelled,
        (Some("approved"), _) | (None, Some(true)) => BookingStatus::Confirmed,
        (None, None) => {
            return Err(PayloadError::Malformed(
                "booking details carry neither is_confirmed nor approve_status".into(),
            )
            .into());
        }
        (Some(other), _) => {
            return Err(PayloadError::Malformed(format!(
                "unknown approve_status {other:?} (expected new, approved or canceled)"
            ))
            .into());
        }
    };
    let label = d.status_label.as_ref();
    let (status, unmapped_label) = refine(base, label, labels);

    let (price, currency) = match (&d.price, &d.promo, event) {
        (Some((amount, currency)), _, _) => (*amount, currency.clone()),
        (None, Some(promo), _) => {
            return Err(DetailsError::PriceUnknown(format!(
                "booking {} uses promotion {promo:?} and the company does not use SimplyBook's \
                 payments feature, so the discounted price is not in its details; record its \
                 value in SimplyBook's payments feature, or bill it by hand",
                d.id
            )));
        }
        (
            None,
            None,
            Some(EventInfo {
                price: Some(price),
                currency,
                ..
            }),
        ) => (*price, currency.clone()),
        (None, None, Some(e)) => {
            return Err(DetailsError::PriceUnknown(format!(
                "booking {} has no price and its service {} lists none",
                d.id, e.id
            )));
        }
        (None, None, None) => {
            return Err(DetailsError::PriceUnknown(format!(
                "booking {} has no price and its service {} is not in the company's service list",
                d.id,
                d.event_id.as_deref().unwrap_or("(none named)")
            )));
        }
    };
    if d.id.trim().is_empty() || d.id.len() > 100 {
        return Err(PayloadError::Malformed("booking id must be 1-100 characters".into()).into());
    }
    let service_name = d
        .event_name
        .clone()
        .or_else(|| event.and_then(|e| e.name.clone()))
        .unwrap_or_else(|| format!("service {}", d.event_id.as_deref().unwrap_or("?")));
    Ok(Resolved {
        payload: BookingPayload {
            booking_id: d.id.clone(),
            booking_hash: booking_hash.map(str::to_string),
            status,
            price,
            currency,
            datetime: d.start.clone(),
            service: ServiceInfo {
                id: d.event_id.clone(),
                name: service_name,
                duration: event.and_then(|e| e.duration),
            },
            client: Some(d.client.clone()),
            provider: Some(ProviderInfo {
                name: d.unit_name.clone(),
            }),
        },
        status_label: label.map(|l| l.name.clone()),
        unmapped_label,
        priced_from_service: d.price.is_none(),
    })
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
    /// The state the row shows, in the terms [`resolve`] uses for details (without the Status
    /// feature's label, which rows carry only as an id).
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
    /// through the tenant's map, as [`resolve`] decides it from details.
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

/// The company's time zone from `getCompanyInfo` (an IANA name, e.g. `Australia/Sydney`): the
/// zone of every time SimplyBook sends. `None` when the answer has none.
pub fn company_time_zone(result: &RawValue) -> Result<Option<String>, PayloadError> {
    #[derive(Deserialize)]
    struct Info {
        #[serde(default)]
        timezone: Option<String>,
    }
    let info: Info = serde_json::from_str(result.get())
        .map_err(|e| PayloadError::Malformed(format!("company info: {e}")))?;
    Ok(info.timezone.filter(|t| !t.trim().is_empty()))
}

/// The API base URL from `getServiceUrl`'s answer: SimplyBook's own app reads it as a bare host
/// (`user-api.simplybook.me`) and calls `https://<host>/…`. `scheme` is the login API's: a bare
/// host gets it, and an answer with a scheme must have the same one (an `https` login never
/// leads to plaintext `http`). Anything but a host name and port is refused, since the tenant's
/// credentials are sent there.
pub fn service_url(answer: &str, scheme: &str) -> Result<String, PayloadError> {
    let answer = answer.trim();
    let host = match answer.split_once("://") {
        Some((s, host)) if s.eq_ignore_ascii_case(scheme) => host,
        Some(_) => {
            return Err(PayloadError::Malformed(format!(
                "service url {answer:?} is not {scheme}"
            )));
        }
        None => answer,
    }
    .trim_end_matches('/');
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return Err(PayloadError::Malformed(format!(
            "service url {answer:?} is not a host name"
        )));
    }
    Ok(format!("{scheme}://{host}"))
}

/// The host of a base URL made by [`service_url`], without its port.
pub fn host_of(url: &str) -> &str {
    let host = url.split_once("://").map_or(url, |(_, h)| h);
    host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    })
}

/// Error codes SimplyBook documents ("Errors handling" and "Authentication" in its help wiki).
pub mod codes {
    /// "Access denied" (also how an expired token is refused) or "Company does not exists".
    pub const ACCESS_DENIED_OR_NO_COMPANY: i64 = -32600;
    /// "Appointemnt couldn't be found" (sic).
    pub const BOOKING_NOT_FOUND: i64 = -32080;
    pub const SIGNATURE_ERROR: i64 = -32085;
    /// Login API: "Company does not exist".
    pub const COMPANY_NOT_FOUND: i64 = -33001;
    /// JSON-RPC's "Internal error".
    pub const INTERNAL_ERROR: i64 = -32603;
    /// "Plugin is not activated": the company does not use the feature asked about.
    pub const PLUGIN_NOT_ACTIVATED: i64 = -32001;
}

impl RpcError {
    /// "Access denied": how SimplyBook refuses an expired or invalid token (SimplyBook's own app
    /// logs in again on it, and on nothing else).
    pub fn is_access_denied(&self) -> bool {
        self.code == Some(codes::ACCESS_DENIED_OR_NO_COMPANY) && !self.is_unknown_company()
    }

    /// "Internal error": SimplyBook's own failure, worth asking again later.
    pub fn is_internal(&self) -> bool {
        self.code == Some(codes::INTERNAL_ERROR)
    }

    /// SimplyBook says the company does not exist (on this API domain): its domain may have
    /// changed, so ask `getServiceUrl` again.
    pub fn is_unknown_company(&self) -> bool {
        self.code == Some(codes::COMPANY_NOT_FOUND)
            || (self.code == Some(codes::ACCESS_DENIED_OR_NO_COMPANY)
                && self
                    .message
                    .to_ascii_lowercase()
                    .contains("company does not exist"))
    }
}

/// Members whose every value, at any depth, is masked: a client object, comments, intake-form
/// answers, and who changed a booking and from where (`history`).
const PERSONAL_SUBTREES: [&str; 4] = ["client", "comments", "additional_fields", "history"];

/// Members that hold a client's personal data in SimplyBook's answers.
const PERSONAL: [&str; 10] = [
    "client",
    "client_name",
    "client_email",
    "client_phone",
    "client_address1",
    "client_address2",
    "client_city",
    "client_zip",
    "comment",
    "value",
];

/// A copy of an answer with every client name, email, phone, address, comment and form answer,
/// and every trace of who changed a booking, replaced by a mask at any depth, so a live
/// account's shapes can be kept as fixtures. Types are kept where they matter for a shape:
/// `null` stays `null`, an empty string stays empty, containers keep their members.
pub fn mask_personal(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let masked = match v {
                        Value::Object(_) | Value::Array(_)
                            if PERSONAL_SUBTREES.contains(&k.as_str()) =>
                        {
                            mask_all(v, k)
                        }
                        Value::Object(_) | Value::Array(_) => mask_personal(v),
                        _ if PERSONAL.contains(&k.as_str()) => mask_scalar(v, k),
                        _ => v.clone(),
                    };
                    (k.clone(), masked)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask_personal).collect()),
        other => other.clone(),
    }
}

fn mask_scalar(v: &serde_json::Value, key: &str) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Null => Value::Null,
        Value::String(s) if s.is_empty() => Value::String(String::new()),
        _ => Value::String(format!("<masked {key}>")),
    }
}

/// Every scalar under `v` masked, its structure kept.
fn mask_all(v: &serde_json::Value, key: &str) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), mask_all(v, k)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|i| mask_all(i, key)).collect()),
        scalar => mask_scalar(scalar, key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A contract fixture (tests/fixtures/simplybook/, each with its source in the README).
    macro_rules! fixture {
        ($path:literal) => {
            include_str!(concat!(
                "../../../tests/fixtures/simplybook/",
                $path,
                ".json"
            ))
        };
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).expect("json")
    }

    fn labels() -> StatusLabels {
        BTreeMap::from([
            ("Completed".to_string(), BookingStatus::Completed),
            (" no SHOW ".to_string(), BookingStatus::NoShow),
        ])
    }

    fn resolved(details: &str) -> Result<Resolved, DetailsError> {
        let events = parse_event_list(&raw(fixture!("events/event_list"))).expect("events");
        let d = BookingDetails::parse(&raw(details)).expect("details");
        let event = d.event_id.as_ref().and_then(|id| events.get(id));
        resolve(&d, Some("h"), event, &labels())
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
    fn every_details_fixture_resolves_to_its_state_and_value() {
        let d = |s: &str| Decimal::from_str_exact(s).expect("decimal");
        // (fixture, status, price, label, unmapped)
        let cases = [
            (
                fixture!("details/confirmed_plain"),
                BookingStatus::Confirmed,
                d("150.0000"),
                None,
                false,
            ),
            (
                fixture!("details/confirmed_paid_price_object"),
                BookingStatus::Confirmed,
                d("150.0000"),
                None,
                false,
            ),
            (
                fixture!("details/confirmed_pay_later_price_object"),
                BookingStatus::Confirmed,
                d("150.0000"),
                None,
                false,
            ),
            (
                fixture!("details/confirmed_not_paid_price_object"),
                BookingStatus::Confirmed,
                d("150.0000"),
                None,
                false,
            ),
            (
                fixture!("details/status_default"),
                BookingStatus::Confirmed,
                d("150.0000"),
                Some("Approved"),
                false,
            ),
            (
                fixture!("details/status_label_completed"),
                BookingStatus::Completed,
                d("150.0000"),
                Some("Completed"),
                false,
            ),
            (
                fixture!("details/status_label_no_show"),
                BookingStatus::NoShow,
                d("150.0000"),
                Some("No show"),
                false,
            ),
            (
                fixture!("details/approval_pending"),
                BookingStatus::Pending,
                d("150.0000"),
                None,
                false,
            ),
            (
                fixture!("details/approval_approved"),
                BookingStatus::Confirmed,
                d("150.0000"),
                None,
                false,
            ),
            (
                fixture!("details/approval_canceled"),
                BookingStatus::Cancelled,
                d("150.0000"),
                None,
                false,
            ),
            (
                fixture!("details/cancelled"),
                BookingStatus::Cancelled,
                d("150.0000"),
                None,
                false,
            ),
            (
                fixture!("details/public_api_with_membership_package_keys"),
                BookingStatus::Confirmed,
                d("150.0000"),
                None,
                false,
            ),
        ];
        for (text, status, price, label, unmapped) in cases {
            let r = resolved(text).expect(text);
            assert_eq!(r.payload.status, status, "{text}");
            assert_eq!(r.payload.price, price, "{text}");
            assert_eq!(r.payload.currency.as_deref(), Some("AUD"), "{text}");
            assert_eq!(r.status_label.as_deref(), label, "{text}");
            assert_eq!(r.unmapped_label.is_some(), unmapped, "{text}");
            assert_eq!(r.payload.datetime, "2026-10-14 10:00:00");
            assert_eq!(r.payload.booking_hash.as_deref(), Some("h"));
        }
    }

    #[test]
    fn an_unknown_label_stays_confirmed_and_is_flagged_but_never_overrides_a_cancellation() {
        let arrived =
            fixture!("details/status_label_completed").replace("\"Completed\"", "\"Arrived\"");
        let r = resolved(&arrived).expect("details");
        assert_eq!(r.payload.status, BookingStatus::Confirmed);
        assert_eq!(r.unmapped_label.as_deref(), Some("Arrived"));
        let cancelled = fixture!("details/status_label_completed")
            .replace("\"is_confirmed\": \"1\"", "\"is_confirmed\": \"0\"");
        let r = resolved(&cancelled).expect("details");
        assert_eq!(
            r.payload.status,
            BookingStatus::Cancelled,
            "a label refines confirmed only"
        );
        assert_eq!(r.unmapped_label, None);
    }

    #[test]
    fn a_value_nobody_states_is_unknown_never_zero() {
        let promo = resolved(fixture!("details/location_and_promo_objects"));
        assert!(
            matches!(&promo, Err(DetailsError::PriceUnknown(m)) if m.contains("SPRING10")),
            "{promo:?}"
        );
        let unlisted = fixture!("details/confirmed_plain")
            .replace("\"event_id\": \"7\"", "\"event_id\": \"99\"");
        assert!(matches!(
            resolved(&unlisted),
            Err(DetailsError::PriceUnknown(_))
        ));
        let d = BookingDetails::parse(&raw(fixture!("details/confirmed_plain"))).expect("details");
        let unpriced = EventInfo {
            id: "7".into(),
            name: None,
            price: None,
            currency: None,
            duration: None,
        };
        assert!(matches!(
            resolve(&d, None, Some(&unpriced), &labels()),
            Err(DetailsError::PriceUnknown(_))
        ));
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

    #[test]
    fn error_codes_are_read_as_strings_or_numbers() {
        let cases = [
            (fixture!("errors/signature_error_string_code"), Some(-32085)),
            (fixture!("errors/not_found_numeric_code"), Some(-32080)),
            (fixture!("errors/hipaa_admin_login_refused"), Some(-33005)),
            (r#"{"message":"no code"}"#, None),
        ];
        for (text, code) in cases {
            assert_eq!(RpcError::parse(&raw(text)).code, code, "{text}");
        }
        let signature = RpcError::parse(&raw(fixture!("errors/signature_error_string_code")));
        assert_eq!(signature.to_string(), "error -32085: Signature error");
        assert!(
            RpcError::parse(&raw(fixture!("errors/hipaa_admin_login_refused")))
                .is_admin_login_refused()
        );
        assert!(RpcError::parse(&raw(fixture!("errors/company_not_found"))).is_unknown_company());
        assert!(
            RpcError::parse(&raw(fixture!("errors/company_not_found_api_32600")))
                .is_unknown_company()
        );
        assert!(
            !RpcError::parse(&raw(fixture!("errors/token_expired_or_invalid")))
                .is_unknown_company()
        );
    }

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

    #[test]
    fn service_urls_are_hosts_given_a_scheme_and_nothing_else() {
        let answer: String = serde_json::from_str(fixture!("login/service_url")).expect("string");
        assert_eq!(
            service_url(&answer, "https").expect("host"),
            "https://user-api.simplybook.me"
        );
        assert_eq!(
            service_url("http://127.0.0.1:8080/", "http").expect("url"),
            "http://127.0.0.1:8080"
        );
        // An https login never leads to plaintext http, whatever SimplyBook answers.
        assert!(service_url("http://user-api.simplybook.me", "https").is_err());
        for bad in [
            "https://evil.test/path",
            "ftp://x",
            "user@host",
            "",
            "a b",
            r"evil.example\.simplybook.me",
            "https://",
            "https:",
            "host:",
            "host:80a",
        ] {
            assert!(service_url(bad, "https").is_err(), "{bad}");
        }
        assert_eq!(host_of("http://127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(
            host_of("https://user-api.simplybook.asia"),
            "user-api.simplybook.asia"
        );
    }

    #[test]
    fn the_company_zone_comes_from_company_info() {
        assert_eq!(
            company_time_zone(&raw(fixture!("company/company_info")))
                .expect("info")
                .as_deref(),
            Some("Australia/Sydney")
        );
    }

    #[test]
    fn masking_leaves_no_client_detail_and_keeps_the_shape() {
        let value: serde_json::Value =
            serde_json::from_str(fixture!("details/confirmed_plain")).expect("json");
        let masked = mask_personal(&value);
        let text = masked.to_string();
        for personal in [
            "Test Client",
            "test.client@example.test",
            "+61 400 000 000",
            "192.0.2.10",
        ] {
            assert!(!text.contains(personal), "{personal} survived masking");
        }
        assert_eq!(masked["client_name"], "<masked client_name>");
        assert_eq!(masked["price"], serde_json::json!([]));
        assert_eq!(masked["event_name"], value["event_name"]);
        assert_eq!(masked["history"][0]["login"], "<masked login>");
        assert_eq!(
            masked["history"][0]["id"], "<masked id>",
            "history is masked whole"
        );

        // Members the fixtures show empty, filled in: comments, form answers, a client object.
        let mut filled = value.clone();
        filled["comments"] = serde_json::json!([{"text": "Back pain since March"}]);
        filled["additional_fields"] =
            serde_json::json!([{"field_title": "Allergies", "value": "Peanuts"}]);
        filled["comment"] = serde_json::json!("Please call Jane on 0400 111 222");
        filled["client"] = serde_json::json!({"name": "Jane Doe", "email": "jane@example.test"});
        let text = mask_personal(&filled).to_string();
        for personal in [
            "Back pain",
            "Peanuts",
            "Jane",
            "0400 111 222",
            "jane@example.test",
        ] {
            assert!(!text.contains(personal), "{personal} survived masking");
        }
    }
}
