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

/// What this process knows of committed client keys: the live data keys its batches used (so a
/// batch of returning clients neither reads nor unwraps their keys) and the lookups it wrote (not
/// written again). An erasure anywhere moves `ledger.client_key_epoch` on, and the first batch
/// to see it moved forgets every key it knew (see [`seal_batch`]). Bounded: it starts afresh past
/// a million entries; whatever it forgets is read (or written) again, which changes nothing.
#[derive(Clone, Default)]
pub struct ClientCache(Arc<Mutex<Cached>>);

#[derive(Default)]
struct Cached {
    /// The erasure epoch the keys were current at; `None` before the first batch.
    epoch: Option<i64>,
    /// Live keys by tenant, then by the client's identity digest.
    keys: HashMap<String, HashMap<String, (Uuid, DataKey)>>,
    key_count: usize,
    /// Lookups seen committed: `(tenant, digest, key)` hashed.
    lookups: HashSet<u64>,
}

impl std::fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        match self.0.lock() {
            Ok(c) => write!(
                f,
                "ClientCache(epoch {:?}, {} keys, {} lookups)",
                c.epoch,
                c.key_count,
                c.lookups.len()
            ),
            Err(_) => f.write_str("ClientCache(poisoned)"),
        }
    }
}

const MAX_CACHED: usize = 1_000_000;

/// What a batch learnt, for [`ClientCache::remember`] once its transaction has committed.
#[derive(Default)]
pub struct Learnt {
    epoch: i64,
    keys: Vec<(String, String, Uuid, DataKey)>,
    lookups: Vec<u64>,
}

impl ClientCache {
    fn lookup_hash(tenant: &str, digest: &str, key_id: Uuid) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        (tenant, digest, key_id).hash(&mut h);
        h.finish()
    }

    /// Keeps those of `hashes` not seen committed.
    fn unknown_lookups(&self, hashes: &mut Vec<u64>) {
        if let Ok(c) = self.0.lock() {
            hashes.retain(|h| !c.lookups.contains(h));
        }
    }

    /// The keys of `wanted` this cache holds for a batch that read erasure epoch `epoch`; a newer
    /// epoch than the cache's makes it forget its keys first, an older one (a batch that read
    /// it before another batch saw an erasure) gets none.
    fn keys_for<'a>(&self, epoch: i64, wanted: &[(&'a str, &'a str)], keys: &mut Keys<'a>) {
        let Ok(mut c) = self.0.lock() else {
            return;
        };
        if c.epoch.is_none_or(|known| known < epoch) {
            c.epoch = Some(epoch);
            c.keys.clear();
            c.key_count = 0;
        }
        if c.epoch != Some(epoch) {
            return;
        }
        for &(tenant, digest) in wanted {
            if let Some(found) = c.keys.get(tenant).and_then(|t| t.get(digest)) {
                keys.insert((tenant, digest), found.clone());
            }
        }
    }

    /// Remembers what a batch learnt, once its transaction committed; nothing if an erasure
    /// was seen meanwhile (the keys may be gone).
    pub fn remember(&self, learnt: Learnt) {
        let Ok(mut c) = self.0.lock() else {
            return;
        };
        if c.lookups.len() + learnt.lookups.len() > MAX_CACHED {
            c.lookups.clear();
        }
        c.lookups.extend(learnt.lookups);
        if c.epoch != Some(learnt.epoch) {
            return;
        }
        if c.key_count + learnt.keys.len() > MAX_CACHED {
            c.keys.clear();
            c.key_count = 0;
        }
        for (tenant, digest, id, key) in learnt.keys {
            if c.keys
                .entry(tenant)
                .or_default()
                .insert(digest, (id, key))
                .is_none()
            {
                c.key_count += 1;
            }
        }
    }
}

/// Seals every booking of `rows`, one answer per row in order, and what the batch learnt (to
/// [`ClientCache::remember`] once the transaction commits).
///
/// The batch first reads the erasure epoch `for share`: an erasure moves it on in its own
/// transaction, so it waits for the batches under way, and every batch after it sees the new
/// epoch and stops using the keys it had cached. No booking is sealed under a key erased
/// before its batch commits.
pub async fn seal_batch(
    conn: &mut PgConnection,
    vault: &Vault,
    cache: &ClientCache,
    rows: &[ToSeal<'_>],
) -> Result<(Vec<Sealed>, Learnt), ClientDataError> {
    if rows.is_empty() {
        return Ok((Vec::new(), Learnt::default()));
    }
    let epoch = sqlx::query_scalar!("select epoch from ledger.client_key_epoch for share")
        .fetch_one(&mut *conn)
        .await?;
    let mut learnt = Learnt {
        epoch,
        ..Learnt::default()
    };
    let keys = live_keys(conn, vault, cache, rows, &mut learnt).await?;
    learnt.lookups = lookups(conn, cache, rows, &keys).await?;
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
    Ok((sealed, learnt))
}

type Keys<'a> = HashMap<(&'a str, &'a str), (Uuid, DataKey)>;

/// The live data key of every client of `rows`: cached, else read, else made. What was read or
/// made goes to `learnt`.
async fn live_keys<'a>(
    conn: &mut PgConnection,
    vault: &Vault,
    cache: &ClientCache,
    rows: &[ToSeal<'a>],
    learnt: &mut Learnt,
) -> Result<Keys<'a>, ClientDataError> {
    let mut wanted: Vec<(&'a str, &'a str)> = rows
        .iter()
        .map(|r| (r.tenant_id, r.kept.identity_digest()))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut keys = Keys::new();
    cache.keys_for(learnt.epoch, &wanted, &mut keys);
    let mut missing: Vec<(&str, &str)> = wanted
        .iter()
        .filter(|w| !keys.contains_key(*w))
        .copied()
        .collect();
    if !missing.is_empty() {
        read_keys(conn, vault, &missing, &mut keys, learnt).await?;
        missing.retain(|m| !keys.contains_key(m));
    }
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
         on conflict (tenant_id, identity_digest, erased_at) do nothing
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
        if let Some(((tenant, digest), key)) = made.remove(&id) {
            learnt
                .keys
                .push((tenant.to_string(), digest.to_string(), id, key.clone()));
            keys.insert((tenant, digest), (id, key));
        }
    }
    missing.retain(|m| !keys.contains_key(m));
    if missing.is_empty() {
        return Ok(keys);
    }
    read_keys(conn, vault, &missing, &mut keys, learnt).await?;
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
    learnt: &mut Learnt,
) -> Result<(), ClientDataError> {
    let (tenants, digests): (Vec<&str>, Vec<&str>) = wanted.iter().copied().unzip();
    // One probe of the live-identity index per client (the lateral `limit` keeps the planner
    // from hashing every live key instead, as it does when its statistics say the table is
    // small: a cost that grew with the table).
    let found = sqlx::query!(
        r#"select k.id as "id!", k.tenant_id as "tenant_id!",
                  k.identity_digest as "identity_digest!", k.kek_id as "kek_id!",
                  k.wrapped_key as "wrapped_key!"
           from unnest($1::text[], $2::text[]) as w(tenant_id, identity_digest)
           cross join lateral (
               select id, tenant_id, identity_digest, kek_id, wrapped_key
               from ledger.client_keys
               where tenant_id = w.tenant_id and identity_digest = w.identity_digest
                 and erased_at is null
               limit 1) k"#,
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
        learnt
            .keys
            .push((row.tenant_id, row.identity_digest, row.id, key.clone()));
        keys.insert(slot, (row.id, key));
    }
    Ok(())
}

/// Records every other identity each row's client names against the client's key, except
/// those this process saw committed; returns what it wrote.
async fn lookups(
    conn: &mut PgConnection,
    cache: &ClientCache,
    rows: &[ToSeal<'_>],
    keys: &Keys<'_>,
) -> Result<Vec<u64>, ClientDataError> {
    let mut all = HashMap::new();
    for r in rows {
        let (key_id, _) = &keys[&(r.tenant_id, r.kept.identity_digest())];
        // The first is the key's own identity, which erasure finds in `client_keys`.
        for digest in &r.kept.lookups[1..] {
            let hash = ClientCache::lookup_hash(r.tenant_id, digest, *key_id);
            all.entry(hash)
                .or_insert((r.tenant_id, digest.as_str(), *key_id));
        }
    }
    let mut written: Vec<u64> = all.keys().copied().collect();
    cache.unknown_lookups(&mut written);
    if written.is_empty() {
        return Ok(written);
    }
    let mut tenants = Vec::with_capacity(written.len());
    let mut digests = Vec::with_capacity(written.len());
    let mut key_ids = Vec::with_capacity(written.len());
    for hash in &written {
        let (tenant, digest, key_id) = all[hash];
        tenants.push(tenant);
        digests.push(digest);
        key_ids.push(key_id);
    }
    sqlx::query!(
        "insert into ledger.client_lookups (tenant_id, digest, key_id)
         select * from unnest($1::text[], $2::text[], $3::uuid[])
         on conflict do nothing",
        &tenants as &[&str],
        &digests as &[&str],
        &key_ids,
    )
    .execute(&mut *conn)
    .await?;
    Ok(written)
}
