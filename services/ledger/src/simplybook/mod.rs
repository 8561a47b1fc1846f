//! A JSON-RPC client for SimplyBook.me's APIs, built on SimplyBook's documented contract and its
//! own clients (`docs/contracts/simplybook.md` names the source of each fact):
//!
//! - **Domains.** Companies live on different API hosts. `getServiceUrl(company)` on the login
//!   API (`LEDGER_SIMPLYBOOK_URL`, `https://user-api.simplybook.me` by default) names the
//!   company's host (a bare host such as `user-api.simplybook.asia`); everything else goes to
//!   that host. The answer is cached per company and asked again when SimplyBook says the
//!   company does not exist there. A tenant's `simplybook_api_url` overrides it. Since the
//!   tenant's keys and passwords are sent to that host, it must be one of
//!   `LEDGER_SIMPLYBOOK_API_HOSTS`.
//! - **Tokens.** `getToken(company, api_key)` (public API, header `X-Token`) and
//!   `getUserToken(company, login, password)` (Company Administration API, `X-User-Token`), on
//!   `{host}/login`; cached, and renewed once when a call is refused (an expired token is refused
//!   as "Access denied", with no code of its own).
//! - **Errors.** `{"code", "message"}` with the code a string or a number; SimplyBook's code and
//!   message travel in every error this client returns (never a credential).
//! - **Calls.** Every HTTP request made for one piece of work is counted in a [`Session`], so a
//!   reconciliation can report what it cost.
//!
//! Network failures, timeouts and 5xx are retried with backoff; if SimplyBook stays unavailable
//! the caller tries again later, so nothing is lost.

mod bookings;
mod client;
mod error;
mod listing;
mod session;
#[cfg(test)]
mod tests;
mod transport;

pub use client::{Api, Session, Settings, SimplyBook};
pub use error::FetchError;
