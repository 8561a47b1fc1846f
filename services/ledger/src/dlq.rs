//! The ledger's dead letters: listing them and replaying one. Dead letters live in the DLQ stream
//! (`dlq.webhooks.<consumer>`) with the original body and headers, the subject they came from and
//! the reason; a replay publishes the event again on that subject for the ledger to process anew.

use async_nats::jetstream::{self, message::StreamMessage, stream::LastRawMessageErrorKind};
use billing_proto::ledger::DeadLetter;
use billing_runtime::Subjects;
use billing_runtime::nats::{
    HDR_DLQ_REASON, HDR_DLQ_SUBJECT, HDR_EVENT_ID, HDR_TENANT, NATS_MSG_ID, headers_without,
};
use tonic::Status;

use crate::consumer::{CONSUMER, REJECTIONS_CONSUMER};

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

    /// The ledger consumer whose dead letters go to `subject`, if any.
    fn consumer_of(&self, subject: &str) -> Option<&'static str> {
        [CONSUMER, REJECTIONS_CONSUMER]
            .into_iter()
            .find(|c| self.subjects.dead_letter("webhooks", c) == subject)
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
        Some(DeadLetter {
            sequence: m.sequence,
            consumer: consumer.to_string(),
            original_subject: header(HDR_DLQ_SUBJECT),
            event_id: header(HDR_EVENT_ID),
            tenant_id: header(HDR_TENANT),
            reason: header(HDR_DLQ_REASON),
            dead_lettered_at: Some(billing_proto::convert::timestamp(
                chrono::DateTime::from_timestamp_nanos(i64::try_from(nanos).unwrap_or(i64::MAX)),
            )),
        })
    }

    /// Up to `limit` dead letters after `after`, optionally of one tenant.
    pub async fn list(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, Status> {
        let stream = self.stream().await?;
        let filter = self.subjects.dead_letter("webhooks", "*");
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
        // Only the ledger's own: it wrote the original subject from a message it consumed.
        let letter = self.describe(&m).ok_or_else(|| {
            Status::failed_precondition(format!(
                "message {sequence} is not one of the ledger's dead letters"
            ))
        })?;
        let mut headers = headers_without(
            Some(&m.headers),
            &[NATS_MSG_ID, HDR_DLQ_REASON, HDR_DLQ_SUBJECT],
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
