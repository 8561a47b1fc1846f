//! Applying a batch of booking events in one transaction, in three steps:
//!
//! 1. [`load`]: claim every event id, lock the chain head of every tenant in the batch and the
//!    bookings the batch names, and read them as they stand now.
//! 2. [`plan`]: decide, event by event in stream order and in memory, what each one does — a new
//!    booking on the chain, a price revision on the chain, a status/time change, nothing
//!    (duplicate, stale), or a rejection (its key is released so the dead-letter path can handle
//!    it) — and what that writes. Pure: every money and ordering rule lives there.
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

use crate::incoming::NewBooking;
use crate::outcome::Outcome;

/// Applies `events` (each with its stream sequence) in one transaction; one outcome per event,
/// in order. A database error rolls everything back: retry the whole batch.
pub async fn apply(
    pool: &PgPool,
    subjects: &Subjects,
    events: &[(NewBooking, u64)],
    chain_key: Option<&ChainKey>,
) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let loaded = load::load(&mut tx, events).await?;
    let plan = plan::plan(events, loaded, chain_key, &mut Uuid::now_v7);
    write::write(&mut tx, subjects, &plan.writes).await?;
    tx.commit().await?;
    Ok(plan.outcomes)
}
