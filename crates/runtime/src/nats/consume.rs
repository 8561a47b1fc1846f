//! Consuming a stream: durable pull consumers kept at their delivery settings, pulling messages
//! one at a time or in batches until shutdown, and each consumer's lag as metrics.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{PullConsumer, pull};
use futures::StreamExt;

use crate::Shutdown;

/// The durable pull consumer `config` describes: created if missing, and brought to `config`
/// if it exists with other delivery settings (`get_or_create` alone would keep what an older
/// release created, e.g. a longer `ack_wait`).
pub async fn durable_consumer(
    stream: &jetstream::stream::Stream,
    config: pull::Config,
) -> Result<PullConsumer, async_nats::Error> {
    let name = config
        .durable_name
        .clone()
        .ok_or("a durable consumer needs a durable_name")?;
    let mut consumer: PullConsumer = stream.get_or_create_consumer(&name, config.clone()).await?;
    let current = &consumer.info().await?.config;
    if current.ack_wait != config.ack_wait
        || current.max_ack_pending != config.max_ack_pending
        || current.max_deliver != config.max_deliver
    {
        tracing::info!(consumer = %name, "updating the consumer's delivery settings");
        consumer = stream.update_consumer(config).await?;
    }
    Ok(consumer)
}

/// One pull request for up to `batch_size` messages, ending when that many arrived or `wait`
/// passed. `None` once `shutdown` is cancelled; pull failures (the broker restarting) are logged
/// and retried after a second.
async fn pull(
    consumer: &PullConsumer,
    batch_size: usize,
    wait: Duration,
    shutdown: &Shutdown,
) -> Option<jetstream::consumer::pull::Batch> {
    while !shutdown.is_cancelled() {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => return None,
            batch = consumer
                .batch()
                .max_messages(batch_size)
                .expires(wait)
                .messages() => batch,
        };
        match batch {
            Ok(messages) => return Some(messages),
            Err(err) => {
                tracing::warn!(error = %err, "pulling from jetstream failed, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    None
}

/// The next message of a pull request, or `None` when the request is over: all messages
/// arrived, the server ended it (its `408 Request Timeout` at the request's expiry, which ends
/// a partly filled or empty request), or `deadline` passed.
///
/// The deadline is for a request the server does not end: one sent to a node that died or was
/// cut off, where the client would otherwise wait five seconds past the expiry before pulling
/// again (async-nats's own fallback), and, as ledger-bench showed, about one in a hundred
/// requests on a live server. It comes after the server's 408, which arrives 40–50 ms after the
/// expiry on one server here (2.9.10 and 2.15.1 alike, both measured with a raw-protocol probe;
/// docs/nats.md): a request the client lets go of while the server still serves it loses the
/// messages sent to it meanwhile until `ack_wait` brings them back (seen in no run). Every batch
/// the server leaves open waits this long, so it also bounds the ledger's latency.
async fn next_message(
    messages: &mut jetstream::consumer::pull::Batch,
    deadline: tokio::time::Instant,
) -> Option<jetstream::Message> {
    match tokio::time::timeout_at(deadline, messages.next()).await {
        Ok(Some(Ok(message))) => Some(message),
        Ok(Some(Err(err))) => {
            tracing::warn!(error = %err, "receiving a message failed");
            None
        }
        Ok(None) | Err(_) => None,
    }
}

/// Slack after the server's expiry of a pull request before the client gives up on it (see
/// [`next_message`]): twice the latest 408 seen. It was 500 ms, and the ledger's publish-to-written
/// p99 at a steady 1,000 events/s was 557-573 ms (the batches the server left open); at 100 ms,
/// 173-180 ms, with 0 redeliveries either way (`ledger-bench --security off --encryption off`,
/// bench/RESULTS.md).
const EXPIRY_SLACK: Duration = Duration::from_millis(100);

/// Pulls batches of up to `batch_size` from `consumer` and hands each message to `handle`, one at
/// a time as it arrives, until `shutdown`. The batch in hand is always finished.
pub async fn consume<F, Fut>(
    consumer: &PullConsumer,
    batch_size: usize,
    shutdown: &Shutdown,
    mut handle: F,
) where
    F: FnMut(jetstream::Message) -> Fut,
    Fut: Future<Output = ()>,
{
    const WAIT: Duration = Duration::from_secs(1);
    while let Some(mut messages) = pull(consumer, batch_size, WAIT, shutdown).await {
        let deadline = tokio::time::Instant::now() + WAIT + EXPIRY_SLACK;
        while let Some(message) = next_message(&mut messages, deadline).await {
            handle(message).await;
        }
    }
}

/// Pulls up to `batch_size` messages, waiting at most `wait` for a batch to fill, and hands them
/// to `handle` together (to be written in one transaction), until `shutdown`. The batch in hand
/// is always finished.
pub async fn consume_batches<F, Fut>(
    consumer: &PullConsumer,
    batch_size: usize,
    wait: Duration,
    shutdown: &Shutdown,
    mut handle: F,
) where
    F: FnMut(Vec<jetstream::Message>) -> Fut,
    Fut: Future<Output = ()>,
{
    while let Some(mut messages) = pull(consumer, batch_size, wait, shutdown).await {
        let deadline = tokio::time::Instant::now() + wait + EXPIRY_SLACK;
        let mut batch = Vec::with_capacity(batch_size);
        while let Some(message) = next_message(&mut messages, deadline).await {
            batch.push(message);
        }
        if !batch.is_empty() {
            handle(batch).await;
        }
    }
}

/// Exports each of `consumers` (stream name, durable name) every 15 s until `shutdown`:
/// `nats_consumer_pending_messages` (the lag: in the stream, not yet delivered),
/// `nats_consumer_ack_pending_messages` (delivered, not yet acknowledged) and
/// `nats_consumer_redelivered_messages`, labelled by stream and consumer.
pub async fn report_consumers(
    js: jetstream::Context,
    consumers: Vec<(String, String)>,
    shutdown: Shutdown,
) {
    const EVERY: Duration = Duration::from_secs(15);
    loop {
        for (stream, consumer) in &consumers {
            let info = match js.get_stream(stream).await {
                Ok(s) => s.consumer_info(consumer).await.map_err(|e| e.to_string()),
                Err(err) => Err(err.to_string()),
            };
            match info {
                #[allow(clippy::cast_precision_loss)] // counts far below 2^53
                Ok(info) => {
                    let labels = [("stream", stream.clone()), ("consumer", consumer.clone())];
                    metrics::gauge!("nats_consumer_pending_messages", &labels)
                        .set(info.num_pending as f64);
                    metrics::gauge!("nats_consumer_ack_pending_messages", &labels)
                        .set(info.num_ack_pending as f64);
                    metrics::gauge!("nats_consumer_redelivered_messages", &labels)
                        .set(info.num_redelivered as f64);
                }
                Err(err) => {
                    tracing::debug!(stream, consumer, error = %err, "consumer info unavailable")
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}
