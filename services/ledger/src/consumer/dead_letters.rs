//! Dead letters: an event that can never be applied is published to the dead-letter stream with
//! its reason, then audited, then let go; a booking whose value nobody knows also alerts the
//! operator.

use std::sync::Arc;

use async_nats::jetstream;
use billing_runtime::{Subjects, nats};
use tokio::sync::Notify;

use super::message::{Disposition, Meta};
use crate::outcome::Reject;
use crate::store::Store;

/// Parks events on the dead-letter stream and audits them.
pub(super) struct DeadLetters {
    pub(super) js: jetstream::Context,
    pub(super) subjects: Subjects,
    pub(super) store: Store,
    /// Woken when an alert is queued, to relay it at once.
    pub(super) relay: Arc<Notify>,
}

impl DeadLetters {
    /// Dead-letters a booking event of `consumer`.
    pub(super) async fn booking(
        &self,
        msg: &jetstream::Message,
        consumer: &str,
        reject: &Reject,
    ) -> Disposition {
        let meta = Meta::of(msg);
        let disposition = self
            .dead_letter(
                msg,
                consumer,
                "simplybook",
                &meta.event_id,
                meta.tenant,
                reject,
            )
            .await;
        if matches!(disposition, Disposition::Ack) && reject.code == "price_unknown" {
            // A booking whose value nobody knows is not billed: someone must look now.
            if let Err(err) = self
                .alert_price_unknown(meta.tenant, &meta.event_id, reject)
                .await
            {
                return Disposition::Retry(format!("database: {err}"));
            }
        }
        disposition
    }

    async fn alert_price_unknown(
        &self,
        tenant: &str,
        event_id: &str,
        reject: &Reject,
    ) -> Result<(), sqlx::Error> {
        let now = chrono::Utc::now();
        let alert = billing_proto::events::AlertV1 {
            alert_id: format!("price_unknown:{tenant}:{event_id}"),
            kind: "price_unknown".into(),
            severity: "warning".into(),
            summary: format!("A SimplyBook booking of tenant {tenant} has no known price"),
            details: format!(
                "{}. The booking is not recorded and will not be billed. Its event is in the \
                 dead letters (`billingctl dlq list --consumer ledger`); once SimplyBook shows \
                 its price (its payments feature, or the service's price), replay it with \
                 `billingctl dlq replay`.",
                reject.message
            ),
            tenant_id: tenant.to_string(),
            source: "ledger".into(),
            raised_at: Some(billing_proto::convert::timestamp(now)),
        };
        self.store.enqueue_alert(&alert).await?;
        self.relay.notify_one();
        Ok(())
    }

    /// Publishes the event to the dead-letter stream, then audits it, then lets it go.
    pub(super) async fn dead_letter(
        &self,
        msg: &jetstream::Message,
        consumer: &str,
        source: &str,
        event_id: &str,
        tenant: &str,
        reject: &Reject,
    ) -> Disposition {
        let stream_seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
        let reason = format!("{}: {}", reject.code, reject.message);
        // Keyed by the stream position: a redelivery is not dead-lettered twice, but a replayed
        // event that fails again is (it has a new position).
        let published = nats::dead_letter(
            &self.js,
            self.subjects.dead_letter("webhooks", consumer),
            msg,
            &format!("dlq:webhooks:{stream_seq}"),
            &reason,
        )
        .await;
        if let Err(err) = published {
            return Disposition::Retry(format!("dead-letter publish: {err}"));
        }
        let tenant = (!tenant.is_empty()).then_some(tenant);
        if let Err(err) = self
            .store
            .record_dead_letter(source, event_id, tenant, &reason, stream_seq)
            .await
        {
            return Disposition::Retry(format!("database: {err}"));
        }
        metrics::counter!("ledger_dead_letters_total", "reason" => reject.code).increment(1);
        // SimplyBook's own answer is logged (its code and message, never a credential); other
        // reasons can quote the payload, which may hold a client's details, so only their code.
        let detail = matches!(reject.code, "unconfirmed_callback" | "price_unknown")
            .then_some(reject.message.as_str());
        tracing::warn!(
            event_id,
            tenant,
            reason = reject.code,
            detail,
            "event dead-lettered"
        );
        Disposition::Ack
    }
}
