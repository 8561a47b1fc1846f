//! Every reason the ledger dead-letters an event, each produced through the path that really
//! leads there: a signed webhook or a SimplyBook callback through ingest where ingest lets it
//! pass, a raw publish on the webhook stream where ingest would refuse it first (these tests run
//! on the shared NATS server without permissions, in their own namespace, so they may publish
//! where only ingest may in production). For each one: the dead letter is listed with its reason
//! by `ListDeadLetters` and by `billingctl dlq list --json`, the audit log says `dead_lettered`
//! with the same reason, `ledger_dead_letters_total` counts it, and the next event on the stream
//! is still processed.
//!
//! Covered elsewhere: `invalid_amount` and `database_refused` (ledger_consumer.rs),
//! `unconfirmed_callback` (fetch_on_notify.rs).

mod malformed;
mod mismatches;
mod support;
