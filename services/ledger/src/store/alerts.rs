//! Operator alerts, queued in the outbox for the relay.

use billing_proto::events::AlertV1;
use prost::Message as _;

use super::handle::Store;

impl Store {
    /// Queues an operator alert for the outbox relay; the same alert id is queued once.
    pub async fn enqueue_alert(&self, alert: &AlertV1) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "insert into ledger.outbox (subject, message_id, payload, traceparent)
             values ($1, $2, $3, $4)
             on conflict (message_id) do nothing",
            self.subjects.alert(&alert.kind),
            format!("alert:{}", alert.alert_id),
            alert.encode_to_vec(),
            billing_runtime::trace::current_traceparent()
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
