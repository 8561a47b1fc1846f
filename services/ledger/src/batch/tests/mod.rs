//! The batch plan's tests: every rule, table-driven, and the property that any delivery of a
//! history ends in the same bookings. They play batches against an in-memory model of the
//! tables ([`testkit`]), so they need no database.

mod convergence;
mod money;
mod records;
mod state;
mod testkit;
