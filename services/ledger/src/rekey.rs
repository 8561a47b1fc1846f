//! Re-keying the hash chains when a chain key is set for the first time: every record of every
//! intact chain gets its keyed hash (HMAC-SHA256 with `LEDGER_CHAIN_KEY_FILE`'s key), in chain
//! order. An explicit operator command (`ledger --rekey-chains`), never automatic: a history
//! rewritten and re-chained by someone without the key verifies unkeyed, and re-keying it
//! would launder it. Run it once, with the ledger stopped, after `billingctl bookings verify`
//! reported every chain intact, as the schema's owner (it rewrites hash columns behind the
//! triggers). A chain that does not verify unkeyed is refused.

use billing_domain::hash::{ChainKey, GENESIS_HASH};
use billing_runtime::Subjects;
use sqlx::PgPool;
use uuid::Uuid;

use crate::integrity;
use crate::store::Store;

/// A record's new link: (id, previous hash, keyed hash).
type Rehash = (Uuid, String, String);

#[derive(Debug, thiserror::Error)]
pub enum RekeyError {
    #[error(
        "tenant {tenant}'s hash chain is not intact (record {chain_seq}: {reason}); it is not \
         re-keyed: check it with billingctl bookings verify"
    )]
    NotIntact {
        tenant: String,
        chain_seq: i64,
        reason: String,
    },
    #[error("re-keying the hash chains: {0}")]
    Db(#[from] sqlx::Error),
}

/// Re-keys every chain not yet keyed with `key`; returns the tenants re-keyed.
pub async fn rekey_chains(pool: &PgPool, key: &ChainKey) -> Result<Vec<String>, RekeyError> {
    let store = Store::new(pool.clone(), Subjects::new(""));
    let tenants =
        sqlx::query_scalar!("select tenant_id from ledger.chain_heads order by tenant_id")
            .fetch_all(pool)
            .await?;
    let mut rekeyed = Vec::new();
    for tenant in tenants {
        let mut tx = pool.begin().await?;
        // Appends to this chain wait until it is re-keyed.
        sqlx::query!(
            "select tenant_id from ledger.chain_heads where tenant_id = $1 for update",
            tenant
        )
        .fetch_optional(&mut *tx)
        .await?;
        let (records, head) = store.chain(&tenant).await?;
        let keyed = integrity::verify(&tenant, &records, head.clone(), Some(key));
        if keyed.violation.is_none() {
            continue;
        }
        if let Some(v) = integrity::verify(&tenant, &records, head, None).violation {
            return Err(RekeyError::NotIntact {
                tenant,
                chain_seq: v.chain_seq,
                reason: v.reason,
            });
        }
        let mut prev = GENESIS_HASH.to_string();
        // (record id, previous hash, keyed hash) per table.
        let mut bookings: Vec<Rehash> = Vec::new();
        let mut revisions: Vec<Rehash> = Vec::new();
        for r in &records {
            let hash = r
                .expected_hash(&tenant, &prev, Some(key))
                .unwrap_or_default();
            let row = (r.id, prev.clone(), hash.clone());
            match r.kind() {
                "booking" => bookings.push(row),
                _ => revisions.push(row),
            }
            prev = hash;
        }
        // Not checked at build time (the query macros take one statement, and PostgreSQL checks
        // a utility statement's names only when it runs): the end-to-end test
        // `chains_are_keyed_and_only_an_explicit_rekey_keys_an_intact_chain`
        // (tests/e2e/integrity/chain.rs) runs both on the real database.
        sqlx::raw_sql(
            "alter table ledger.bookings disable trigger bookings_immutable;
             alter table ledger.booking_revisions disable trigger booking_revisions_append_only;",
        )
        .execute(&mut *tx)
        .await?;
        let (ids, prevs, hashes) = columns(&bookings);
        sqlx::query!(
            "update ledger.bookings t set prev_hash = n.prev, record_hash = n.hash
             from unnest($1::uuid[], $2::text[], $3::text[]) as n(id, prev, hash)
             where t.id = n.id",
            ids.as_slice(),
            prevs.as_slice() as &[&str],
            hashes.as_slice() as &[&str]
        )
        .execute(&mut *tx)
        .await?;
        let (ids, prevs, hashes) = columns(&revisions);
        sqlx::query!(
            "update ledger.booking_revisions t set prev_hash = n.prev, record_hash = n.hash
             from unnest($1::uuid[], $2::text[], $3::text[]) as n(id, prev, hash)
             where t.id = n.id",
            ids.as_slice(),
            prevs.as_slice() as &[&str],
            hashes.as_slice() as &[&str]
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "update ledger.chain_heads set last_hash = $2 where tenant_id = $1",
            tenant,
            prev
        )
        .execute(&mut *tx)
        .await?;
        sqlx::raw_sql(
            "alter table ledger.bookings enable trigger bookings_immutable;
             alter table ledger.booking_revisions enable trigger booking_revisions_append_only;",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        rekeyed.push(tenant);
    }
    Ok(rekeyed)
}

/// The rows' ids, previous hashes and hashes, one array each (the shape `unnest` wants).
fn columns(rows: &[Rehash]) -> (Vec<Uuid>, Vec<&str>, Vec<&str>) {
    let mut columns = (Vec::new(), Vec::new(), Vec::new());
    for (id, prev, hash) in rows {
        columns.0.push(*id);
        columns.1.push(prev.as_str());
        columns.2.push(hash.as_str());
    }
    columns
}
