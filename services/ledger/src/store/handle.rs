//! The store's handle: the pool, the subjects the outbox writes to, and the chain key; each
//! aggregate's queries are methods on it, in the sibling modules.

use billing_domain::hash::ChainKey;
use billing_runtime::Subjects;
use sqlx::PgPool;

use crate::batch;
use crate::clients::seal::ClientCache;
use crate::clients::{ClientDataError, Vault};
use crate::incoming::NewBooking;
use crate::outcome::Outcome;

#[derive(Clone)]
pub struct Store {
    pub(super) pool: PgPool,
    pub(super) subjects: Subjects,
    /// The key of the hash chain, when it is keyed (`LEDGER_CHAIN_KEY_FILE`).
    pub(super) chain_key: Option<ChainKey>,
    /// The keys clients' details are sealed with (`LEDGER_CLIENT_KEYRING_FILE`); without them
    /// no client details are kept.
    pub(super) vault: Option<Vault>,
    /// Client keys and lookups this process saw committed (not read or written again).
    pub(super) client_cache: ClientCache,
}

impl Store {
    pub fn new(pool: PgPool, subjects: Subjects) -> Self {
        Store {
            pool,
            subjects,
            chain_key: None,
            vault: None,
            client_cache: ClientCache::default(),
        }
    }

    /// New bookings' clients are kept, sealed with `vault`'s keys, from now on.
    pub fn with_vault(self, vault: Option<Vault>) -> Self {
        Store { vault, ..self }
    }

    pub fn vault(&self) -> Option<&Vault> {
        self.vault.as_ref()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Records are hashed, and verified, with `key` (HMAC) from now on.
    pub fn with_chain_key(self, key: Option<ChainKey>) -> Self {
        Store {
            chain_key: key,
            ..self
        }
    }

    pub fn chain_key(&self) -> Option<&ChainKey> {
        self.chain_key.as_ref()
    }

    /// Applies a batch of booking events in one transaction (see [`crate::batch`]).
    pub async fn apply_batch(
        &self,
        events: &[(NewBooking, u64)],
    ) -> Result<Vec<Outcome>, ClientDataError> {
        batch::apply(
            &self.pool,
            &self.subjects,
            events,
            self.chain_key.as_ref(),
            self.vault.as_ref(),
            &self.client_cache,
        )
        .await
    }
}
