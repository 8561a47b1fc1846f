//! What ingest's metrics mean: HELP text and a unit for every metric this crate emits,
//! registered by [`describe`] at start-up. The metrics every service shares (`http_server_seconds`,
//! `nats_consumer_*`, …) are described by `billing_runtime::metric_docs`. The unit test checks that
//! every metric emitted under `src/` is described here, as its kind, and that nothing else is.

use ::metrics::{Unit, describe_counter, describe_gauge};

/// Describes ingest's metrics. Call once the recorder is installed
/// (`billing_runtime::ops::prometheus()`), before `/metrics` is served.
pub(crate) fn describe() {
    describe_counter!(
        "ingest_webhooks_accepted_total",
        Unit::Count,
        "Webhooks stored on the JetStream webhook stream and answered 202, per source (simplybook, stripe)."
    );
    describe_counter!(
        "ingest_webhooks_duplicate_total",
        Unit::Count,
        "Webhooks already stored under the same webhook id, answered 200 duplicate and not stored again, per source."
    );
    describe_counter!(
        "ingest_webhooks_failed_total",
        Unit::Count,
        "Webhooks refused (401, 400) or not stored because JetStream did not acknowledge them, per source; rate-limited ones are not failures. The WebhooksFailing alert compares it with ingest_webhooks_accepted_total."
    );
    describe_counter!(
        "ingest_webhooks_rejected_total",
        Unit::Count,
        "Webhooks refused before anything was stored, per source and reason (bad_signature, unknown_tenant, bad_token, company_mismatch, not_configured, malformed, rate_limited, ...)."
    );
    describe_counter!(
        "ingest_publish_retries_total",
        Unit::Count,
        "Publishes tried again because JetStream could not take them for a reason that passes (no stream leader during an election, no ack in time), per source; within INGEST_PUBLISH_RETRY_MS."
    );
    describe_counter!(
        "ingest_webhooks_unavailable_total",
        Unit::Count,
        "Authenticated webhooks JetStream did not acknowledge in time, answered 503 with Retry-After so the sender retries, per source."
    );
    describe_counter!(
        "ingest_rejection_audits_total",
        Unit::Count,
        "Audit records of refused webhooks, per result: published to the ledger's audit log, failed to publish, or dropped_rate_limited (over INGEST_REJECTION_AUDIT_PER_SEC)."
    );
    describe_gauge!(
        "ingest_connections_open",
        Unit::Count,
        "HTTP connections this replica holds open now (at most INGEST_MAX_CONNECTIONS)."
    );
    describe_counter!(
        "ingest_connection_limit_reached_total",
        Unit::Count,
        "Times INGEST_MAX_CONNECTIONS connections were open, so the next connection waited to be accepted."
    );
    describe_counter!(
        "ingest_connections_refused_total",
        Unit::Count,
        "Connections closed for sending their headers too slowly (header_timeout) or too many of them (header_too_large), per reason."
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_ingest_emits_is_described_and_well_named() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let described = billing_runtime::metric_docs::check(&src, super::describe)
            .unwrap_or_else(|problems| panic!("{problems}"));
        assert!(!described.is_empty());
    }
}
