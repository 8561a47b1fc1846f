//! Dead letters of raw webhooks kept past their replay window lose their personal data: each one
//! older than the window is published again with its body stripped (`billing_domain::privacy::
//! strip`), marked with [`HDR_DLQ_SCRUBBED`] and the time it was first dead-lettered, and the
//! original is deleted from the stream. Its reason, ids, amounts and shape stay, so it can still
//! be read and replayed. Each service scrubs only its own consumers' dead letters (its NATS
//! identity may publish nothing else there).

use std::time::Duration;

use async_nats::jetstream::{self, stream::LastRawMessageErrorKind};
use billing_domain::privacy::strip::strip_personal;
use tokio_util::sync::CancellationToken;

use super::headers::{NATS_MSG_ID, headers_without};
use super::subjects::Subjects;

/// Header on a scrubbed dead letter: its sequence before it was scrubbed.
pub const HDR_DLQ_SCRUBBED: &str = "Billing-Dlq-Scrubbed";
/// Header on a scrubbed dead letter: when it was first dead-lettered (RFC 3339).
pub const HDR_DLQ_AT: &str = "Billing-Dlq-At";

/// How often the dead letters are looked at.
const EVERY: Duration = Duration::from_secs(60 * 60);

/// Scrubs the dead letters of `consumers` older than `after` now and then every hour, until
/// `shutdown`. Failures are logged and retried at the next round.
pub async fn run(
    js: jetstream::Context,
    subjects: Subjects,
    consumers: Vec<String>,
    after: Duration,
    shutdown: CancellationToken,
) {
    // Where each consumer's next round starts: before it, every dead letter is gone or scrubbed.
    let mut resume: Vec<u64> = vec![1; consumers.len()];
    loop {
        for (consumer, from) in consumers.iter().zip(resume.iter_mut()) {
            match scrub_once(&js, &subjects, consumer, after, *from).await {
                Ok(round) => {
                    *from = round.resume_from;
                    if round.scrubbed > 0 {
                        tracing::info!(
                            consumer,
                            scrubbed = round.scrubbed,
                            "old dead letters scrubbed"
                        );
                    }
                }
                Err(err) => {
                    tracing::warn!(consumer, error = %err, "dead letters not scrubbed; retried later");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// What a round of [`scrub_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Dead letters scrubbed.
    pub scrubbed: u64,
    /// Where the next round may start: every dead letter before it is gone or scrubbed.
    pub resume_from: u64,
}

/// Scrubs `consumer`'s dead letters (on every stream) from stream sequence `from` on that were
/// dead-lettered more than `after` ago.
pub async fn scrub_once(
    js: &jetstream::Context,
    subjects: &Subjects,
    consumer: &str,
    after: Duration,
    from: u64,
) -> Result<Round, async_nats::Error> {
    let stream = js.get_stream(subjects.stream_name("DLQ")).await?;
    let filter = subjects.dead_letter("*", consumer);
    let cutoff =
        chrono::Utc::now() - chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    let mut next = from.max(1);
    let mut scrubbed = 0;
    loop {
        let m = match stream.get_first_raw_message_by_subject(&filter, next).await {
            Ok(m) => m,
            Err(err) if matches!(err.kind(), LastRawMessageErrorKind::NoMessageFound) => break,
            Err(err) => return Err(err.into()),
        };
        let at = chrono::DateTime::from_timestamp_nanos(
            i64::try_from(m.time.unix_timestamp_nanos()).unwrap_or(i64::MAX),
        );
        // Messages are in time order: the rest are younger, and this one is next time's start.
        if at > cutoff {
            break;
        }
        next = m.sequence + 1;
        if m.headers.get(HDR_DLQ_SCRUBBED).is_some() {
            continue;
        }
        let body = strip_personal(&m.payload).unwrap_or_default();
        let mut headers = headers_without(Some(&m.headers), &[NATS_MSG_ID]);
        headers.insert(NATS_MSG_ID, format!("scrubbed:{}", m.sequence).as_str());
        headers.insert(HDR_DLQ_SCRUBBED, m.sequence.to_string().as_str());
        headers.insert(HDR_DLQ_AT, at.to_rfc3339().as_str());
        js.publish_with_headers(m.subject.to_string(), headers, body.into())
            .await?
            .await?;
        stream.delete_message(m.sequence).await?;
        scrubbed += 1;
    }
    Ok(Round {
        scrubbed,
        resume_from: next,
    })
}
