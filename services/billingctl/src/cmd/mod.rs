//! One module a noun, each with its clap subcommands and its `run`. They depend on `clients`,
//! `output`, `exit` and `progress`, never on each other.

pub mod bookings;
pub mod clients;
pub mod dlq;
pub mod events;
pub mod export;
pub mod invoices;
pub mod onboard;
pub mod reconcile;
pub mod report;
pub mod simplybook;
pub mod tenants;
