//! Reconciliation with SimplyBook: does the ledger hold every booking SimplyBook has for a
//! tenant's month, in the same state and at the same price?
//!
//! SimplyBook's Company Administration API lists the month (`getBookings`, the company's local
//! dates; its rows carry no booking hash and no price). Each row is compared with the ledger
//! first: presence, state (cancelled, awaiting approval or active), session time, and the
//! service's price from `getEventList`. Only a booking that is missing or differs there is
//! fetched in full (`getBookingDetails(id)`), so a clean month costs a handful of calls, not one
//! per booking. Bookings the ledger has in the month that the list left out are fetched too.
//! The company's time zone (`getCompanyInfo`) is compared with the tenant's: a mismatch shifts
//! sessions across month ends, so it is a gap.
//!
//! A gap is repaired by putting the booking's id on the webhook stream (`Billing-Auth:
//! reconciliation-repair`): the ledger's consumer confirms it through the admin API and records
//! it like any event (deduplication, audit as a repair), never writing the ledger directly and
//! never forging a callback that would need a hash we do not have. A run that finds gaps can
//! raise an operator alert; `ledger_reconciliation_gaps{tenant}` keeps the last count.

mod alerts;
mod compare;
mod gauges;
mod repairs;
mod run;

pub use gauges::report_gauges;
pub use repairs::Repairs;
pub use run::{ReconcileError, Reconciler};
