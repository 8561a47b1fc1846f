//! The durable JetStream consumer: pulls raw SimplyBook webhooks, records them, and acks only
//! after the database committed. Poison events go to the dead-letter stream with their reason.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use billing_domain::Tenants;
use billing_runtime::nats::{self, HDR_EVENT_ID, HDR_RECEIVED_AT, HDR_TENANT, header};
use billing_runtime::{Shutdown, Subjects};

use crate::events::{self, Reject};
use crate::store::{Applied, ApplyError, Store};

const CONSUMER: &str = "ledger";

pub struct Consumer {
    js: jetstream::Context,
    consumer: PullConsumer,
    subjects: Subjects,
    tenants: Arc<Tenants>,
    store: Store,
    batch_size: usize,
}

/// What to do with a message once handled.
enum Disposition {
    Ack,
    /// A transient failure (database or broker): try again later.
    Retry(String),
}

impl Consumer {
    pub async fn create(
        js: jetstream::Context,
        subjects: Subjects,
        tenants: Arc<Tenants>,
        store: Store,
        batch_size: usize,
    ) -> Result<Self, async_nats::Error> {
        let stream = js.get_stream(subjects.stream_name("WEBHOOKS")).await?;
        let consumer = stream
            .get_or_create_consumer(
                CONSUMER,
                pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    filter_subject: subjects.simplybook_all(),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    // Never give up on an event: transient failures are retried with a delay and
                    // poison events are dead-lettered explicitly.
                    max_deliver: -1,
                    max_ack_pending: 1000,
                    ..Default::default()
                },
            )
            .await?;
        Ok(Consumer {
            js,
            consumer,
            subjects,
            tenants,
            store,
            batch_size,
        })
    }

    /// Pulls and handles batches until `shutdown`; the batch in hand is always finished.
    pub async fn run(self, shutdown: Shutdown) {
        nats::consume(&self.consumer, self.batch_size, &shutdown, |msg| {
            self.handle(msg)
        })
        .await;
        tracing::info!("ledger consumer stopped");
    }

    async fn handle(&self, msg: jetstream::Message) {
        let (stream_seq, delivered) = msg
            .info()
            .map(|i| (i.stream_sequence, i.delivered))
            .unwrap_or((0, 1));
        let event_id = header(&msg, HDR_EVENT_ID)
            .map(str::to_string)
            .unwrap_or_else(|| format!("webhooks-seq:{stream_seq}"));
        let tenant = header(&msg, HDR_TENANT).unwrap_or("");

        let disposition = match events::decode(&self.tenants, tenant, &event_id, &msg.payload) {
            Err(reject) => {
                self.dead_letter(&msg, &event_id, tenant, &reject, stream_seq)
                    .await
            }
            Ok(booking) => match self.store.apply(&booking, stream_seq).await {
                Ok((applied, booking_id)) => {
                    metrics::counter!("ledger_events_total", "outcome" => applied.as_str())
                        .increment(1);
                    if applied != Applied::Duplicate {
                        observe_latency(&msg);
                    }
                    tracing::info!(
                        event_id,
                        tenant,
                        outcome = applied.as_str(),
                        booking_id = ?booking_id,
                        "booking event applied"
                    );
                    Disposition::Ack
                }
                Err(ApplyError::Rejected(reject)) => {
                    self.dead_letter(&msg, &event_id, tenant, &reject, stream_seq)
                        .await
                }
                Err(ApplyError::Db(err)) => Disposition::Retry(format!("database: {err}")),
            },
        };

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

    /// Publishes the event to the dead-letter stream, then audits it, then lets it go.
    async fn dead_letter(
        &self,
        msg: &jetstream::Message,
        event_id: &str,
        tenant: &str,
        reject: &Reject,
        stream_seq: u64,
    ) -> Disposition {
        let reason = format!("{}: {}", reject.code, reject.message);
        let mut headers = HeaderMap::new();
        headers.insert(HDR_EVENT_ID, event_id);
        headers.insert(HDR_TENANT, tenant);
        let published = nats::dead_letter(
            &self.js,
            self.subjects.dead_letter("webhooks", CONSUMER),
            msg,
            &format!("dlq:{event_id}"),
            &reason,
            headers,
        )
        .await;
        if let Err(err) = published {
            return Disposition::Retry(format!("dead-letter publish: {err}"));
        }
        let tenant = (!tenant.is_empty()).then_some(tenant);
        if let Err(err) = self
            .store
            .record_dead_letter(event_id, tenant, &reason, stream_seq)
            .await
        {
            return Disposition::Retry(format!("database: {err}"));
        }
        metrics::counter!("ledger_dead_letters_total", "reason" => reject.code).increment(1);
        tracing::warn!(
            event_id,
            tenant,
            reason = reject.code,
            "event dead-lettered"
        );
        Disposition::Ack
    }
}

/// Received-at-ingest to committed-in-ledger latency.
fn observe_latency(msg: &jetstream::Message) {
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
