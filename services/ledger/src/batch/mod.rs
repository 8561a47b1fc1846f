//! Applying a batch of booking events in one transaction, in three steps:
//!
//! 1. [`load`]: claim every event id, lock the chain head of every tenant in the batch and the
//!    bookings the batch names, and read them as they stand now.
//! 2. [`plan`]: decide, event by event in stream order and in memory, what each one does — a new
//!    booking on the chain, a price revision on the chain, a status/time change, nothing
//!    (duplicate, stale), or a rejection (its key is released so the dead-letter path can handle
//!    it) — and what that writes. Pure: every money and ordering rule lives there.
//!    Then the clients of new bookings are sealed (`crate::clients::seal`).
//! 3. [`write`]: one `unnest` statement per table — with a `ledger.booking.*` event in the outbox
//!    for each change — then commit.

mod load;
mod plan;
#[cfg(test)]
mod tests;
mod write;

use billing_domain::hash::ChainKey;
use billing_runtime::Subjects;
use sqlx::PgPool;
use uuid::Uuid;

use std::collections::HashMap;

use crate::clients::ClientDataError;
use crate::clients::Vault;
use crate::clients::seal::{ClientCache, Learnt, ToSeal, seal_batch};
use crate::incoming::NewBooking;
use crate::outcome::Outcome;

/// Applies `events` (each with its stream sequence) in one transaction; one outcome per event,
/// in order. New bookings' clients are sealed with `vault`'s keys (none kept without one). An
/// error rolls everything back: retry the whole batch.
pub async fn apply(
    pool: &PgPool,
    subjects: &Subjects,
    events: &[(NewBooking, u64)],
    chain_key: Option<&ChainKey>,
    vault: Option<&Vault>,
    cache: &ClientCache,
) -> Result<Vec<Outcome>, ClientDataError> {
    let mut tx = pool.begin().await?;
    let loaded = load::load(&mut tx, events).await?;
    let plan = plan::plan(events, loaded, chain_key, vault, &mut Uuid::now_v7);
    let mut learnt: Option<Learnt> = None;
    let sealed = match vault {
        Some(vault) => {
            let to_seal: Vec<ToSeal<'_>> = plan
                .writes
                .bookings
                .iter()
                .filter_map(|b| {
                    Some(ToSeal {
                        booking_id: b.id,
                        tenant_id: &b.booking.tenant_id,
                        kept: b.client.as_ref()?,
                    })
                })
                .collect();
            let (sealed, batch) = seal_batch(&mut tx, vault, cache, &to_seal).await?;
            learnt = Some(batch);
            to_seal.iter().map(|t| t.booking_id).zip(sealed).collect()
        }
        None => HashMap::new(),
    };
    write::write(&mut tx, subjects, &plan.writes, &sealed).await?;
    tx.commit().await?;
    if let Some(learnt) = learnt {
        cache.remember(learnt);
    }
    Ok(plan.outcomes)
}
