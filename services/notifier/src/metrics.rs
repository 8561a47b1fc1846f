//! What the notifier's metrics mean: HELP text and a unit for every metric this crate emits,
//! registered by [`describe`] at start-up. The metrics every service shares (`grpc_server_seconds`,
//! `nats_consumer_*`, …) are described by `billing_runtime::metric_docs`. The unit test checks
//! that every metric emitted under `src/` is described here, as its kind, and that nothing else
//! is.

use ::metrics::{Unit, describe_counter, describe_histogram};

// `mod metrics` hides the `metrics` crate from lib.rs: its `metrics::counter!(…)` calls reach the
// crate's macro through this.
pub(crate) use ::metrics::counter;

/// Describes the notifier's metrics. Call once the recorder is installed
/// (`billing_runtime::ops::prometheus()`), before `/metrics` is served.
pub(crate) fn describe() {
    describe_counter!(
        "notifier_emails_total",
        Unit::Count,
        "Emails the notifier tried to send, per kind (invoice_issued, payment_reminder, payment_received, operator_alert) and result (sent, duplicate, deferred, rejected, server_refused, db_error). The EmailsNotDelivered alert reads rejected and server_refused."
    );
    describe_histogram!(
        "notifier_pdf_render_seconds",
        Unit::Seconds,
        "Time to render one invoice's PDF."
    );
    describe_counter!(
        "notifier_retries_total",
        Unit::Count,
        "Events handed back to JetStream to be delivered again later (mail server or invoicing unavailable), per consumer."
    );
    describe_counter!(
        "notifier_dead_letters_total",
        Unit::Count,
        "Events the notifier can never handle (an email refused for good included), moved to the dead-letter stream, per consumer."
    );
    describe_counter!(
        "notifier_alerts_raised_total",
        Unit::Count,
        "Operator alerts the notifier published on the ALERTS stream (an email refused for good), per kind."
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_the_notifier_emits_is_described_and_well_named() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let described = billing_runtime::metric_docs::check(&src, super::describe)
            .unwrap_or_else(|problems| panic!("{problems}"));
        assert!(!described.is_empty());
    }
}
