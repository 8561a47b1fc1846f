//! Settling a consumed message as its consumer decided: acknowledged, delivered again after a
//! delay that grows with each delivery, or published with its reason to a dead-letter subject
//! and acknowledged.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::AckKind;

use super::headers::{HDR_DLQ_REASON, HDR_DLQ_SUBJECT, NATS_MSG_ID, headers_without};

/// How long to wait before the next delivery of a message already delivered `delivered` times:
/// one more second per attempt, capped at `max`, so an outage does not spin.
pub fn retry_delay(delivered: i64, max: Duration) -> Duration {
    let secs = u64::try_from(delivered.max(1)).unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(max)
}

/// Publishes `msg`'s body unchanged to the dead-letter `subject` with its original headers, the
/// subject it came from and `reason`, and waits for JetStream's ack. `message_id` deduplicates a
/// retried dead-lettering.
pub async fn dead_letter(
    js: &jetstream::Context,
    subject: String,
    msg: &async_nats::Message,
    message_id: &str,
    reason: &str,
) -> Result<(), async_nats::Error> {
    let mut headers = headers_without(msg.headers.as_ref(), &[NATS_MSG_ID]);
    headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id);
    headers.insert(HDR_DLQ_SUBJECT, msg.subject.as_str());
    // Header values cannot hold line breaks.
    headers.insert(HDR_DLQ_REASON, reason.replace(['\r', '\n'], " "));
    js.publish_with_headers(subject, headers, msg.payload.clone())
        .await?
        .await?;
    Ok(())
}

/// What becomes of a consumed message. Every consumer decides one of these for each message, and
/// [`Settler::settle`] carries it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done (or a duplicate of something done): acknowledged.
    Ack,
    /// A transient failure (the database, the broker, an outside API): delivered again after a
    /// delay that grows with each delivery ([`retry_delay`]).
    Retry(String),
    /// It can never succeed: published with its reason to the consumer's dead-letter subject,
    /// then acknowledged, so the messages behind it keep flowing.
    DeadLetter(String),
}

/// What [`Settler::settle`] did, for the consumer's own metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Acked,
    Retried(Duration),
    DeadLettered,
    /// The dead-letter publish failed: the message comes back in 5 s to be dead-lettered again.
    DeadLetterFailed,
}

/// A consumer's dead-letter subject (`Subjects::dead_letter`) and its longest retry delay.
pub struct Settler {
    pub js: jetstream::Context,
    pub dead_letter_subject: String,
    pub max_retry_delay: Duration,
}

impl Settler {
    /// Carries out `disposition` for `msg`. A failed acknowledgement is only logged: the
    /// message is delivered again after its ack wait, and handling it is idempotent.
    pub async fn settle(&self, msg: &jetstream::Message, disposition: Disposition) -> Settled {
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
        let (settled, result) = match disposition {
            Disposition::Ack => (Settled::Acked, msg.ack().await),
            Disposition::Retry(reason) => {
                let delay = retry_delay(delivered, self.max_retry_delay);
                tracing::warn!(delivered, reason, ?delay, "event will be retried");
                (
                    Settled::Retried(delay),
                    msg.ack_with(AckKind::Nak(Some(delay))).await,
                )
            }
            Disposition::DeadLetter(reason) => {
                let message_id = msg
                    .info()
                    .map(|i| format!("dlq:{}:{}", i.stream, i.stream_sequence))
                    .unwrap_or_else(|_| format!("dlq:{}", uuid::Uuid::now_v7()));
                let subject = self.dead_letter_subject.clone();
                match dead_letter(&self.js, subject, msg, &message_id, &reason).await {
                    Ok(()) => {
                        tracing::warn!(reason, subject = %self.dead_letter_subject, "event dead-lettered");
                        (Settled::DeadLettered, msg.ack().await)
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "dead-letter publish failed, will retry");
                        let retry = AckKind::Nak(Some(Duration::from_secs(5)));
                        (Settled::DeadLetterFailed, msg.ack_with(retry).await)
                    }
                }
            }
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, "acknowledging failed");
        }
        settled
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_grows_by_a_second_per_delivery_up_to_the_cap() {
        let max = Duration::from_secs(30);
        assert_eq!(retry_delay(0, max), Duration::from_secs(1));
        assert_eq!(retry_delay(1, max), Duration::from_secs(1));
        assert_eq!(retry_delay(7, max), Duration::from_secs(7));
        assert_eq!(retry_delay(500, max), max);
    }
}
