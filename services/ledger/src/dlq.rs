//! Dead letters, every service's: listing them and replaying one. Each consumer that gives up on an
//! event parks it in the DLQ stream (`dlq.<stream>.<consumer>`) with the original body and
//! headers, the subject it came from and the reason. A replay publishes the event again on that
//! subject, where its consumer processes it anew (every consumer is idempotent, so another
//! consumer of the same subject seeing it again changes nothing). The ledger serves this for all
//! services: the DLQ stream is shared, and billingctl needs one place to look.

use async_nats::jetstream::{self, message::StreamMessage, stream::LastRawMessageErrorKind};
use billing_proto::ledger::DeadLetter;
use billing_runtime::Subjects;
use billing_runtime::nats::scrub::{HDR_DLQ_AT, HDR_DLQ_SCRUBBED};
use billing_runtime::nats::{
    HDR_DLQ_REASON, HDR_DLQ_SUBJECT, HDR_EVENT_ID, HDR_TENANT, NATS_MSG_ID, headers_without,
};
use tonic::Status;

pub struct DeadLetters {
    js: jetstream::Context,
    subjects: Subjects,
}

fn unavailable(err: impl std::fmt::Display) -> Status {
    tracing::warn!(error = %err, "dead-letter stream unavailable");
    Status::unavailable("the dead-letter stream is unavailable, retry later")
}

impl DeadLetters {
    pub fn new(js: jetstream::Context, subjects: Subjects) -> Self {
        DeadLetters { js, subjects }
    }

    /// The consumer a dead letter's subject names (`dlq.<stream>.<consumer>`).
    fn consumer_of<'a>(&self, subject: &'a str) -> Option<&'a str> {
        // `{namespace}dlq..` without its last dot: `{namespace}dlq.`
        let base = self.subjects.dead_letter("", "");
        let head = base.strip_suffix('.')?;
        let rest = subject.strip_prefix(head)?;
        let (_stream, consumer) = rest.split_once('.')?;
        (!consumer.is_empty() && !consumer.contains('.')).then_some(consumer)
    }

    async fn stream(&self) -> Result<jetstream::stream::Stream, Status> {
        self.js
            .get_stream(self.subjects.stream_name("DLQ"))
            .await
            .map_err(unavailable)
    }

    /// `m` as one of the ledger's dead letters; `None` when another service wrote it.
    fn describe(&self, m: &StreamMessage) -> Option<DeadLetter> {
        let consumer = self.consumer_of(m.subject.as_str())?;
        let header = |name: &str| {
            m.headers
                .get(name)
                .map(|v| v.as_str().to_string())
                .unwrap_or_default()
        };
        let nanos = m.time.unix_timestamp_nanos();
        let stored =
            chrono::DateTime::from_timestamp_nanos(i64::try_from(nanos).unwrap_or(i64::MAX));
        // A scrubbed dead letter was published again: when it was first dead-lettered is kept.
        let at = m
            .headers
            .get(HDR_DLQ_AT)
            .and_then(|v| chrono::DateTime::parse_from_rfc3339(v.as_str()).ok())
            .map_or(stored, |t| t.with_timezone(&chrono::Utc));
        Some(DeadLetter {
            sequence: m.sequence,
            consumer: consumer.to_string(),
            original_subject: header(HDR_DLQ_SUBJECT),
            event_id: header(HDR_EVENT_ID),
            tenant_id: header(HDR_TENANT),
            reason: header(HDR_DLQ_REASON),
            dead_lettered_at: Some(billing_proto::convert::timestamp(at)),
        })
    }

    /// Up to `limit` dead letters after `after`, optionally of one tenant and one consumer.
    pub async fn list(
        &self,
        tenant: &str,
        consumer: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, Status> {
        let stream = self.stream().await?;
        let filter = match consumer {
            "" => self.subjects.dead_letter("*", "*"),
            consumer => self.subjects.dead_letter("*", consumer),
        };
        let mut next = after + 1;
        let mut found = Vec::new();
        while found.len() < limit {
            let m = match stream.get_first_raw_message_by_subject(&filter, next).await {
                Ok(m) => m,
                Err(err) if matches!(err.kind(), LastRawMessageErrorKind::NoMessageFound) => break,
                Err(err) => return Err(unavailable(err)),
            };
            next = m.sequence + 1;
            if let Some(letter) = self.describe(&m)
                && (tenant.is_empty() || letter.tenant_id == tenant)
            {
                found.push(letter);
            }
        }
        Ok(found)
    }

    /// Whether `consumer`'s dead letters may be replayed on `subject`: the subjects each durable
    /// consumer reads.
    fn replayable(&self, consumer: &str, subject: &str) -> bool {
        let s = &self.subjects;
        let prefixes: Vec<String> = match consumer {
            "ledger" => vec![s.simplybook("")],
            "ledger-rejections" => vec![s.rejected("")],
            "invoicing-stripe" => return subject == s.stripe(),
            "invoicing-bookings" => vec![s.booking_event("")],
            "notifier-invoices" => vec![s.invoice("")],
            "notifier-alerts" => vec![s.alert("")],
            _ => return false,
        };
        prefixes.iter().any(|p| {
            subject
                .strip_prefix(p.as_str())
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('.'))
        })
    }

    /// Publishes dead letter `sequence`'s event again on its original subject. Replaying the same
    /// one twice within JetStream's dedup window publishes it once.
    pub async fn replay(&self, sequence: u64) -> Result<(DeadLetter, bool), Status> {
        let stream = self.stream().await?;
        let m = match stream.get_raw_message(sequence).await {
            Ok(m) => m,
            Err(err) if matches!(err.kind(), LastRawMessageErrorKind::NoMessageFound) => {
                return Err(Status::not_found(format!("no dead letter {sequence}")));
            }
            Err(err) => return Err(unavailable(err)),
        };
        // Only a dead letter: its consumer wrote the original subject from a message it consumed.
        let letter = self.describe(&m).ok_or_else(|| {
            Status::failed_precondition(format!("message {sequence} is not a dead letter"))
        })?;
        // Only onto a subject its consumer reads: a dead letter someone forged to name another
        // subject (an invoice event, an anchor) is never published by the ledger.
        if !self.replayable(&letter.consumer, &letter.original_subject) {
            return Err(Status::failed_precondition(format!(
                "dead letter {sequence} of {} names subject {}, which that consumer does not read",
                letter.consumer, letter.original_subject
            )));
        }
        let mut headers = headers_without(
            Some(&m.headers),
            &[
                NATS_MSG_ID,
                HDR_DLQ_REASON,
                HDR_DLQ_SUBJECT,
                HDR_DLQ_SCRUBBED,
                HDR_DLQ_AT,
            ],
        );
        headers.insert(NATS_MSG_ID, format!("replay:{sequence}").as_str());
        let ack = self
            .js
            .publish_with_headers(letter.original_subject.clone(), headers, m.payload.clone())
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        tracing::info!(
            sequence,
            event_id = letter.event_id,
            duplicate = ack.duplicate,
            "dead letter replayed"
        );
        Ok((letter, !ack.duplicate))
    }
}
