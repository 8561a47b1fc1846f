//! What the consumers read from a message's headers, and how a handled message is settled:
//! acked, or handed back for a delayed redelivery.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use billing_runtime::nats::{self, HDR_EVENT_ID, HDR_RECEIVED_AT, HDR_SENT_AT, HDR_TENANT, header};

/// What the ledger reads from a message's headers.
pub(super) struct Meta<'a> {
    pub(super) event_id: String,
    pub(super) tenant: &'a str,
    pub(super) stream_seq: u64,
    pub(super) delivered: i64,
}

impl<'a> Meta<'a> {
    pub(super) fn of(msg: &'a jetstream::Message) -> Self {
        let (stream_seq, delivered) = msg
            .info()
            .map(|i| (i.stream_sequence, i.delivered))
            .unwrap_or((0, 1));
        Meta {
            event_id: header(msg, HDR_EVENT_ID)
                .map(str::to_string)
                .unwrap_or_else(|| format!("webhooks-seq:{stream_seq}")),
            tenant: header(msg, HDR_TENANT).unwrap_or(""),
            stream_seq,
            delivered,
        }
    }
}

/// What to do with a message once handled.
pub(super) enum Disposition {
    Ack,
    /// A transient failure (database or broker): try again later.
    Retry(String),
}

/// Acks a handled message, or asks for a delayed redelivery after a transient failure.
pub(super) async fn settle(
    msg: &jetstream::Message,
    event_id: &str,
    delivered: i64,
    disposition: Disposition,
) {
    let result = match disposition {
        Disposition::Ack => msg.ack().await,
        Disposition::Retry(reason) => {
            metrics::counter!("ledger_event_retries_total").increment(1);
            let delay = nats::retry_delay(delivered, Duration::from_secs(30));
            tracing::warn!(event_id, delivered, reason, ?delay, "event will be retried");
            msg.ack_with(AckKind::Nak(Some(delay))).await
        }
    };
    if let Err(err) = result {
        // The event will be redelivered after ack_wait; processing is idempotent.
        tracing::warn!(event_id, error = %err, "acknowledging failed");
    }
}

/// When the sender signed the event; without that header, when ingest received it.
pub(super) fn sent_at(msg: &jetstream::Message) -> chrono::DateTime<chrono::Utc> {
    header(msg, HDR_SENT_AT)
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .or_else(|| {
            header(msg, HDR_RECEIVED_AT)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
        })
        .unwrap_or_else(chrono::Utc::now)
}

/// Received-at-ingest to committed-in-ledger latency.
pub(super) fn observe_latency(msg: &jetstream::Message) {
    let received =
        header(msg, HDR_RECEIVED_AT).and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    if let Some(received) = received {
        let elapsed = chrono::Utc::now().signed_duration_since(received);
        if let Ok(elapsed) = elapsed.to_std() {
            metrics::histogram!("ledger_received_to_committed_seconds")
                .record(elapsed.as_secs_f64());
        }
    }
}
