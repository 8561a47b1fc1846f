//! Sealing a batch's new bookings' client details, in the batch's transaction: each client's live
//! data key is found by its identity digest, or made, wrapped and stored; every identity the
//! details name is recorded as a lookup for erasure; then each booking's details are sealed for
//! its row.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use billing_domain::privacy::keys::{DataKey, WrappedKey};
use billing_domain::privacy::sealed::{self, SealContext};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{ClientDataError, Kept, Vault, key_context};

/// A booking's sealed client: the data key's id and the sealed details.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub key_id: Uuid,
    pub sealed: Vec<u8>,
}

/// What to seal: a new booking's id and tenant, and its kept client.
pub struct ToSeal<'a> {
    pub booking_id: Uuid,
    pub tenant_id: &'a str,
    pub kept: &'a Kept,
}

/// The client lookups this process has seen committed (`(tenant, digest, key)` hashed): most
/// bookings are by returning clients, whose lookups need not be written again. Bounded: it
/// starts afresh past a million entries; a lookup it forgets is written again, which changes
/// nothing.
#[derive(Debug, Clone, Default)]
pub struct KnownLookups(Arc<Mutex<HashSet<u64>>>);

const MAX_KNOWN_LOOKUPS: usize = 1_000_000;

impl KnownLookups {
    fn hash(tenant: &str, digest: &str, key_id: Uuid) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        (tenant, digest, key_id).hash(&mut h);
        h.finish()
    }

    fn contains(&self, hash: u64) -> bool {
        self.0.lock().is_ok_and(|known| known.contains(&hash))
    }

    /// Remembers `hashes`, once their transaction committed.
    pub fn remember(&self, hashes: &[u64]) {
        if let Ok(mut known) = self.0.lock() {
            if known.len() + hashes.len() > MAX_KNOWN_LOOKUPS {
                known.clear();
            }
            known.extend(hashes);
        }
    }
}

/// Seals every booking of `rows`, one answer per row in order, and the lookups it wrote (to
/// [`KnownLookups::remember`] once the transaction commits).
pub async fn seal_batch(
    conn: &mut PgConnection,
    vault: &Vault,
    known: &KnownLookups,
    rows: &[ToSeal<'_>],
) -> Result<(Vec<Sealed>, Vec<u64>), ClientDataError> {
    if rows.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let keys = live_keys(conn, vault, rows).await?;
    let written = lookups(conn, known, rows, &keys).await?;
    let sealed = rows
        .iter()
        .map(|r| {
            let (key_id, key) = &keys[&(r.tenant_id, r.kept.identity_digest())];
            let booking_id = r.booking_id.to_string();
            let key_id_text = key_id.to_string();
            let context = SealContext {
                tenant_id: r.tenant_id,
                booking_id: &booking_id,
                key_id: &key_id_text,
            };
            Ok(Sealed {
                key_id: *key_id,
                sealed: sealed::seal(key, context, &r.kept.details)?,
            })
        })
        .collect::<Result<_, ClientDataError>>()?;
    Ok((sealed, written))
}

type Keys<'a> = HashMap<(&'a str, &'a str), (Uuid, DataKey)>;

/// The live data key of every client of `rows`, made where a client has none yet.
async fn live_keys<'a>(
    conn: &mut PgConnection,
    vault: &Vault,
    rows: &[ToSeal<'a>],
) -> Result<Keys<'a>, ClientDataError> {
    let mut wanted: Vec<(&'a str, &'a str)> = rows
        .iter()
        .map(|r| (r.tenant_id, r.kept.identity_digest()))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut keys = Keys::new();
    read_keys(conn, vault, &wanted, &mut keys).await?;
    let missing: Vec<(&str, &str)> = wanted
        .iter()
        .filter(|w| !keys.contains_key(*w))
        .copied()
        .collect();
    if missing.is_empty() {
        return Ok(keys);
    }
    let mut ids = Vec::with_capacity(missing.len());
    let mut kek_ids = Vec::with_capacity(missing.len());
    let mut wrapped = Vec::with_capacity(missing.len());
    let mut made = HashMap::with_capacity(missing.len());
    for &(tenant, digest) in &missing {
        let id = Uuid::now_v7();
        let key = DataKey::generate()?;
        let w = vault.provider().wrap(&key, &key_context(tenant, id))?;
        ids.push(id);
        kek_ids.push(w.kek_id);
        wrapped.push(w.bytes);
        made.insert(id, ((tenant, digest), key));
    }
    let (tenants, digests): (Vec<&str>, Vec<&str>) = missing.iter().copied().unzip();
    // Another replica may make the same client's key at the same moment: the unique index on
    // live identities keeps one; the keys this batch made are used as they are, the others
    // read below.
    let inserted = sqlx::query_scalar!(
        "insert into ledger.client_keys (id, tenant_id, identity_digest, kek_id, wrapped_key)
         select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[])
         on conflict (tenant_id, identity_digest) where erased_at is null do nothing
         returning id",
        &ids,
        &tenants as &[&str],
        &digests as &[&str],
        &kek_ids,
        &wrapped,
    )
    .fetch_all(&mut *conn)
    .await?;
    for id in inserted {
        if let Some((slot, key)) = made.remove(&id) {
            keys.insert(slot, (id, key));
        }
    }
    let missing: Vec<(&str, &str)> = missing
        .into_iter()
        .filter(|m| !keys.contains_key(m))
        .collect();
    if missing.is_empty() {
        return Ok(keys);
    }
    read_keys(conn, vault, &missing, &mut keys).await?;
    if let Some(lost) = missing.iter().find(|m| !keys.contains_key(*m)) {
        // Only an erasure committed between the insert and the read can cause this.
        return Err(ClientDataError::Raced(format!(
            "tenant {:?}: a client key was erased while it was being made",
            lost.0
        )));
    }
    Ok(keys)
}

/// Reads and unwraps the live keys of `wanted` (sorted) into `keys`.
async fn read_keys<'a>(
    conn: &mut PgConnection,
    vault: &Vault,
    wanted: &[(&'a str, &'a str)],
    keys: &mut Keys<'a>,
) -> Result<(), ClientDataError> {
    let (tenants, digests): (Vec<&str>, Vec<&str>) = wanted.iter().copied().unzip();
    let found = sqlx::query!(
        r#"select k.id, k.tenant_id, k.identity_digest, k.kek_id as "kek_id!",
                  k.wrapped_key as "wrapped_key!"
           from unnest($1::text[], $2::text[]) as w(tenant_id, identity_digest)
           join ledger.client_keys k on k.tenant_id = w.tenant_id
               and k.identity_digest = w.identity_digest and k.erased_at is null"#,
        &tenants as &[&str],
        &digests as &[&str],
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in found {
        let found = (row.tenant_id.as_str(), row.identity_digest.as_str());
        let Ok(i) = wanted.binary_search(&found) else {
            continue;
        };
        let slot = wanted[i];
        let wrapped = WrappedKey {
            kek_id: row.kek_id,
            bytes: row.wrapped_key,
        };
        let key = vault
            .provider()
            .unwrap(&wrapped, &key_context(&row.tenant_id, row.id))?;
        keys.insert(slot, (row.id, key));
    }
    Ok(())
}

/// Records every identity each row's client names against the client's key, except those
/// this process saw committed; returns what it wrote.
async fn lookups(
    conn: &mut PgConnection,
    known: &KnownLookups,
    rows: &[ToSeal<'_>],
    keys: &Keys<'_>,
) -> Result<Vec<u64>, ClientDataError> {
    let mut tenants = Vec::new();
    let mut digests = Vec::new();
    let mut key_ids = Vec::new();
    let mut written = Vec::new();
    let mut seen = HashSet::new();
    for r in rows {
        let (key_id, _) = &keys[&(r.tenant_id, r.kept.identity_digest())];
        for digest in &r.kept.lookups {
            let hash = KnownLookups::hash(r.tenant_id, digest, *key_id);
            if known.contains(hash) || !seen.insert(hash) {
                continue;
            }
            written.push(hash);
            tenants.push(r.tenant_id);
            digests.push(digest.as_str());
            key_ids.push(*key_id);
        }
    }
    if written.is_empty() {
        return Ok(written);
    }
    sqlx::query!(
        "insert into ledger.client_lookups (tenant_id, digest, key_id)
         select distinct * from unnest($1::text[], $2::text[], $3::uuid[])
         on conflict do nothing",
        &tenants as &[&str],
        &digests as &[&str],
        &key_ids,
    )
    .execute(&mut *conn)
    .await?;
    Ok(written)
}
