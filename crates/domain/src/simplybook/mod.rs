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
//! What a booking is worth and what state it is in are decided by [`resolve`](resolve()), whose
//! rules are written on it.
//!
//! # Layout
//!
//! - `wire`: the shapes every answer shares: strings-or-numbers, flags, exact amounts,
//!   feature-dependent members, lists that are arrays or objects keyed by id.
//! - `errors`: a JSON-RPC error, the codes SimplyBook documents and what each means.
//! - `company`: where a company's API lives (`getServiceUrl`) and its time zone.
//! - `details`: `getBookingDetails`, its request signature and its answer.
//! - `events`: the company's services (`getEventList`), which price a booking without a price.
//! - `resolve`: a booking's state and value decided from its details (pure, with its rules).
//! - `listing`: the admin `getBookings` rows and `getStatuses` labels reconciliation compares.
//! - `mask`: answers with every client detail masked, to keep a live account's shapes.

mod company;
mod details;
mod errors;
mod events;
mod listing;
mod mask;
mod resolve;
#[cfg(test)]
mod testing;
mod wire;

pub use company::{company_time_zone, host_of, service_url};
pub use details::{BookingDetails, StatusLabel, booking_sign};
pub use errors::{HIPAA_ADMIN_LOGIN_REFUSED, RpcError, codes};
pub use events::{EventInfo, parse_event_list};
pub use listing::{ListedBooking, parse_booking_list, parse_statuses};
pub use mask::mask_personal;
pub use resolve::{DetailsError, Resolved, StatusLabels, resolve};
