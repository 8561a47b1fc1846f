//! The durable JetStream consumers: one pulls raw SimplyBook webhooks and records them, one
//! pulls ingest's records of refused requests into the audit log. Both ack only after the
//! database committed; poison events go to the dead-letter stream with their reason.
//!
//! - [`decode`]: a message into a booking (signed payloads; callbacks and repairs confirmed with
//!   SimplyBook);
//! - [`dead_letters`]: the dead-letter stream and its audit (and the unknown-price alert);
//! - [`message`]: headers, and settling a message (ack or delayed redelivery).

mod dead_letters;
mod decode;
mod message;
mod test_fault;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use billing_proto::events::WebhookRejectedV1;
use billing_runtime::nats::{self, header};
use billing_runtime::tenants::LiveTenants;
use billing_runtime::{Shutdown, Subjects, trace};
use futures::StreamExt;
use prost::Message as _;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::clients::ClientDataError;
use crate::incoming::NewBooking;
use crate::outcome::{Applied, Outcome, Reject};
use crate::simplybook::SimplyBook;
use crate::store::Store;
use dead_letters::DeadLetters;
use decode::{Decoder, Unapplied};
use message::{Disposition, Meta, observe_latency, settle};

/// See the consumer config in [`Consumer::create`].
const ACK_WAIT: Duration = Duration::from_secs(10);
/// How often a batch still being handled resets its messages' ack timers.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);

pub(crate) const CONSUMER: &str = "ledger";
pub(crate) const REJECTIONS_CONSUMER: &str = "ledger-rejections";
/// The longest a batch waits to fill before it is written: the latency floor at low rates.
const BATCH_WAIT: Duration = Duration::from_millis(50);
/// SimplyBook lookups in flight at once while a batch of callbacks is confirmed.
const CONCURRENT_FETCHES: usize = 16;

pub struct Consumer {
    consumer: PullConsumer,
    rejections: PullConsumer,
    decoder: Decoder,
    dead_letters: DeadLetters,
    store: Store,
    /// Woken after a batch commits, to relay its booking events at once.
    relay: Arc<Notify>,
    batch_size: usize,
}

impl Consumer {
    pub async fn create(
        js: jetstream::Context,
        subjects: Subjects,
        tenants: LiveTenants,
        simplybook: Arc<SimplyBook>,
        store: Store,
        relay: Arc<Notify>,
        batch_size: usize,
    ) -> Result<Self, async_nats::Error> {
        let stream = js.get_stream(subjects.stream_name("WEBHOOKS")).await?;
        let config = |name: &str, filter_subject: String| pull::Config {
            durable_name: Some(name.into()),
            filter_subject,
            ack_policy: AckPolicy::Explicit,
            // How long a batch held by a replica that died (or whose acks were lost when NATS
            // restarted) waits before another replica gets it; with max_ack_pending, it is how
            // long the ledger can stall after a crash. A batch of signed payloads takes well
            // under a second; one of callbacks waits on SimplyBook and can take longer, so a batch
            // still being handled says so every PROGRESS_EVERY (see handle_batch).
            ack_wait: ACK_WAIT,
            // Never give up on an event: transient failures are retried with a delay and
            // poison events are dead-lettered explicitly.
            max_deliver: -1,
            max_ack_pending: 1000,
            ..Default::default()
        };
        let consumer =
            nats::durable_consumer(&stream, config(CONSUMER, subjects.simplybook_all())).await?;
        let rejections = nats::durable_consumer(
            &stream,
            config(REJECTIONS_CONSUMER, subjects.rejected_all()),
        )
        .await?;
        Ok(Consumer {
            consumer,
            rejections,
            decoder: Decoder {
                subjects: subjects.clone(),
                tenants,
                simplybook,
                unknown_tenant_grace: decode::UNKNOWN_TENANT_GRACE,
            },
            dead_letters: DeadLetters {
                js,
                subjects,
                store: store.clone(),
                relay: relay.clone(),
            },
            store,
            relay,
            batch_size,
        })
    }

    /// Pulls and handles batches until `shutdown`; the batch in hand is always finished.
    pub async fn run(self, shutdown: Shutdown) {
        tokio::join!(
            nats::consume_batches(
                &self.consumer,
                self.batch_size,
                BATCH_WAIT,
                &shutdown,
                |batch| self.handle_batch(batch)
            ),
            nats::consume(&self.rejections, self.batch_size, &shutdown, |msg| {
                self.handle_rejection(msg)
            }),
        );
        tracing::info!("ledger consumers stopped");
    }

    /// Handles a batch, telling JetStream every few seconds that it is still being worked on: a
    /// batch of callbacks waiting on a slow SimplyBook can outlast `ack_wait`, and must not be
    /// handed to the other replica meanwhile (it would be fetched again, not applied twice).
    async fn handle_batch(&self, messages: Vec<jetstream::Message>) {
        let work = self.process_batch(&messages);
        tokio::pin!(work);
        let mut progress = tokio::time::interval(PROGRESS_EVERY);
        progress.tick().await;
        loop {
            tokio::select! {
                () = &mut work => return,
                _ = progress.tick() => {
                    for msg in &messages {
                        let _ = msg.ack_with(AckKind::Progress).await;
                    }
                }
            }
        }
    }

    /// Decodes every message (fetching callbacks from SimplyBook, several at once), applies the
    /// bookings in one transaction, dead-letters what cannot be applied, then acks.
    async fn process_batch(&self, messages: &[jetstream::Message]) {
        let started = std::time::Instant::now();
        let decoded: Vec<Result<NewBooking, Unapplied>> =
            // Indices, not references, in the closure: it keeps the future `Send` for tokio.
            futures::stream::iter(0..messages.len())
                .map(|i| self.decoder.decode(&messages[i]))
                .buffered(CONCURRENT_FETCHES)
                .collect()
                .await;
        let mut dispositions: Vec<Option<Disposition>> = messages.iter().map(|_| None).collect();
        let mut to_apply = Vec::new();
        let mut positions = Vec::new();
        for (i, (msg, decoded)) in messages.iter().zip(decoded).enumerate() {
            match decoded {
                Ok(booking) => {
                    let booking = NewBooking {
                        traceparent: header(msg, trace::TRACEPARENT).map(str::to_string),
                        ..booking
                    };
                    to_apply.push((booking, Meta::of(msg).stream_seq));
                    positions.push(i);
                }
                Err(Unapplied::Retry(reason)) => dispositions[i] = Some(Disposition::Retry(reason)),
                Err(Unapplied::Reject(reject)) => {
                    dispositions[i] = Some(self.dead_letters.booking(msg, CONSUMER, &reject).await);
                }
            }
        }
        let decoded_at = started.elapsed();
        if !to_apply.is_empty() {
            match self.store.apply_batch(&to_apply).await {
                Ok(outcomes) => {
                    // Test only, and in debug builds only: see test_fault.
                    test_fault::crash_after_commit(
                        to_apply.len(),
                        to_apply.iter().map(|(_, seq)| *seq).min().unwrap_or(0),
                        to_apply.iter().map(|(_, seq)| *seq).max().unwrap_or(0),
                    );
                    self.relay.notify_one();
                    for ((booking, _), (&i, outcome)) in
                        to_apply.iter().zip(positions.iter().zip(outcomes))
                    {
                        dispositions[i] =
                            Some(self.settle_outcome(&messages[i], booking, outcome).await);
                    }
                    tracing::info!(
                        events = to_apply.len(),
                        decode_ms = decoded_at.as_millis(),
                        commit_ms = (started.elapsed() - decoded_at).as_millis(),
                        "batch committed"
                    );
                }
                // Nothing in the batch is at fault (the database unavailable, a client key this
                // replica cannot use yet): nothing was applied, and the batch is tried again.
                Err(err) if let Some((kind, reason)) = err.retry() => {
                    metrics::counter!("ledger_db_write_failures_total", "kind" => kind)
                        .increment(1);
                    if matches!(err, ClientDataError::Key(_)) {
                        tracing::error!(error = %err, "client keys unusable; the batch will be retried");
                    }
                    for &i in &positions {
                        dispositions[i] = Some(Disposition::Retry(reason.clone()));
                    }
                }
                Err(err) => {
                    // The database refuses something in the batch and would every time: apply
                    // the events one by one, so only the poison one is dead-lettered and the
                    // rest of the stream keeps flowing.
                    metrics::counter!("ledger_db_write_failures_total", "kind" => "refused")
                        .increment(1);
                    tracing::warn!(error = %err, "batch refused, applying its events one by one");
                    for (item, &i) in to_apply.iter().zip(&positions) {
                        let msg = &messages[i];
                        dispositions[i] = Some(
                            match self.store.apply_batch(std::slice::from_ref(item)).await {
                                Ok(mut outcomes) => match outcomes.pop() {
                                    Some(outcome) => {
                                        self.relay.notify_one();
                                        self.settle_outcome(msg, &item.0, outcome).await
                                    }
                                    None => Disposition::Retry("no outcome".into()),
                                },
                                Err(err) if let Some((_, reason)) = err.retry() => {
                                    Disposition::Retry(reason)
                                }
                                Err(err) => {
                                    let reject = Reject::new("database_refused", err.to_string());
                                    self.dead_letters.booking(msg, CONSUMER, &reject).await
                                }
                            },
                        );
                    }
                }
            }
        }
        for (msg, disposition) in messages.iter().zip(dispositions) {
            let meta = Meta::of(msg);
            let disposition =
                disposition.unwrap_or_else(|| Disposition::Retry("not handled".into()));
            settle(msg, &meta.event_id, meta.delivered, disposition).await;
        }
        metrics::histogram!("ledger_batch_seconds").record(started.elapsed().as_secs_f64());
    }

    /// Counts and logs what applying an event did; dead-letters it when it was rejected.
    async fn settle_outcome(
        &self,
        msg: &jetstream::Message,
        booking: &NewBooking,
        outcome: Outcome,
    ) -> Disposition {
        let span =
            trace::span(|| tracing::info_span!("ledger.committed", event_id = %booking.event_id));
        trace::follow_nats(&span, msg.headers.as_ref());
        async {
            match outcome {
                Outcome::Applied(applied, booking_id) => {
                    metrics::counter!("ledger_events_total", "outcome" => applied.as_str())
                        .increment(1);
                    if applied != Applied::Duplicate {
                        observe_latency(msg);
                    }
                    tracing::debug!(
                        event_id = booking.event_id,
                        tenant = booking.tenant_id,
                        outcome = applied.as_str(),
                        booking_id = ?booking_id,
                        "booking event applied"
                    );
                    Disposition::Ack
                }
                Outcome::Rejected(reject) => {
                    self.dead_letters.booking(msg, CONSUMER, &reject).await
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Writes ingest's record of a refused request to the audit log.
    async fn handle_rejection(&self, msg: jetstream::Message) {
        let (stream_seq, delivered) = msg
            .info()
            .map(|i| (i.stream_sequence, i.delivered))
            .unwrap_or((0, 1));
        let event_id = format!("rejections-seq:{stream_seq}");
        let disposition = match WebhookRejectedV1::decode(msg.payload.as_ref()) {
            Ok(record) => match self.store.record_rejection(&record, stream_seq).await {
                Ok(()) => Disposition::Ack,
                Err(err) => Disposition::Retry(format!("database: {err}")),
            },
            Err(err) => {
                let reject = Reject::new("malformed_record", err.to_string());
                self.dead_letters
                    .dead_letter(&msg, REJECTIONS_CONSUMER, "ingest", &event_id, "", &reject)
                    .await
            }
        };
        settle(&msg, &event_id, delivered, disposition).await;
    }
}

impl Consumer {
    /// How long an event for a tenant the ledger does not know is retried before it is
    /// dead-lettered (LEDGER_UNKNOWN_TENANT_GRACE_SECS).
    #[must_use]
    pub fn with_unknown_tenant_grace(mut self, grace: std::time::Duration) -> Self {
        self.decoder.unknown_tenant_grace = grace;
        self
    }
}
