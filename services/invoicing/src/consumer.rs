//! Invoicing's two JetStream consumers:
//! - `invoicing-bookings` (LEDGER, `ledger.booking.>`): marks bookings the ledger changed, so
//!   the next close bills what changed after they were invoiced;
//! - `invoicing-stripe` (WEBHOOKS, `webhooks.stripe`): Stripe's invoice events, verified by
//!   ingest, applied once per event id and only to the invoice they are bound to (tenant in
//!   Stripe mode, the stored Stripe invoice id, currency and amounts; see
//!   `lifecycle::stripe_events`); any other is refused with its reason and an alert.
//!
//! An undecodable message is dead-lettered (`dlq.<stream>.<consumer>`) with its reason and the
//! stream keeps flowing; a database failure leaves the message for redelivery.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use billing_proto::convert::datetime;
use billing_proto::events::BookingEventV1;
use billing_runtime::nats::{Disposition, Settled, Settler};
use billing_runtime::{Shutdown, Subjects, nats, trace};
use chrono::{DateTime, Utc};
use prost::Message;
use tracing::Instrument;

use crate::lifecycle::{Lifecycle, StripeInvoiceEvent};
use crate::store::{MarkUpdate, Store};

pub(crate) const BOOKINGS_CONSUMER: &str = "invoicing-bookings";
pub(crate) const STRIPE_CONSUMER: &str = "invoicing-stripe";
const MARK_BATCH: usize = 500;
const MARK_WAIT: Duration = Duration::from_millis(200);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

async fn durable(
    js: &jetstream::Context,
    stream: String,
    name: &str,
    filter_subject: String,
) -> Result<PullConsumer, async_nats::Error> {
    Ok(js
        .get_stream(stream)
        .await?
        .get_or_create_consumer(
            name,
            pull::Config {
                durable_name: Some(name.into()),
                filter_subject,
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_deliver: -1,
                max_ack_pending: 2_000,
                ..Default::default()
            },
        )
        .await?)
}

/// The two durable consumers, created before the service reports ready.
pub struct Consumers {
    bookings: PullConsumer,
    stripe: PullConsumer,
}

impl Consumers {
    pub async fn create(
        js: &jetstream::Context,
        subjects: &Subjects,
    ) -> Result<Self, async_nats::Error> {
        Ok(Consumers {
            bookings: durable(
                js,
                subjects.stream_name("LEDGER"),
                BOOKINGS_CONSUMER,
                subjects.booking_event(">"),
            )
            .await?,
            stripe: durable(
                js,
                subjects.stream_name("WEBHOOKS"),
                STRIPE_CONSUMER,
                subjects.stripe(),
            )
            .await?,
        })
    }

    /// Runs both until `shutdown`.
    pub async fn run(
        self,
        js: jetstream::Context,
        subjects: Subjects,
        store: Store,
        lifecycle: Lifecycle,
        shutdown: Shutdown,
    ) {
        let settler = |stream: &str, consumer: &'static str| Consumer {
            name: consumer,
            settler: Settler {
                js: js.clone(),
                dead_letter_subject: subjects.dead_letter(stream, consumer),
                max_retry_delay: MAX_RETRY_DELAY,
            },
        };
        let (bookings, stripe) = (
            settler("ledger", BOOKINGS_CONSUMER),
            settler("webhooks", STRIPE_CONSUMER),
        );
        let marks =
            nats::consume_batches(&self.bookings, MARK_BATCH, MARK_WAIT, &shutdown, |batch| {
                mark_bookings(&store, &bookings, batch)
            });
        let payments = nats::consume(&self.stripe, 50, &shutdown, |msg| {
            // Continues the trace of ingest's request that published the event.
            let span = trace::span(|| tracing::info_span!("invoicing.stripe_event"));
            trace::follow_nats(&span, msg.headers.as_ref());
            stripe_event(&lifecycle, &stripe, msg).instrument(span)
        });
        tokio::join!(marks, payments);
        tracing::info!("invoicing consumers stopped");
    }
}

async fn mark_bookings(store: &Store, consumer: &Consumer, batch: Vec<jetstream::Message>) {
    let mut updates = Vec::with_capacity(batch.len());
    let mut good = Vec::with_capacity(batch.len());
    for msg in batch {
        match decode_booking_event(&msg.payload) {
            Ok(update) => {
                updates.push(update);
                good.push(msg);
            }
            Err(reason) => consumer.settle(&msg, Disposition::DeadLetter(reason)).await,
        }
    }
    if good.is_empty() {
        return;
    }
    let disposition = match store.mark(&updates).await {
        Ok(()) => Disposition::Ack,
        Err(err) => Disposition::Retry(format!("marking changed bookings failed: {err}")),
    };
    for msg in &good {
        consumer.settle(msg, disposition.clone()).await;
    }
}

fn decode_booking_event(payload: &[u8]) -> Result<MarkUpdate, String> {
    let event =
        BookingEventV1::decode(payload).map_err(|e| format!("undecodable BookingEventV1: {e}"))?;
    Ok(MarkUpdate {
        booking_id: event
            .booking_id
            .parse()
            .map_err(|_| format!("booking_id {:?} is not a UUID", event.booking_id))?,
        session_at: datetime(event.session_at.as_ref())
            .ok_or_else(|| "booking event without session time".to_string())?,
        tenant_id: event.tenant_id,
    })
}

async fn stripe_event(lifecycle: &Lifecycle, consumer: &Consumer, msg: jetstream::Message) {
    let event = match parse_stripe_event(&msg.payload) {
        Ok(event) => event,
        Err(reason) => return consumer.settle(&msg, Disposition::DeadLetter(reason)).await,
    };
    let disposition = match lifecycle.apply_stripe_event(&event, Utc::now()).await {
        Ok(decision) => {
            let outcome = decision.outcome.as_str();
            metrics::counter!("invoicing_stripe_events_total", "type" => event.type_label().to_string(), "outcome" => outcome)
                .increment(1);
            tracing::info!(event = %event.event_id, kind = %event.event_type, outcome, reason = %decision.reason, "stripe event");
            Disposition::Ack
        }
        Err(err) => Disposition::Retry(format!("stripe event {}: {err}", event.event_id)),
    };
    consumer.settle(&msg, disposition).await;
}

#[derive(serde::Deserialize)]
struct RawEvent {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    created: i64,
    data: RawData,
}

#[derive(serde::Deserialize)]
struct RawData {
    object: serde_json::Value,
}

/// The fields of a Stripe event invoicing needs. Any well-formed event parses (unknown types
/// are recorded and ignored later); a body that is not a Stripe event is an error.
pub fn parse_stripe_event(body: &[u8]) -> Result<StripeInvoiceEvent, String> {
    let raw: RawEvent =
        serde_json::from_slice(body).map_err(|e| format!("not a Stripe event: {e}"))?;
    if !raw.id.starts_with("evt_") {
        return Err(format!("event id {:?} does not start with evt_", raw.id));
    }
    let created: DateTime<Utc> = DateTime::from_timestamp(raw.created, 0)
        .ok_or_else(|| format!("created {} is out of range", raw.created))?;
    let object = &raw.data.object;
    Ok(StripeInvoiceEvent {
        event_id: raw.id,
        event_type: raw.event_type,
        created,
        stripe_invoice_id: object["id"].as_str().unwrap_or_default().to_string(),
        metadata_invoice_id: object["metadata"]["invoice_id"]
            .as_str()
            .map(str::to_string),
        currency: object["currency"].as_str().map(str::to_string),
        total: object["total"].as_i64(),
        amount_paid: object["amount_paid"].as_i64(),
    })
}

/// One of the two consumers: where its dead letters go, and its dead-letter count.
struct Consumer {
    name: &'static str,
    settler: Settler,
}

impl Consumer {
    async fn settle(&self, msg: &jetstream::Message, disposition: Disposition) {
        if self.settler.settle(msg, disposition).await == Settled::DeadLettered {
            metrics::counter!("invoicing_dead_letters_total", "consumer" => self.name).increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stripe_invoice_event_yields_ids_currency_and_amounts() {
        let body = br#"{"id":"evt_1","type":"invoice.paid","created":1767225600,
            "data":{"object":{"id":"in_9","object":"invoice","amount_paid":7510,"total":7510,
            "currency":"aud","metadata":{"invoice_id":"0194f3c1-8b2e-7c4a-9d1e-3f5a6b7c8d9e"}}}}"#;
        let event = parse_stripe_event(body).expect("parses");
        assert_eq!(event.event_id, "evt_1");
        assert_eq!(event.event_type, "invoice.paid");
        assert_eq!(event.type_label(), "invoice.paid");
        assert_eq!(event.stripe_invoice_id, "in_9");
        assert_eq!(event.currency.as_deref(), Some("aud"));
        assert_eq!((event.total, event.amount_paid), (Some(7510), Some(7510)));
        assert_eq!(
            event.metadata_invoice_id.as_deref(),
            Some("0194f3c1-8b2e-7c4a-9d1e-3f5a6b7c8d9e")
        );
    }

    #[test]
    fn other_events_parse_and_garbage_does_not() {
        let body = br#"{"id":"evt_2","type":"customer.created","created":1767225600,
            "data":{"object":{"id":"cus_1","object":"customer"}}}"#;
        let event = parse_stripe_event(body).expect("parses");
        assert_eq!(event.metadata_invoice_id, None);
        assert_eq!(event.amount_paid, None);
        assert_eq!(
            event.type_label(),
            "other",
            "one label for Stripe's many other types"
        );
        assert!(parse_stripe_event(b"{}").is_err());
        assert!(
            parse_stripe_event(br#"{"id":"x","type":"a","created":1,"data":{"object":{}}}"#)
                .is_err()
        );
    }
}
