//! Stripe's invoice events as invoicing keeps them (`stripe_events`): each event id claimed
//! once, then what became of it and why; and what deciding an event reads besides the invoice.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::Store;

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
             values ($1, $2, $3, 'received') on conflict do nothing",
            event_id,
            event_type,
            created
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
        outcome: &str,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "update invoicing.stripe_events set invoice_id = $2, outcome = $3, reason = $4
             where event_id = $1",
            event_id,
            invoice_id,
            outcome,
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

    /// The tenant's invoicing mode now (`manual` or `stripe`); `None` without a profile.
    pub async fn tenant_mode(
        &self,
        conn: &mut PgConnection,
        tenant_id: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar!(
            "select invoicing_mode from invoicing.tenant_profiles where tenant_id = $1",
            tenant_id
        )
        .fetch_optional(conn)
        .await
    }
}
