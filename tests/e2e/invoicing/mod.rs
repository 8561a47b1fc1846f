//! The monthly close and what follows it: periods in each tenant's zone (DST months, the last
//! day at 23:30, a leap February, yen), cent-exact sums, exactly one invoice under concurrent
//! and repeated closes, gapless numbers across a void, adjustments for changes after an
//! invoice, payments, the overdue sweep, and Stripe mode against a fake Stripe.
//!
//! Bookings are published straight to JetStream as ingest would after verifying them (ingest's
//! checks and its per-tenant rate limit are tested in `crate::ingest`).

mod close;
mod lifecycle;
mod operators;
mod stripe;
mod support;

pub(crate) use support::{Publisher, client, issued, ledger_has};
