//! The durable JetStream consumers: one pulls raw SimplyBook webhooks and records them, one
//! pulls ingest's records of refused requests into the audit log. Both ack only after the
//! database committed; poison events go to the dead-letter stream with their reason.

use std::sync::Arc;

use std::time::Duration;
use tokio::sync::Notify;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use billing_domain::Tenants;
use billing_domain::callback::Callback;
use billing_domain::simplybook::DetailsError;
use billing_proto::events::WebhookRejectedV1;
use billing_runtime::nats::{
    self, AUTH_CALLBACK_TOKEN, AUTH_RECONCILIATION_REPAIR, HDR_AUTH, HDR_EVENT_ID, HDR_RECEIVED_AT,
    HDR_SENT_AT, HDR_TENANT, header,
};
use billing_runtime::{Shutdown, Subjects, db, trace};
use futures::StreamExt;
use prost::Message as _;
use tracing::Instrument;

use crate::events::{self, NewBooking};
use crate::outcome::{Applied, Outcome, Reject};
use crate::simplybook::{FetchError, SimplyBook};
use crate::store::Store;

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

/// What the ledger reads from a message's headers.
struct Meta<'a> {
    event_id: String,
    tenant: &'a str,
    stream_seq: u64,
    delivered: i64,
}

impl<'a> Meta<'a> {
    fn of(msg: &'a jetstream::Message) -> Self {
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

pub struct Consumer {
    js: jetstream::Context,
    consumer: PullConsumer,
    rejections: PullConsumer,
    subjects: Subjects,
    tenants: Arc<Tenants>,
    simplybook: Arc<SimplyBook>,
    store: Store,
    /// Woken after a batch commits, to relay its booking events at once.
    relay: Arc<Notify>,
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
            js,
            consumer,
            rejections,
            subjects,
            tenants,
            simplybook,
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
                .map(|i| self.decode(&messages[i]))
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
                    dispositions[i] = Some(self.dead_letter_booking(msg, &reject).await);
                }
            }
        }
        let decoded_at = started.elapsed();
        if !to_apply.is_empty() {
            match self.store.apply_batch(&to_apply).await {
                Ok(outcomes) => {
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
                Err(err) if db::is_transient(&err) => {
                    metrics::counter!("ledger_db_write_failures_total", "kind" => "unavailable")
                        .increment(1);
                    for &i in &positions {
                        dispositions[i] = Some(Disposition::Retry(format!("database: {err}")));
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
                                Err(err) if db::is_transient(&err) => {
                                    Disposition::Retry(format!("database: {err}"))
                                }
                                Err(err) => {
                                    let reject = Reject::new("database_refused", err.to_string());
                                    self.dead_letter_booking(msg, &reject).await
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
                Outcome::Rejected(reject) => self.dead_letter_booking(msg, &reject).await,
            }
        }
        .instrument(span)
        .await
    }

    /// A booking from a message: a signed payload carries it; a callback is confirmed with
    /// SimplyBook first.
    async fn decode(&self, msg: &jetstream::Message) -> Result<NewBooking, Unapplied> {
        let meta = Meta::of(msg);
        // Each event of a batch continues the trace its headers carry (ingest's request).
        let span = trace::span(|| tracing::info_span!("ledger.decode", event_id = %meta.event_id));
        trace::follow_nats(&span, msg.headers.as_ref());
        self.decode_event(msg, meta).instrument(span).await
    }

    async fn decode_event(
        &self,
        msg: &jetstream::Message,
        meta: Meta<'_>,
    ) -> Result<NewBooking, Unapplied> {
        // The subject is what NATS's permissions vouch for (only ingest, and the ledger's own
        // replays and repairs, may publish there); a tenant header that disagrees is forged.
        if msg.subject.as_str() != self.subjects.simplybook(meta.tenant) {
            return Err(Unapplied::Reject(Reject::new(
                "tenant_mismatch",
                format!(
                    "the tenant header says {:?} but the event was published on {}",
                    meta.tenant, msg.subject
                ),
            )));
        }
        match header(msg, HDR_AUTH) {
            Some(AUTH_CALLBACK_TOKEN) => {
                return self
                    .confirm_callback(meta.tenant, &meta.event_id, &msg.payload)
                    .await;
            }
            Some(AUTH_RECONCILIATION_REPAIR) => {
                return self
                    .confirm_repair(meta.tenant, &meta.event_id, &msg.payload)
                    .await;
            }
            _ => {}
        }
        {
            events::decode(
                &self.tenants,
                meta.tenant,
                &meta.event_id,
                sent_at(msg),
                &msg.payload,
            )
            .map_err(Unapplied::Reject)
        }
    }

    async fn dead_letter_booking(&self, msg: &jetstream::Message, reject: &Reject) -> Disposition {
        let meta = Meta::of(msg);
        let disposition = self
            .dead_letter(
                msg,
                CONSUMER,
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
        self.simplybook
            .admit_lookup(tenant)
            .map_err(|e| fetch_unapplied(e, &callback.booking_id))?;
        // The fetched details are SimplyBook's state as of now.
        let as_of = chrono::Utc::now();
        let resolved = self
            .simplybook
            .session(tenant)
            .confirm(&callback)
            .await
            .map_err(|e| fetch_unapplied(e, &callback.booking_id))?;
        if resolved.payload.booking_id != callback.booking_id {
            return Err(Unapplied::Reject(Reject::new(
                "unconfirmed_callback",
                format!(
                    "SimplyBook answered booking {} for callback booking {}",
                    resolved.payload.booking_id, callback.booking_id
                ),
            )));
        }
        events::resolved(tenant, event_id, as_of, resolved, None).map_err(Unapplied::Reject)
    }

    /// A booking reconciliation found missing or different: the message names it only, and
    /// SimplyBook's Company Administration API says what it is now, so a forged repair message
    /// can do no more than make the ledger look the booking up.
    async fn confirm_repair(
        &self,
        tenant_id: &str,
        event_id: &str,
        body: &[u8],
    ) -> Result<events::NewBooking, Unapplied> {
        #[derive(serde::Deserialize)]
        struct Repair {
            booking_id: String,
        }
        let tenant = events::tenant(&self.tenants, tenant_id).map_err(Unapplied::Reject)?;
        let repair: Repair = serde_json::from_slice(body)
            .ok()
            .filter(|r: &Repair| billing_domain::callback::is_token_like(&r.booking_id))
            .ok_or_else(|| {
                Unapplied::Reject(Reject::new(
                    "malformed_payload",
                    "a repair names no valid booking_id",
                ))
            })?;
        self.simplybook
            .admit_lookup(tenant)
            .map_err(|e| fetch_unapplied(e, &repair.booking_id))?;
        let as_of = chrono::Utc::now();
        let resolved = self
            .simplybook
            .session(tenant)
            .admin_details(&repair.booking_id)
            .await
            .map_err(|e| fetch_unapplied(e, &repair.booking_id))?;
        if resolved.payload.booking_id != repair.booking_id {
            return Err(Unapplied::Reject(Reject::new(
                "unconfirmed_callback",
                format!(
                    "SimplyBook answered booking {} for repair of booking {}",
                    resolved.payload.booking_id, repair.booking_id
                ),
            )));
        }
        let note =
            Some("repair: reconciliation with SimplyBook's Company Administration API".into());
        events::resolved(tenant, event_id, as_of, resolved, note).map_err(Unapplied::Reject)
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

/// What a failed SimplyBook lookup means for the event.
fn fetch_unapplied(e: FetchError, booking_id: &str) -> Unapplied {
    match e {
        FetchError::Unavailable(reason) => Unapplied::Retry(reason),
        FetchError::Refused(reason)
        | FetchError::NotFound(reason)
        | FetchError::FeatureOff(reason)
        | FetchError::NotPossible(reason) => Unapplied::Reject(Reject::new(
            "unconfirmed_callback",
            format!("SimplyBook does not confirm booking {booking_id}: {reason}"),
        )),
        FetchError::Details(DetailsError::PriceUnknown(reason)) => {
            Unapplied::Reject(Reject::new("price_unknown", reason))
        }
        FetchError::Details(DetailsError::Payload(e)) => {
            Unapplied::Reject(events::payload_reject(e))
        }
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

/// When the sender signed the event; without that header, when ingest received it.
fn sent_at(msg: &jetstream::Message) -> chrono::DateTime<chrono::Utc> {
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
