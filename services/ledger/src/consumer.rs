//! The durable JetStream consumers: one pulls raw SimplyBook webhooks and records them, one
//! pulls ingest's records of refused requests into the audit log. Both ack only after the
//! database committed; poison events go to the dead-letter stream with their reason.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use billing_domain::Tenants;
use billing_domain::callback::Callback;
use billing_proto::events::WebhookRejectedV1;
use billing_runtime::nats::{
    self, AUTH_CALLBACK_TOKEN, HDR_AUTH, HDR_EVENT_ID, HDR_RECEIVED_AT, HDR_TENANT, header,
};
use billing_runtime::{Shutdown, Subjects};
use prost::Message as _;

use crate::events::{self, Reject};
use crate::simplybook::{FetchError, SimplyBook};
use crate::store::{Applied, ApplyError, Store};

const CONSUMER: &str = "ledger";
const REJECTIONS_CONSUMER: &str = "ledger-rejections";

pub struct Consumer {
    js: jetstream::Context,
    consumer: PullConsumer,
    rejections: PullConsumer,
    subjects: Subjects,
    tenants: Arc<Tenants>,
    simplybook: SimplyBook,
    store: Store,
    batch_size: usize,
}

/// Why an event did not become a booking to apply.
enum Unapplied {
    /// It never can: dead-letter it.
    Reject(Reject),
    /// Not now (SimplyBook unavailable): try again later.
    Retry(String),
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
        simplybook: SimplyBook,
        store: Store,
        batch_size: usize,
    ) -> Result<Self, async_nats::Error> {
        let stream = js.get_stream(subjects.stream_name("WEBHOOKS")).await?;
        let config = |name: &str, filter_subject: String| pull::Config {
            durable_name: Some(name.into()),
            filter_subject,
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            // Never give up on an event: transient failures are retried with a delay and
            // poison events are dead-lettered explicitly.
            max_deliver: -1,
            max_ack_pending: 1000,
            ..Default::default()
        };
        let consumer = stream
            .get_or_create_consumer(CONSUMER, config(CONSUMER, subjects.simplybook_all()))
            .await?;
        let rejections = stream
            .get_or_create_consumer(
                REJECTIONS_CONSUMER,
                config(REJECTIONS_CONSUMER, subjects.rejected_all()),
            )
            .await?;
        Ok(Consumer {
            js,
            consumer,
            rejections,
            subjects,
            tenants,
            simplybook,
            store,
            batch_size,
        })
    }

    /// Pulls and handles batches until `shutdown`; the batch in hand is always finished.
    pub async fn run(self, shutdown: Shutdown) {
        tokio::join!(
            nats::consume(&self.consumer, self.batch_size, &shutdown, |msg| {
                self.handle(msg)
            }),
            nats::consume(&self.rejections, self.batch_size, &shutdown, |msg| {
                self.handle_rejection(msg)
            }),
        );
        tracing::info!("ledger consumers stopped");
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

        let decoded = if header(&msg, HDR_AUTH) == Some(AUTH_CALLBACK_TOKEN) {
            self.confirm_callback(tenant, &event_id, &msg.payload).await
        } else {
            events::decode(&self.tenants, tenant, &event_id, &msg.payload)
                .map_err(Unapplied::Reject)
        };
        let disposition = match decoded {
            Err(Unapplied::Retry(reason)) => Disposition::Retry(reason),
            Err(Unapplied::Reject(reject)) => {
                self.dead_letter(&msg, CONSUMER, "simplybook", &event_id, tenant, &reject)
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
                    self.dead_letter(&msg, CONSUMER, "simplybook", &event_id, tenant, &reject)
                        .await
                }
                Err(ApplyError::Db(err)) => Disposition::Retry(format!("database: {err}")),
            },
        };
        settle(&msg, &event_id, delivered, disposition).await;
    }

    /// A native callback names a booking without its details: fetch them from SimplyBook, which
    /// both proves the callback genuine (the sign covers the booking hash) and gives the
    /// booking's current state, so duplicates and out-of-order callbacks converge.
    async fn confirm_callback(
        &self,
        tenant_id: &str,
        event_id: &str,
        body: &[u8],
    ) -> Result<events::NewBooking, Unapplied> {
        let tenant = events::tenant(&self.tenants, tenant_id).map_err(Unapplied::Reject)?;
        let callback = Callback::parse(body)
            .map_err(|e| Unapplied::Reject(Reject::new("malformed_payload", e.to_string())))?;
        let payload = match self.simplybook.booking_details(tenant, &callback).await {
            Ok(payload) => payload,
            Err(FetchError::Unavailable(reason)) => return Err(Unapplied::Retry(reason)),
            Err(FetchError::Refused(reason)) => {
                return Err(Unapplied::Reject(Reject::new(
                    "unconfirmed_callback",
                    format!(
                        "SimplyBook does not confirm booking {}: {reason}",
                        callback.booking_id
                    ),
                )));
            }
        };
        if payload.booking_id != callback.booking_id {
            return Err(Unapplied::Reject(Reject::new(
                "unconfirmed_callback",
                format!(
                    "SimplyBook answered booking {} for callback booking {}",
                    payload.booking_id, callback.booking_id
                ),
            )));
        }
        events::booking(tenant, event_id, payload).map_err(Unapplied::Reject)
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
                self.dead_letter(&msg, REJECTIONS_CONSUMER, "ingest", &event_id, "", &reject)
                    .await
            }
        };
        settle(&msg, &event_id, delivered, disposition).await;
    }

    /// Publishes the event to the dead-letter stream, then audits it, then lets it go.
    async fn dead_letter(
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
        let mut headers = HeaderMap::new();
        headers.insert(HDR_EVENT_ID, event_id);
        headers.insert(HDR_TENANT, tenant);
        let published = nats::dead_letter(
            &self.js,
            self.subjects.dead_letter("webhooks", consumer),
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
            .record_dead_letter(source, event_id, tenant, &reason, stream_seq)
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

/// Acks a handled message, or asks for a delayed redelivery after a transient failure.
async fn settle(
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
