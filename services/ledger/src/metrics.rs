//! What the ledger's metrics mean: HELP text and a unit for every metric this crate emits,
//! registered by [`describe`] at start-up. The metrics every service shares (`grpc_server_seconds`,
//! `outbox_*`, `nats_consumer_*`, …) are described by `billing_runtime::metric_docs`. The unit
//! test checks that every metric emitted under `src/` is described here, as its kind, and that
//! nothing else is.

use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

// `mod metrics` hides the `metrics` crate from lib.rs: its `metrics::counter!(…)` calls reach the
// crate's macro through this.
pub(crate) use ::metrics::counter;

/// Describes the ledger's metrics. Call once the recorder is installed
/// (`billing_runtime::ops::prometheus()`), before `/metrics` is served.
pub(crate) fn describe() {
    describe_counter!(
        "ledger_events_total",
        Unit::Count,
        "Booking events the ledger applied, per outcome (stored, status_changed, revised, stale, duplicate)."
    );
    describe_counter!(
        "ledger_dead_letters_total",
        Unit::Count,
        "Booking events that can never be applied, moved to the dead-letter stream, per reason (unconfirmed_callback, price_unknown, currency_mismatch, ...)."
    );
    describe_counter!(
        "ledger_db_write_failures_total",
        Unit::Count,
        "Batches PostgreSQL did not commit, per kind: unavailable (retried), refused (its events then applied one by one) or client_keys (a client data key could not be made or opened with the keyring; retried)."
    );
    describe_counter!(
        "ledger_clients_erased_total",
        Unit::Count,
        "Client data keys destroyed by erasure requests (EraseClient); their details are unreadable from then on."
    );
    describe_counter!(
        "ledger_event_retries_total",
        Unit::Count,
        "Booking events handed back to JetStream to be delivered again later (database or SimplyBook unavailable, lookups throttled)."
    );
    describe_histogram!(
        "ledger_batch_seconds",
        Unit::Seconds,
        "Time to decode, commit and acknowledge one batch of booking events."
    );
    describe_histogram!(
        "ledger_received_to_committed_seconds",
        Unit::Seconds,
        "Time from ingest receiving a webhook to the ledger committing its booking (duplicates not counted)."
    );
    describe_counter!(
        "ledger_integrity_checks_total",
        Unit::Count,
        "Hash-chain verifications of a tenant's records, per outcome (intact, violated). The LedgerChainBroken alert reads violated."
    );
    describe_counter!(
        "ledger_chain_anchors_total",
        Unit::Count,
        "Chain heads anchored on the LEDGER stream."
    );
    describe_counter!(
        "ledger_chain_anchors_refused_total",
        Unit::Count,
        "Anchors not made because the chain no longer extends its last anchor (history rewritten). The LedgerChainBroken alert reads it."
    );
    describe_counter!(
        "ledger_reconciliations_total",
        Unit::Count,
        "Reconciliations of a tenant's month against SimplyBook, per result (clean, gaps, failed, not_possible)."
    );
    describe_gauge!(
        "ledger_reconciliation_gaps",
        Unit::Count,
        "Differences the tenant's latest reconciliation found (missing bookings included), per tenant; 0 without a recent run."
    );
    describe_gauge!(
        "ledger_reconciliation_missing_bookings",
        Unit::Count,
        "SimplyBook bookings the ledger never recorded, as the tenant's latest reconciliation found them, per tenant."
    );
    describe_gauge!(
        "ledger_reconciliation_last_success_timestamp_seconds",
        Unit::Seconds,
        "When the tenant's last successful reconciliation finished, in seconds since the Unix epoch, per tenant."
    );
    describe_counter!(
        "ledger_simplybook_calls_total",
        Unit::Count,
        "Calls to SimplyBook's API, per JSON-RPC method (other for one not listed)."
    );
    describe_counter!(
        "ledger_simplybook_retries_total",
        Unit::Count,
        "SimplyBook calls that failed in transport and were tried again."
    );
    describe_counter!(
        "ledger_simplybook_lookups_throttled_total",
        Unit::Count,
        "SimplyBook lookups a tenant's callbacks asked for over LEDGER_SIMPLYBOOK_LOOKUPS_PER_SEC, refused (the event is delivered again later), per tenant."
    );
    describe_counter!(
        "ledger_simplybook_unmapped_labels_total",
        Unit::Count,
        "Bookings whose SimplyBook status label is not in the tenant's simplybook_status_labels, per tenant."
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_the_ledger_emits_is_described_and_well_named() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let described = billing_runtime::metric_docs::check(&src, super::describe)
            .unwrap_or_else(|problems| panic!("{problems}"));
        assert!(!described.is_empty());
    }
}
