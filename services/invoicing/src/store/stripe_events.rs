//! Stripe's invoice events as invoicing keeps them (`stripe_events`): each event id claimed
//! once, then what became of it ([`StripeOutcome`]) and why; and what deciding an event reads
//! besides the invoice.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::Store;
use super::mode::InvoicingMode;

// Bound and read as the `text` it is stored as: `query!(…, outcome as StripeOutcome)`.
billing_runtime::text_enum! {
    /// What became of a Stripe event. [`StripeOutcome::as_str`] is the only spelling
    /// (`stripe_events.outcome`, the `invoicing_stripe_events_total` label, logs);
    /// [`FromStr`](std::str::FromStr) is its inverse. In SQL it binds and decodes as `text`. One
    /// spelling is also written into SQL: the partial index `stripe_events_refused_idx` is
    /// `where outcome = 'refused'`; a test below pins it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum StripeOutcome as "Stripe event outcome" {
        /// Claimed, not decided yet: what claiming an event writes. Its decision replaces it in
        /// the same transaction, so no committed row keeps it.
        Received = "received",
        Applied = "applied",
        /// Already seen (same event id): the claim found it, and nothing is written.
        Duplicate = "duplicate",
        /// Arrived after a later state was reached; nothing to do.
        Stale = "stale",
        /// Names no invoice of ours and is about no Stripe invoice we made.
        Unmatched = "unmatched",
        /// Names one of our invoices but is not bound to it: nothing changed, an alert was
        /// raised.
        Refused = "refused",
        /// An event type invoicing does not act on.
        Ignored = "ignored",
    }
}

impl Store {
    /// Claims a Stripe event id; `false` when it was already handled.
    pub async fn claim_stripe_event(
        &self,
        tx: &mut PgConnection,
        event_id: &str,
        event_type: &str,
        created: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let inserted = sqlx::query!(
            "insert into invoicing.stripe_events (event_id, event_type, created, outcome)
             values ($1, $2, $3, $4) on conflict do nothing",
            event_id,
            event_type,
            created,
            StripeOutcome::Received as StripeOutcome
        )
        .execute(tx)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// What became of a claimed Stripe event and why; `invoice_id` only for an invoice that
    /// exists.
    pub async fn stripe_event_outcome(
        &self,
        tx: &mut PgConnection,
        event_id: &str,
        invoice_id: Option<Uuid>,
        outcome: StripeOutcome,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "update invoicing.stripe_events set invoice_id = $2, outcome = $3, reason = $4
             where event_id = $1",
            event_id,
            invoice_id,
            outcome as StripeOutcome,
            reason
        )
        .execute(tx)
        .await?;
        Ok(())
    }

    /// Our invoice whose Stripe invoice id is `stripe_id`, for an event that names none.
    pub async fn by_stripe_id(&self, stripe_id: &str) -> Result<Option<Uuid>, sqlx::Error> {
        sqlx::query_scalar!(
            "select id from invoicing.invoices where stripe_invoice_id = $1",
            stripe_id
        )
        .fetch_optional(&self.pool)
        .await
    }

    /// The tenant's invoicing mode now; `None` without a profile.
    pub async fn tenant_mode(
        &self,
        conn: &mut PgConnection,
        tenant_id: &str,
    ) -> Result<Option<InvoicingMode>, sqlx::Error> {
        sqlx::query_scalar!(
            r#"select invoicing_mode as "invoicing_mode: InvoicingMode"
               from invoicing.tenant_profiles where tenant_id = $1"#,
            tenant_id
        )
        .fetch_optional(conn)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::StripeOutcome;

    #[test]
    fn every_stripe_outcome_parses_back_from_its_name_and_nothing_else_parses() {
        for outcome in StripeOutcome::ALL {
            assert_eq!(outcome.as_str().parse(), Ok(outcome));
            assert_eq!(outcome.to_string(), outcome.as_str());
        }
        assert_eq!(
            "Applied".parse::<StripeOutcome>(),
            Err("unknown Stripe event outcome \"Applied\"".to_string())
        );
        assert!("".parse::<StripeOutcome>().is_err());
    }

    #[test]
    fn refused_is_spelled_as_the_refusals_index_writes_it() {
        // `stripe_events_refused_idx ... where outcome = 'refused'` (migration 0004).
        assert_eq!(StripeOutcome::Refused.as_str(), "refused");
    }
}
