//! What invoicing's metrics mean: HELP text and a unit for every metric this crate emits,
//! registered by [`describe`] at start-up. The metrics every service shares (`grpc_server_seconds`,
//! `outbox_*`, `nats_consumer_*`, …) are described by `billing_runtime::metric_docs`. The unit
//! test checks that every metric emitted under `src/` is described here, as its kind, and that
//! nothing else is.

use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

// `mod metrics` hides the `metrics` crate from lib.rs: its `metrics::counter!(…)` calls reach the
// crate's macro through this.
pub(crate) use ::metrics::counter;

/// Describes invoicing's metrics. Call once the recorder is installed
/// (`billing_runtime::ops::prometheus()`), before `/metrics` is served.
pub(crate) fn describe() {
    describe_counter!(
        "invoicing_close_outcomes_total",
        Unit::Count,
        "Monthly closes of one tenant's period (dry runs not counted), per outcome (issued, already_issued, nothing_billable, failed). The InvoiceGenerationFailed alert reads failed."
    );
    describe_histogram!(
        "invoicing_close_seconds",
        Unit::Seconds,
        "Time to close one tenant's period (dry runs not counted)."
    );
    describe_counter!(
        "invoicing_invoices_issued_total",
        Unit::Count,
        "Invoices made by the monthly close."
    );
    describe_counter!(
        "invoicing_invoices_voided_total",
        Unit::Count,
        "Invoices voided."
    );
    describe_counter!(
        "invoicing_emails_resent_total",
        Unit::Count,
        "Invoice emails asked for once more (ResendInvoiceEmail); the notifier sends each."
    );
    describe_counter!(
        "invoicing_invoices_overdue_total",
        Unit::Count,
        "Invoices marked overdue by the overdue sweep."
    );
    describe_counter!(
        "invoicing_payments_recorded_total",
        Unit::Count,
        "Payments recorded against invoices, per method (bank_transfer, stripe)."
    );
    describe_counter!(
        "invoicing_overpayments_total",
        Unit::Count,
        "Bank transfers recorded that left an invoice paid beyond its total."
    );
    describe_counter!(
        "invoicing_bank_transfers_total",
        Unit::Count,
        "Bank transfers submitted for matching, per outcome (recorded, already_recorded, would_record, unmatched)."
    );
    describe_counter!(
        "invoicing_stripe_events_total",
        Unit::Count,
        "Stripe invoice events handled, per event type (other for one not handled) and outcome (applied, duplicate, stale, unmatched, refused, ignored)."
    );
    describe_counter!(
        "invoicing_stripe_events_refused_total",
        Unit::Count,
        "Stripe events refused and not applied, each recorded with its reason; the operator is alerted once per invoice and day."
    );
    describe_counter!(
        "invoicing_stripe_failures_total",
        Unit::Count,
        "Drafts the monthly close could not push to Stripe (the close fails; running it again pushes them)."
    );
    describe_counter!(
        "invoicing_dead_letters_total",
        Unit::Count,
        "Events invoicing can never handle, moved to the dead-letter stream, per consumer."
    );
    describe_gauge!(
        "invoicing_open_invoices",
        Unit::Count,
        "Invoices not settled yet, per status (draft, issued, partially_paid, overdue), refreshed every minute from the database."
    );
    describe_gauge!(
        "invoicing_unpaid_past_due_48h_invoices",
        Unit::Count,
        "Open invoices still unpaid more than two days after their due date in the tenant's time zone, refreshed every minute. The InvoiceUnpaid48hAfterDue alert reads it."
    );
    describe_gauge!(
        "invoicing_statement_open_differences",
        Unit::Count,
        "Differences neither explained nor fixed on each tenant's latest month statement (SimplyBook, ledger, invoice, deposits), refreshed every minute from the last composition. The MonthStatementDifferences alert reads it."
    );
    describe_gauge!(
        "invoicing_statement_missing_deposits",
        Unit::Count,
        "Bookings whose session passed with no deposit received, on each tenant's latest month statement, refreshed every minute. The DepositsMissing alert reads it."
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_invoicing_emits_is_described_and_well_named() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let described = billing_runtime::metric_docs::check(&src, super::describe)
            .unwrap_or_else(|problems| panic!("{problems}"));
        assert!(!described.is_empty());
    }
}
