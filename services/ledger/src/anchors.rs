//! The hash chain's head kept outside the database. Triggers stop the ledger's runtime role, but
//! the schema's owner or a superuser can disable them, rewrite a record and re-chain everything
//! after it so every hash links again. So every few minutes the ledger publishes each tenant's
//! head (`ChainAnchorV1`: position and hash) to the LEDGER stream, where only the ledger may
//! publish (`deploy/nats/nats-server.conf`); `VerifyIntegrity` checks that the record at the
//! latest anchor's position still has the anchored hash. A head is anchored again when it moved,
//! and at least daily, so the stream's retention never leaves a tenant without one. A head is
//! anchored only if the chain still has the hash the last anchor names, so a rewrite is not
//! blessed by the next anchor (`ledger_chain_anchors_refused_total` counts refusals).

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream;
use billing_proto::convert::timestamp;
use billing_proto::events::ChainAnchorV1;
use billing_runtime::{Shutdown, Subjects};
use chrono::{DateTime, Utc};
use prost::Message as _;

use crate::integrity::Anchor;
use crate::store::Store;

/// A head already anchored is anchored again after this long, unchanged.
const REANCHOR_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Clone)]
pub struct Anchors {
    js: jetstream::Context,
    subjects: Subjects,
}

impl Anchors {
    pub fn new(js: jetstream::Context, subjects: Subjects) -> Self {
        Anchors { js, subjects }
    }

    /// Anchors every tenant's head every `every` until `shutdown`.
    pub async fn run(self, store: Store, every: Duration, shutdown: Shutdown) {
        let mut anchored: HashMap<String, (i64, std::time::Instant)> = HashMap::new();
        loop {
            match store.chain_heads().await {
                Ok(heads) => {
                    for (tenant, seq, hash) in heads {
                        let fresh = anchored
                            .get(&tenant)
                            .is_some_and(|(s, at)| *s == seq && at.elapsed() < REANCHOR_AFTER);
                        if fresh || seq == 0 {
                            continue;
                        }
                        // A new anchor only extends the last one: if the record it names no
                        // longer has its hash, the history was rewritten, and anchoring the new
                        // head would bless the rewrite.
                        match self.extends_last(&store, &tenant, seq).await {
                            Ok(true) => {}
                            Ok(false) => {
                                metrics::counter!("ledger_chain_anchors_refused_total")
                                    .increment(1);
                                tracing::error!(
                                    tenant,
                                    "the chain no longer matches its last anchor; not anchoring \
                                     (run billingctl bookings verify)"
                                );
                                continue;
                            }
                            Err(err) => {
                                tracing::warn!(tenant, error = %err, "reading the last anchor failed");
                                continue;
                            }
                        }
                        match self.publish(&tenant, seq, &hash).await {
                            Ok(()) => {
                                anchored.insert(tenant, (seq, std::time::Instant::now()));
                            }
                            Err(err) => {
                                tracing::warn!(tenant, error = %err, "anchoring the chain head failed");
                            }
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err, "reading chain heads failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Whether the chain, now `seq` records long, still has the hash its latest anchor names.
    async fn extends_last(
        &self,
        store: &Store,
        tenant: &str,
        seq: i64,
    ) -> Result<bool, async_nats::Error> {
        let Some(last) = self.latest(tenant).await? else {
            return Ok(true);
        };
        if last.chain_seq > seq {
            return Ok(false);
        }
        let stored = store.record_hash_at(tenant, last.chain_seq).await?;
        Ok(stored.as_deref() == Some(last.record_hash.as_str()))
    }

    async fn publish(&self, tenant: &str, seq: i64, hash: &str) -> Result<(), async_nats::Error> {
        let anchor = ChainAnchorV1 {
            tenant_id: tenant.to_string(),
            chain_seq: u64::try_from(seq).unwrap_or_default(),
            record_hash: hash.to_string(),
            anchored_at: Some(timestamp(Utc::now())),
        };
        let mut headers = async_nats::HeaderMap::new();
        // Replicas anchoring the same head within the dedup window store it once.
        let id = format!("anchor:{tenant}:{seq}:{hash}");
        headers.insert("Nats-Msg-Id", id.as_str());
        headers.insert("Content-Type", "application/protobuf");
        self.js
            .publish_with_headers(
                self.subjects.chain_anchor(tenant),
                headers,
                anchor.encode_to_vec().into(),
            )
            .await?
            .await?;
        metrics::counter!("ledger_chain_anchors_total").increment(1);
        Ok(())
    }

    /// The latest anchor of `tenant`'s chain, if one was published.
    pub async fn latest(&self, tenant: &str) -> Result<Option<Anchor>, async_nats::Error> {
        let stream = self
            .js
            .get_stream(self.subjects.stream_name("LEDGER"))
            .await?;
        let message = match stream
            .get_last_raw_message_by_subject(&self.subjects.chain_anchor(tenant))
            .await
        {
            Ok(message) => message,
            Err(err)
                if err.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
            {
                return Ok(None);
            }
            Err(err) => return Err(err.into()),
        };
        let anchor = ChainAnchorV1::decode(message.payload.as_ref())?;
        if anchor.tenant_id != tenant {
            return Err(format!(
                "the latest anchor on {} names tenant {:?}",
                self.subjects.chain_anchor(tenant),
                anchor.tenant_id
            )
            .into());
        }
        Ok(Some(Anchor {
            chain_seq: i64::try_from(anchor.chain_seq).unwrap_or(i64::MAX),
            record_hash: anchor.record_hash,
            anchored_at: anchor
                .anchored_at
                .and_then(|t| DateTime::from_timestamp(t.seconds, 0)),
        }))
    }
}
