//! Subject and stream names, each inside a namespace when one is given, and the streams every
//! service relies on: created when missing, and refused at start-up when an existing one is
//! weaker than the system's guarantees need.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// Subject and stream names, optionally inside a namespace, and how many replicas the streams
/// are kept on.
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
    stream_prefix: String,
    replicas: usize,
}

impl Default for Subjects {
    fn default() -> Self {
        Subjects {
            prefix: String::new(),
            stream_prefix: String::new(),
            replicas: 1,
        }
    }
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
                ..Subjects::default()
            }
        }
    }

    /// The streams are kept on `replicas` servers (1 on a single server, 3 on a NATS cluster;
    /// `<SVC>_NATS_STREAM_REPLICAS`): [`Subjects::ensure_streams`] creates them so and brings an
    /// existing stream with fewer up to it. Their durable consumers follow the stream.
    pub fn with_replicas(self, replicas: usize) -> Self {
        Subjects {
            replicas: replicas.max(1),
            ..self
        }
    }

    pub fn replicas(&self) -> usize {
        self.replicas
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
    /// letters. Raw webhooks carry clients' personal data, so they are kept only for the replay
    /// window ([`WEBHOOK_RETENTION`] unless ingest sets another, [`Subjects::set_webhook_retention`]).
    fn streams(&self) -> [stream::Config; 5] {
        let config = |base: &str, subjects: &str, max_age: Duration| stream::Config {
            name: self.stream_name(base),
            subjects: vec![format!("{}{subjects}", self.prefix)],
            storage: stream::StorageType::File,
            // Dedup by Nats-Msg-Id inside this window; the databases keep unique keys for longer.
            duplicate_window: Duration::from_secs(10 * 60),
            max_age,
            num_replicas: self.replicas,
            ..Default::default()
        };
        [
            config("WEBHOOKS", "webhooks.>", WEBHOOK_RETENTION),
            config("LEDGER", "ledger.>", 90 * DAY),
            config("INVOICING", "invoicing.>", 90 * DAY),
            config("ALERTS", "alerts.>", 90 * DAY),
            config("DLQ", "dlq.>", 365 * DAY),
        ]
    }

    /// Sets how long the raw-webhook stream keeps bodies (ingest's setting), when it differs;
    /// returns the age it had then. At least [`MIN_WEBHOOK_RETENTION`].
    pub async fn set_webhook_retention(
        &self,
        js: &jetstream::Context,
        age: Duration,
    ) -> Result<Option<Duration>, async_nats::Error> {
        if age < MIN_WEBHOOK_RETENTION {
            return Err(format!(
                "raw webhooks must be kept at least {MIN_WEBHOOK_RETENTION:?} for the consumers"
            )
            .into());
        }
        let mut stream = js.get_stream(self.stream_name("WEBHOOKS")).await?;
        let mut config = stream.info().await?.config.clone();
        if config.max_age == age {
            return Ok(None);
        }
        let was = config.max_age;
        config.max_age = age;
        js.update_stream(config).await?;
        Ok(Some(was))
    }

    /// Names of every stream the services use, for readiness checks.
    pub fn stream_names(&self) -> Vec<String> {
        self.streams().into_iter().map(|c| c.name).collect()
    }

    /// Creates the streams if they do not exist. An existing one kept on fewer replicas than
    /// configured is brought up to them (logged). Otherwise it is left as it is, unless a
    /// setting the system's guarantees rest on differs (see [`weakened`]): then start-up stops,
    /// naming it. Whoever may create a stream (every service, by name) could have created it
    /// first with other settings, or an operator changed it.
    pub async fn ensure_streams(
        &self,
        js: &jetstream::Context,
    ) -> Result<(), jetstream::context::CreateStreamError> {
        for config in self.streams() {
            let stream = js.get_or_create_stream(config.clone()).await?;
            let mut actual = stream.cached_info().config.clone();
            if actual.num_replicas < config.num_replicas {
                let was = actual.num_replicas;
                actual.num_replicas = config.num_replicas;
                actual = js
                    .update_stream(actual)
                    .await
                    .map_err(|e| {
                        jetstream::context::CreateStreamError::with_source(
                            jetstream::context::CreateStreamErrorKind::Response,
                            format!(
                                "raising {} to {} replicas: {e}",
                                config.name, config.num_replicas
                            ),
                        )
                    })?
                    .config;
                tracing::info!(
                    stream = %config.name,
                    was,
                    now = actual.num_replicas,
                    "stream brought to the configured replicas"
                );
            }
            if let Some(why) = weakened(&config, &actual) {
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

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// How long raw webhooks are kept by default: the replay window (docs/privacy.md).
pub const WEBHOOK_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The shortest a raw webhook may be kept: far longer than any consumer takes to read it.
pub const MIN_WEBHOOK_RETENTION: Duration = DAY;

/// How an existing stream's settings fall short of `wanted`, if they do: other subjects, a
/// retention that deletes messages another consumer still needs (work queue, interest), memory
/// storage, a shorter de-duplication window or age, or a size limit that drops messages. Larger
/// windows and ages, or unlimited age, are fine.
/// The shortest age a stream may keep messages: its own, except raw webhooks, whose age ingest
/// sets (the replay window) as long as it is at least [`MIN_WEBHOOK_RETENTION`].
fn minimum_age(wanted: &stream::Config) -> Duration {
    if wanted.name.ends_with("WEBHOOKS") {
        MIN_WEBHOOK_RETENTION
    } else {
        wanted.max_age
    }
}

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
    } else if shorter(actual.max_age, minimum_age(wanted)) {
        Some(format!(
            "a maximum age of {:?}, shorter than {:?}",
            actual.max_age,
            minimum_age(wanted)
        ))
    } else if actual.max_messages > 0 || actual.max_bytes > 0 || actual.max_messages_per_subject > 0
    {
        Some("a size limit (messages would be discarded)".to_string())
    } else {
        None
    }
}
#[cfg(test)]
mod tests {
    use super::*;

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
        // Raw webhooks may be kept for less than the default (the replay window ingest sets),
        // never for less than a day.
        assert_eq!(with(|c| c.max_age = 2 * DAY), None);
        let dead_letters = subjects.streams()[4].clone();
        let mut shorter = dead_letters.clone();
        shorter.max_age = 2 * DAY;
        assert!(weakened(&dead_letters, &shorter).is_some());
        for (why, expected) in named {
            let why = why.unwrap_or_default();
            assert!(
                why.starts_with(expected),
                "{why:?} does not start with {expected:?}"
            );
        }
    }
}
