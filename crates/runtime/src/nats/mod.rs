//! JetStream: connection, the streams every service relies on, subject names and the headers
//! that carry verified metadata next to a raw body.
//!
//! Tests run many systems side by side on one NATS server, so every subject and stream name can
//! carry a namespace (`t42.webhooks.simplybook.claire` in stream `T42_WEBHOOKS`); production runs
//! with an empty namespace.
//!
//! # Layout
//!
//! - `headers`: the headers every event carries (source, tenant, identity, how it was
//!   authenticated) and the dead-letter ones, and reading or copying them.
//! - `subjects`: subject and stream names in a namespace, and the streams with the settings the
//!   system's guarantees rest on.
//! - `identity`: who a service is to NATS, connecting as it, and the settings macro
//!   (`billing_runtime::nats_identity_settings!`, exported at the crate root).
//! - `consume`: durable pull consumers, pulling messages one by one or in batches, and their
//!   lag as metrics.
//! - `liveness`: a connection whose server went silent given up at the first doubt, not after
//!   the pings.
//! - `scrub`: old dead letters of raw webhooks stripped of personal data.
//! - `settle`: each consumed message's fate: acked, retried after a growing delay, or
//!   dead-lettered.

mod consume;
mod headers;
mod identity;
mod liveness;
pub mod scrub;
mod settle;
mod subjects;

pub use consume::{consume, consume_batches, durable_consumer, report_consumers};
pub use headers::{
    AUTH_CALLBACK_TOKEN, AUTH_RECONCILIATION_REPAIR, AUTH_STANDARD_WEBHOOKS, AUTH_STRIPE_SIGNATURE,
    HDR_AUTH, HDR_DLQ_REASON, HDR_DLQ_SUBJECT, HDR_EVENT_ID, HDR_EVENT_TYPE, HDR_RECEIVED_AT,
    HDR_SENT_AT, HDR_SOURCE, HDR_TENANT, NATS_MSG_ID, header, headers_without,
};
pub use identity::{NatsIdentity, connect, connect_as, connections_lost, jetstream, requires_tls};
pub use liveness::{Liveness, Probe};
pub use settle::{Disposition, Settled, Settler, dead_letter, retry_delay};
pub use subjects::Subjects;
