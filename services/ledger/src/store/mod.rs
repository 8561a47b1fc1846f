//! The ledger's tables, one module per aggregate, each adding its queries to [`Store`]:
//!
//! - [`bookings`]: bookings as they stand, their status history and price revisions;
//! - [`chain`]: each tenant's hash chain (bookings and revisions in chain order, the heads);
//! - [`audit`]: the audit log (outcomes of events, dead letters, replays, refused requests);
//! - [`reconciliations`]: what reconciliation compares, and each run's result with its gaps;
//! - [`deposits`]: deposits received, matched to bookings, and a month's bookings with theirs;
//! - [`alerts`]: operator alerts queued in the outbox.
//!
//! Bookings and revisions are written in batches by [`crate::batch`], through
//! [`Store::apply_batch`].

mod alerts;
mod audit;
mod bookings;
mod chain;
mod deposits;
mod handle;
mod reconciliations;

pub use audit::AuditFilter;
pub use bookings::BookingRow;
pub use deposits::{DepositBooking, NewReceipt, Receipt};
pub use handle::Store;
pub use reconciliations::ReconcileRow;
