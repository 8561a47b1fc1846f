//! The outbox relay: publishes events committed with invoices to JetStream, in order, and marks
//! them published only after JetStream's ack. A crash in between republishes with the same
//! `Nats-Msg-Id`, which JetStream (and consumers' own keys) deduplicate.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use billing_runtime::Shutdown;
use sqlx::PgPool;
use tokio::sync::Notify;

/// How often the relay looks for events even when nobody woke it (e.g. after a restart).
const POLL_INTERVAL: Duration = Duration::from_secs(2);
const BATCH: i64 = 100;

pub struct Relay {
    pool: PgPool,
    js: jetstream::Context,
    wake: Arc<Notify>,
}

impl Relay {
    pub fn new(pool: PgPool, js: jetstream::Context) -> Self {
        Relay {
            pool,
            js,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Notify this after committing an outbox row to relay it at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub async fn run(self, shutdown: Shutdown) {
        loop {
            if let Err(err) = self.relay_pending().await {
                metrics::counter!("invoicing_outbox_failures_total").increment(1);
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
            let rows: Vec<(i64, String, String, Vec<u8>)> = sqlx::query_as(
                "select id, subject, message_id, payload from outbox
                 where published_at is null order by id limit $1 for update skip locked",
            )
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                return Ok(());
            }
            let mut ids = Vec::with_capacity(rows.len());
            for (id, subject, message_id, payload) in rows {
                let mut headers = HeaderMap::new();
                headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id.as_str());
                headers.insert("Content-Type", "application/protobuf");
                self.js
                    .publish_with_headers(subject, headers, payload.into())
                    .await?
                    .await?;
                ids.push(id);
            }
            sqlx::query("update outbox set published_at = now() where id = any($1)")
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            metrics::counter!("invoicing_outbox_published_total").increment(ids.len() as u64);
        }
    }
}
