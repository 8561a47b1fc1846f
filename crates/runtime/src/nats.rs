//! JetStream: connection, the streams every service relies on, subject names and the headers
//! that carry verified metadata next to a raw body.
//!
//! Tests run many systems side by side on one NATS server, so every subject and stream name can
//! carry a namespace (`t42.webhooks.simplybook.claire` in stream `T42_WEBHOOKS`); production runs
//! with an empty namespace.

use std::future::Future;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{PullConsumer, pull};
use async_nats::jetstream::{self, stream};
use futures::StreamExt;

use crate::Shutdown;

/// Header: where the event came from (`simplybook`, `stripe`).
pub const HDR_SOURCE: &str = "Billing-Source";
/// Header: the tenant the event belongs to.
pub const HDR_TENANT: &str = "Billing-Tenant";
/// Header: the event's identity at its source, also used as `Nats-Msg-Id`.
pub const HDR_EVENT_ID: &str = "Billing-Event-Id";
/// Header: how ingest authenticated the request (`standard-webhooks`).
pub const HDR_AUTH: &str = "Billing-Auth";
/// Header: when ingest received the request (RFC 3339, UTC).
pub const HDR_RECEIVED_AT: &str = "Billing-Received-At";
/// Header: when the sender signed the event (its verified timestamp, Unix seconds). The ledger
/// orders a booking's states by it, so a late-arriving older event cannot undo a newer one.
pub const HDR_SENT_AT: &str = "Billing-Sent-At";
/// Header: the event's type at its source (e.g. Stripe's `invoice.paid`).
pub const HDR_EVENT_TYPE: &str = "Billing-Event-Type";
/// `Billing-Auth` of a signed rich booking payload (Standard Webhooks).
pub const AUTH_STANDARD_WEBHOOKS: &str = "standard-webhooks";
/// `Billing-Auth` of a SimplyBook.me native callback (secret token in the URL; details unsigned).
pub const AUTH_CALLBACK_TOKEN: &str = "callback-token";
/// `Billing-Auth` of a booking reconciliation found missing or different: the body names the
/// booking only, and the ledger confirms it through SimplyBook's Company Administration API.
pub const AUTH_RECONCILIATION_REPAIR: &str = "reconciliation-repair";
/// `Billing-Auth` of a Stripe event (`Stripe-Signature`).
pub const AUTH_STRIPE_SIGNATURE: &str = "stripe-signature";
/// Header on dead letters: why the event could not be processed.
pub const HDR_DLQ_REASON: &str = "Billing-Dlq-Reason";
/// Header on dead letters: the subject the event was first published on.
pub const HDR_DLQ_SUBJECT: &str = "Billing-Dlq-Subject";

/// Subject and stream names, optionally inside a namespace.
#[derive(Debug, Clone, Default)]
pub struct Subjects {
    prefix: String,
    stream_prefix: String,
}

impl Subjects {
    /// `namespace` is empty in production; tests use a unique one. Letters, digits and `_` only.
    pub fn new(namespace: &str) -> Self {
        if namespace.is_empty() {
            Subjects::default()
        } else {
            Subjects {
                prefix: format!("{namespace}."),
                stream_prefix: format!("{}_", namespace.to_ascii_uppercase()),
            }
        }
    }

    /// The namespace these names were made with (empty in production).
    pub fn namespace(&self) -> &str {
        self.prefix.trim_end_matches('.')
    }

    pub fn simplybook(&self, tenant: &str) -> String {
        format!("{}webhooks.simplybook.{tenant}", self.prefix)
    }

    pub fn simplybook_all(&self) -> String {
        format!("{}webhooks.simplybook.>", self.prefix)
    }

    pub fn stripe(&self) -> String {
        format!("{}webhooks.stripe", self.prefix)
    }

    /// Audit records of webhooks ingest refused, by source.
    pub fn rejected(&self, source: &str) -> String {
        format!("{}webhooks.rejected.{source}", self.prefix)
    }

    pub fn rejected_all(&self) -> String {
        format!("{}webhooks.rejected.>", self.prefix)
    }

    /// The ledger's booking events (`recorded`, `changed`, `revised`).
    pub fn booking_event(&self, kind: &str) -> String {
        format!("{}ledger.booking.{kind}", self.prefix)
    }

    /// Anchors of a tenant's hash-chain head (`ChainAnchorV1`), kept outside the database.
    pub fn chain_anchor(&self, tenant: &str) -> String {
        format!("{}ledger.chain.anchored.{tenant}", self.prefix)
    }

    pub fn invoice(&self, status: &str) -> String {
        format!("{}invoicing.invoice.{status}", self.prefix)
    }

    /// Operator alerts (`AlertV1`), by kind.
    pub fn alert(&self, kind: &str) -> String {
        format!("{}alerts.{kind}", self.prefix)
    }

    pub fn alerts_all(&self) -> String {
        format!("{}alerts.>", self.prefix)
    }

    pub fn dead_letter(&self, stream: &str, consumer: &str) -> String {
        format!("{}dlq.{stream}.{consumer}", self.prefix)
    }

    pub fn stream_name(&self, base: &str) -> String {
        format!("{}{base}", self.stream_prefix)
    }

    /// Stream configurations: raw webhooks, ledger and invoice events, operator alerts and dead
    /// letters.
    fn streams(&self) -> [stream::Config; 5] {
        const DAY: Duration = Duration::from_secs(24 * 60 * 60);
        let config = |base: &str, subjects: &str, max_age: Duration| stream::Config {
            name: self.stream_name(base),
            subjects: vec![format!("{}{subjects}", self.prefix)],
            storage: stream::StorageType::File,
            // Dedup by Nats-Msg-Id inside this window; the databases keep unique keys for longer.
            duplicate_window: Duration::from_secs(10 * 60),
            max_age,
            ..Default::default()
        };
        [
            config("WEBHOOKS", "webhooks.>", 30 * DAY),
            config("LEDGER", "ledger.>", 90 * DAY),
            config("INVOICING", "invoicing.>", 90 * DAY),
            config("ALERTS", "alerts.>", 90 * DAY),
            config("DLQ", "dlq.>", 365 * DAY),
        ]
    }

    /// Names of every stream the services use, for readiness checks.
    pub fn stream_names(&self) -> Vec<String> {
        self.streams().into_iter().map(|c| c.name).collect()
    }

    /// Creates the streams if they do not exist. An existing one is left as it is, unless a
    /// setting the system's guarantees rest on differs (see [`weakened`]): then start-up stops,
    /// naming it. Whoever may create a stream (every service, by name) could have created it
    /// first with other settings, or an operator changed it.
    pub async fn ensure_streams(
        &self,
        js: &jetstream::Context,
    ) -> Result<(), jetstream::context::CreateStreamError> {
        for config in self.streams() {
            let stream = js.get_or_create_stream(config.clone()).await?;
            if let Some(why) = weakened(&config, &stream.cached_info().config) {
                return Err(jetstream::context::CreateStreamError::with_source(
                    jetstream::context::CreateStreamErrorKind::Response,
                    format!(
                        "stream {} exists with {why}: fix the stream (nats stream edit) or \
                         remove it while nothing uses it",
                        config.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Deletes this namespace's streams (tests clean up after themselves).
    pub async fn delete_streams(&self, js: &jetstream::Context) {
        for config in self.streams() {
            let _ = js.delete_stream(&config.name).await;
        }
    }
}

/// How an existing stream's settings fall short of `wanted`, if they do: other subjects, a
/// retention that deletes messages another consumer still needs (work queue, interest), memory
/// storage, a shorter de-duplication window or age, or a size limit that drops messages. Larger
/// windows and ages, or unlimited age, are fine.
fn weakened(wanted: &stream::Config, actual: &stream::Config) -> Option<String> {
    let mut subjects = actual.subjects.clone();
    subjects.sort();
    let shorter = |actual: Duration, wanted: Duration| !actual.is_zero() && actual < wanted;
    if subjects != wanted.subjects {
        Some(format!(
            "subjects {:?}, not {:?}",
            actual.subjects, wanted.subjects
        ))
    } else if actual.retention != wanted.retention {
        Some(format!(
            "retention {:?}, not {:?}",
            actual.retention, wanted.retention
        ))
    } else if actual.storage != wanted.storage {
        Some(format!(
            "storage {:?}, not {:?}",
            actual.storage, wanted.storage
        ))
    } else if actual.duplicate_window < wanted.duplicate_window {
        Some(format!(
            "a duplicate window of {:?}, shorter than {:?}",
            actual.duplicate_window, wanted.duplicate_window
        ))
    } else if shorter(actual.max_age, wanted.max_age) {
        Some(format!(
            "a maximum age of {:?}, shorter than {:?}",
            actual.max_age, wanted.max_age
        ))
    } else if actual.max_messages > 0 || actual.max_bytes > 0 || actual.max_messages_per_subject > 0
    {
        Some("a size limit (messages would be discarded)".to_string())
    } else {
        None
    }
}

/// Connects to NATS; fails fast when the server does not answer, reconnects forever after.
pub async fn connect(
    url: &str,
    name: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    connect_as(url, name, &NatsIdentity::default()).await
}

/// Who a service is to NATS. Each service has its own identity, and the server grants each only
/// the subjects it publishes and consumes (`deploy/nats/nats-server.conf`), so a message on a
/// subject is known to come from the service allowed to publish there. Secrets come from files
/// (Kubernetes Secret volumes), never from the environment or the command line.
#[derive(Debug, Clone, Default)]
pub struct NatsIdentity {
    /// User name, with `password_file`.
    pub user: Option<String>,
    /// File holding the user's password (a trailing newline is ignored).
    pub password_file: Option<std::path::PathBuf>,
    /// A `.creds` file (JWT and nkey seed) for servers with decentralised auth.
    pub creds_file: Option<std::path::PathBuf>,
    /// File holding an nkey seed (`SU…`).
    pub nkey_seed_file: Option<std::path::PathBuf>,
    /// CA certificate(s) to trust for `tls://` URLs, in PEM.
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl NatsIdentity {
    /// An identity from a service's settings, checked: a user needs a password file and vice
    /// versa, and at most one way to authenticate.
    pub fn new(
        user: Option<String>,
        password_file: Option<std::path::PathBuf>,
        creds_file: Option<std::path::PathBuf>,
        nkey_seed_file: Option<std::path::PathBuf>,
        tls_ca_file: Option<std::path::PathBuf>,
    ) -> Result<Self, String> {
        let password = match (&user, &password_file) {
            (Some(_), Some(_)) => true,
            (None, None) => false,
            _ => {
                return Err("a NATS user needs a password file, and a password file a user".into());
            }
        };
        let ways = [password, creds_file.is_some(), nkey_seed_file.is_some()]
            .into_iter()
            .filter(|w| *w)
            .count();
        if ways > 1 {
            return Err(
                "give one way to authenticate to NATS: user and password file, creds file, or \
                 nkey seed file"
                    .into(),
            );
        }
        Ok(NatsIdentity {
            user,
            password_file,
            creds_file,
            nkey_seed_file,
            tls_ca_file,
        })
    }
}

fn auth_error(what: &str, path: &std::path::Path, e: std::io::Error) -> async_nats::ConnectError {
    // The path, never the contents.
    async_nats::ConnectError::with_source(
        async_nats::ConnectErrorKind::Authentication,
        std::io::Error::new(
            e.kind(),
            format!("reading the NATS {what} {}: {e}", path.display()),
        ),
    )
}

fn read_secret(what: &str, path: &std::path::Path) -> Result<String, async_nats::ConnectError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
        .map_err(|e| auth_error(what, path, e))
}

/// Connects as `identity` (anonymous when it is empty); TLS when the URL says `tls://`.
pub async fn connect_as(
    url: &str,
    name: &str,
    identity: &NatsIdentity,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let mut options = async_nats::ConnectOptions::new();
    if let (Some(user), Some(path)) = (&identity.user, &identity.password_file) {
        options = options.user_and_password(user.clone(), read_secret("password file", path)?);
    }
    if let Some(path) = &identity.nkey_seed_file {
        options = options.nkey(read_secret("nkey seed file", path)?);
    }
    if let Some(path) = &identity.creds_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| auth_error("creds file", path, e))?;
    }
    if let Some(path) = &identity.tls_ca_file {
        options = options.add_root_certificates(path.clone());
    }
    if url.starts_with("tls://") {
        options = options.require_tls(true);
    }
    options
        .name(name)
        // Each service's replies (pulled messages, acks of its publishes, API answers) come to
        // inboxes of its own: the server lets no other identity subscribe to them.
        .custom_inbox_prefix(format!("_INBOX_{name}"))
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .connect(url)
        .await
}

/// A JetStream context whose API calls and publish acks give up after `timeout`.
pub fn jetstream(client: async_nats::Client, timeout: Duration) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(timeout)
        .build(client)
}

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

/// A header value from a JetStream message, if present.
pub fn header<'a>(msg: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str())
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
/// arrived, the server ended it, or `deadline` passed. The deadline matters: NATS 2.9 does not
/// tell the client when a partly filled request expires, and the client would otherwise wait
/// five more seconds before pulling again. It is a little later than the server's expiry, so
/// nothing is still being delivered to the request when the client lets it go.
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

/// Slack after the server's expiry of a pull request before the client gives up on it.
const EXPIRY_SLACK: Duration = Duration::from_millis(50);

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

/// How long to wait before the next delivery of a message already delivered `delivered` times:
/// one more second per attempt, capped at `max`, so an outage does not spin.
pub fn retry_delay(delivered: i64, max: Duration) -> Duration {
    let secs = u64::try_from(delivered.max(1)).unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(max)
}

/// A copy of `headers` without the named ones (names compare case-insensitively).
pub fn headers_without(headers: Option<&HeaderMap>, skip: &[&str]) -> HeaderMap {
    let mut copy = HeaderMap::new();
    for (name, values) in headers.into_iter().flat_map(HeaderMap::iter) {
        let name_bytes: &[u8] = name.as_ref();
        if skip
            .iter()
            .any(|s| s.as_bytes().eq_ignore_ascii_case(name_bytes))
        {
            continue;
        }
        for value in values {
            copy.append(name.clone(), value.as_str());
        }
    }
    copy
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
/// [`settle`] carries it out.
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

/// What [`settle`] did, for the consumer's own metrics.
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

/// The header name JetStream deduplicates by.
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";

/// Declares a service's NATS identity settings, `<PREFIX>_NATS_USER`,
/// `<PREFIX>_NATS_PASSWORD_FILE`, `<PREFIX>_NATS_CREDS_FILE`, `<PREFIX>_NATS_NKEY_SEED_FILE` and
/// `<PREFIX>_NATS_TLS_CA_FILE`, as a struct to `#[command(flatten)]` into its config. All
/// optional: without them the service connects anonymously (a developer's NATS).
#[macro_export]
macro_rules! nats_identity_settings {
    ($name:ident, $prefix:literal) => {
        /// How this service proves who it is to NATS (see `deploy/nats/nats-server.conf`):
        /// a user with a password file, a creds file or an nkey seed file; secrets only in
        /// files.
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct $name {
            /// NATS user of this service (with the password file).
            #[arg(long = "nats-user", env = concat!($prefix, "_NATS_USER"))]
            pub user: Option<String>,
            /// File holding the NATS user's password.
            #[arg(long = "nats-password-file", env = concat!($prefix, "_NATS_PASSWORD_FILE"))]
            pub password_file: Option<std::path::PathBuf>,
            /// NATS `.creds` file (JWT and nkey seed), instead of a user.
            #[arg(long = "nats-creds-file", env = concat!($prefix, "_NATS_CREDS_FILE"))]
            pub creds_file: Option<std::path::PathBuf>,
            /// File holding an nkey seed, instead of a user.
            #[arg(long = "nats-nkey-seed-file", env = concat!($prefix, "_NATS_NKEY_SEED_FILE"))]
            pub nkey_seed_file: Option<std::path::PathBuf>,
            /// CA certificate(s) to trust for a `tls://` NATS URL (PEM).
            #[arg(long = "nats-tls-ca-file", env = concat!($prefix, "_NATS_TLS_CA_FILE"))]
            pub tls_ca_file: Option<std::path::PathBuf>,
        }

        impl $name {
            /// The identity these settings describe, checked.
            pub fn identity(&self) -> Result<$crate::nats::NatsIdentity, String> {
                $crate::nats::NatsIdentity::new(
                    self.user.clone(),
                    self.password_file.clone(),
                    self.creds_file.clone(),
                    self.nkey_seed_file.clone(),
                    self.tls_ca_file.clone(),
                )
            }

            /// Connects to `url` as this identity (a settings error fails the connection with
            /// its reason).
            pub async fn connect(
                &self,
                url: &str,
                name: &str,
            ) -> Result<async_nats::Client, async_nats::ConnectError> {
                let identity = self.identity().map_err(|reason| {
                    async_nats::ConnectError::with_source(
                        async_nats::ConnectErrorKind::Authentication,
                        std::io::Error::other(reason),
                    )
                })?;
                $crate::nats::connect_as(url, name, &identity).await
            }
        }
    };
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

    #[test]
    fn a_stream_with_weaker_settings_is_named_and_a_stronger_one_accepted() {
        let subjects = Subjects::new("t1");
        let wanted = subjects.streams()[0].clone();
        assert_eq!(weakened(&wanted, &wanted), None);
        let with = |change: fn(&mut stream::Config)| {
            let mut actual = wanted.clone();
            change(&mut actual);
            weakened(&wanted, &actual)
        };
        // Longer windows, unlimited age: stronger, accepted.
        assert_eq!(with(|c| c.duplicate_window *= 2), None);
        assert_eq!(with(|c| c.max_age = Duration::ZERO), None);
        assert_eq!(with(|c| c.max_messages = -1), None);
        let named = [
            (
                with(|c| c.retention = stream::RetentionPolicy::WorkQueue),
                "retention WorkQueue",
            ),
            (
                with(|c| c.storage = stream::StorageType::Memory),
                "storage Memory",
            ),
            (
                with(|c| c.duplicate_window = Duration::from_secs(60)),
                "a duplicate window of 60s",
            ),
            (
                with(|c| c.max_age = Duration::from_secs(3600)),
                "a maximum age of 3600s",
            ),
            (with(|c| c.max_messages = 1000), "a size limit"),
            (with(|c| c.subjects = vec!["other.>".into()]), "subjects"),
        ];
        for (why, expected) in named {
            let why = why.unwrap_or_default();
            assert!(
                why.starts_with(expected),
                "{why:?} does not start with {expected:?}"
            );
        }
    }
}
