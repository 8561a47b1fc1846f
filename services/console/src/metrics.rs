//! What the console's metrics mean: HELP text and a unit for every metric this crate emits,
//! registered by [`describe`] at start-up (`http_server_seconds` is the runtime's,
//! `billing_runtime::metric_docs`). The unit test checks that every metric emitted under `src/`
//! is described here, as its kind, and that nothing else is.

use ::metrics::{Unit, describe_counter};

/// Describes the console's metrics. Call once the recorder is installed
/// (`billing_runtime::ops::prometheus()`), before `/metrics` is served.
pub(crate) fn describe() {
    describe_counter!(
        "console_logins_total",
        Unit::Count,
        "Sign-in attempts, per outcome (signed_in; refused: wrong name or password; throttled: answered 429 before any password check, for the client address's or the global sign-in rate, a name locked after five failures within 15 minutes, or every password check slot busy)."
    );
    describe_counter!(
        "console_refusals_total",
        Unit::Count,
        "POSTs refused with 403, per reason (csrf: the form's token was missing or not the session's; role: the operator's role may not make the write)."
    );
    describe_counter!(
        "console_writes_total",
        Unit::Count,
        "Writes the console made for an operator after confirmation, per write (record_payment, void_invoice, resend_invoice_email, replay_dead_letter, reconcile_simplybook)."
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_the_console_emits_is_described_and_well_named() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let described = billing_runtime::metric_docs::check(&src, super::describe)
            .unwrap_or_else(|problems| panic!("{problems}"));
        assert!(!described.is_empty());
    }
}
