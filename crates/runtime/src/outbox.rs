//! The outbox relay: publishes domain events that a service committed in its own `outbox` table
//! (in the same transaction as the change they describe) to JetStream, in order, and marks them
//! published only after JetStream's acks. A crash in between republishes with the same
//! `Nats-Msg-Id`, which JetStream (and consumers' own keys) deduplicate: no event is lost or
//! invented.
//!
//! The table (in the service's schema): `outbox (id bigserial primary key, subject text,
//! message_id text unique, payload bytea, created_at timestamptz, published_at timestamptz,
//! traceparent text)`; a row's `traceparent` is published as a header, so consumers continue
//! the trace of the work that wrote it.
//!
//! Its two queries are not checked at build time: they name `outbox` unqualified, found on the
//! search path of the service's pool (each service's own schema, chosen at run time), where
//! checked queries name their schema. End-to-end tests run them on each service's real table:
//! `voids_payments_overdue_and_changes_after_invoicing` (`tests/e2e/invoicing/lifecycle.rs`:
//! the ledger's booking events reach invoicing, which bills the changes),
//! `signed_bookings_become_one_emailed_invoice` (`tests/e2e/walking_skeleton.rs`: invoicing's
//! event reaches the notifier), and
//! `the_ledgers_runtime_role_cannot_change_or_delete_a_record_or_its_guards`
//! (`tests/e2e/integrity/privileges.rs`: a row with a foreign subject is marked done and never
//! published).

use std::sync::Arc;
use std::time::Duration;

use crate::Shutdown;
use async_nats::HeaderMap;
use async_nats::jetstream;
use sqlx::PgPool;
use tokio::sync::Notify;

/// How often the relay looks for events even when nobody woke it (e.g. after a restart).
const POLL_INTERVAL: Duration = Duration::from_secs(2);
const BATCH: i64 = 500;

/// An outbox row waiting to be published.
#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    subject: String,
    message_id: String,
    payload: Vec<u8>,
    traceparent: Option<String>,
}

pub struct Relay {
    service: &'static str,
    pool: PgPool,
    js: jetstream::Context,
    wake: Arc<Notify>,
    /// Subject prefixes this service's events may have; anything else in the table was not
    /// written by the service's own code and is never published.
    allowed: Vec<String>,
}

impl Relay {
    /// `service` labels the relay's metrics.
    /// `allowed` are the subject prefixes of the events the service writes (e.g. its
    /// `ledger.booking.` and `alerts.`): a row with another subject — one someone with the
    /// runtime role's INSERT put there to borrow the service's NATS identity — is refused,
    /// counted in `outbox_refused_total` and logged, never published.
    pub fn new(
        service: &'static str,
        pool: PgPool,
        js: jetstream::Context,
        allowed: Vec<String>,
    ) -> Self {
        // At 0 from the start, so the first failure raises the alert.
        metrics::counter!("outbox_failures_total", "service" => service).increment(0);
        metrics::counter!("outbox_refused_total", "service" => service).increment(0);
        Relay {
            service,
            pool,
            js,
            wake: Arc::new(Notify::new()),
            allowed,
        }
    }

    /// Notify this after committing an outbox row to relay it at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub async fn run(self, shutdown: Shutdown) {
        loop {
            if let Err(err) = self.relay_pending().await {
                metrics::counter!("outbox_failures_total", "service" => self.service).increment(1);
                tracing::warn!(error = %err, "outbox relay failed, will retry");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
        tracing::info!("outbox relay stopped");
    }

    async fn relay_pending(&self) -> Result<(), async_nats::Error> {
        loop {
            let mut tx = self.pool.begin().await?;
            // skip locked: several invoicing replicas relay without stepping on each other.
            let rows: Vec<Row> = sqlx::query_as(
                "select id, subject, message_id, payload, traceparent from outbox
                 where published_at is null order by id limit $1 for update skip locked",
            )
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                return Ok(());
            }
            // All of the batch in flight at once (published in order on one connection), then
            // every ack; any failure rolls back and the whole batch is sent again, deduplicated.
            let mut ids = Vec::with_capacity(rows.len());
            let mut acks = Vec::with_capacity(rows.len());
            for Row {
                id,
                subject,
                message_id,
                payload,
                traceparent,
            } in rows
            {
                if !self.allowed.iter().any(|p| subject.starts_with(p.as_str())) {
                    metrics::counter!("outbox_refused_total", "service" => self.service)
                        .increment(1);
                    tracing::error!(
                        id,
                        subject,
                        "outbox row with a subject this service never writes, not published"
                    );
                    // Marked done so it cannot block the outbox; the log and counter keep it.
                    ids.push(id);
                    continue;
                }
                let mut headers = HeaderMap::new();
                headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id.as_str());
                headers.insert("Content-Type", "application/protobuf");
                if let Some(traceparent) = traceparent {
                    headers.insert(crate::trace::TRACEPARENT, traceparent.as_str());
                }
                acks.push(
                    self.js
                        .publish_with_headers(subject, headers, payload.into())
                        .await?,
                );
                ids.push(id);
            }
            for ack in acks {
                ack.await?;
            }
            sqlx::query("update outbox set published_at = now() where id = any($1)")
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            metrics::counter!("outbox_published_total", "service" => self.service)
                .increment(ids.len() as u64);
        }
    }
}
