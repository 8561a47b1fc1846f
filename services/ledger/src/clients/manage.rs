//! A client's data over its lifetime: shown to who may see it, erased on request, re-wrapped
//! when a key-encryption key rotates, and sealed in place where it predates encryption.

use billing_domain::privacy::keys::WrappedKey;
use billing_domain::privacy::sealed::{self, SealContext};
use billing_domain::privacy::{ClientDetails, ClientIdentity};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::seal::{ClientCache, ToSeal, seal_batch};
use super::{ClientDataError, Vault, key_context};
use billing_domain::booking::ClientInfo;

/// How a client is named in a request.
#[derive(Debug, Clone)]
pub enum Selector {
    Email(String),
    SimplyBookClient(String),
}

impl Selector {
    /// The identity this names; `None` for an email that is not one.
    pub fn identity(&self) -> Option<ClientIdentity> {
        match self {
            Selector::Email(e) => ClientIdentity::email(e),
            Selector::SimplyBookClient(id) => {
                let id = id.trim();
                (!id.is_empty()).then(|| ClientIdentity::SimplyBookClient(id.to_string()))
            }
        }
    }
}

/// One booking of a client, with their details as recorded, or when they were erased.
#[derive(Debug, Clone)]
pub struct ClientBooking {
    pub booking_ref: String,
    pub session_at: DateTime<Utc>,
    pub status: String,
    pub details: Option<ClientDetails>,
    pub erased_at: Option<DateTime<Utc>>,
}

/// The outcome of an erasure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// Keys destroyed by this request.
    pub keys_erased: u32,
    /// Keys an earlier request had destroyed already.
    pub keys_already_erased: u32,
    /// Bookings whose client details are now unreadable.
    pub bookings: u32,
}

/// The ids of every key, live or erased, recorded for the client `selector` names.
pub(crate) async fn key_ids(
    db: impl sqlx::PgExecutor<'_>,
    vault: &Vault,
    tenant_id: &str,
    selector: &Selector,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let Some(identity) = selector.identity() else {
        return Ok(Vec::new());
    };
    let digest = vault.digest(tenant_id, &identity);
    sqlx::query_scalar!(
        r#"select id as "id!" from ledger.client_keys where tenant_id = $1 and identity_digest = $2
           union
           select key_id from ledger.client_lookups where tenant_id = $1 and digest = $2"#,
        tenant_id,
        digest
    )
    .fetch_all(db)
    .await
}

/// Every booking of the client, their details opened with their keys; erased ones say so. A
/// ciphertext that does not open for its row (moved from another booking, or altered) is an
/// error, never shown as this booking's client.
pub async fn show(
    pool: &PgPool,
    vault: &Vault,
    tenant_id: &str,
    selector: &Selector,
) -> Result<Vec<ClientBooking>, ClientDataError> {
    let keys = key_ids(pool, vault, tenant_id, selector).await?;
    let rows = sqlx::query!(
        r#"select b.id, b.booking_ref, b.session_at, b.status,
                  b.client_sealed as "client_sealed!", k.id as key_id, k.kek_id, k.wrapped_key,
                  k.erased_at
           from ledger.bookings b join ledger.client_keys k on k.id = b.client_key_id
           where b.tenant_id = $1 and k.id = any($2)
           order by b.session_at, b.booking_ref"#,
        tenant_id,
        &keys
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let details = match (row.kek_id, row.wrapped_key) {
            (Some(kek_id), Some(bytes)) => {
                let wrapped = WrappedKey { kek_id, bytes };
                let key = vault
                    .provider()
                    .unwrap(&wrapped, &key_context(tenant_id, row.key_id))?;
                let (booking_id, key_id) = (row.id.to_string(), row.key_id.to_string());
                let context = SealContext {
                    tenant_id,
                    booking_id: &booking_id,
                    key_id: &key_id,
                };
                Some(sealed::open(&key, context, &row.client_sealed)?)
            }
            _ => None,
        };
        out.push(ClientBooking {
            booking_ref: row.booking_ref,
            session_at: row.session_at,
            status: row.status,
            details,
            erased_at: row.erased_at,
        });
    }
    Ok(out)
}

/// Destroys every data key of the client `selector` names, recording who asked and why.
/// Idempotent: keys erased before are counted, not touched.
///
/// It first moves the erasure epoch on (`crate::clients::seal`): that waits for the batches
/// sealing under way, whose new keys and lookups it then finds, and makes every ledger forget
/// the keys it had cached before its next batch.
pub async fn erase(
    pool: &PgPool,
    vault: &Vault,
    tenant_id: &str,
    selector: &Selector,
    by: &str,
    reason: &str,
) -> Result<Erasure, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!("update ledger.client_key_epoch set epoch = epoch + 1")
        .execute(&mut *tx)
        .await?;
    let keys = key_ids(&mut *tx, vault, tenant_id, selector).await?;
    let erased = sqlx::query_scalar!(
        "update ledger.client_keys
            set kek_id = null, wrapped_key = null, erased_at = now(), erased_by = $3,
                erase_reason = $4
          where tenant_id = $1 and id = any($2) and erased_at is null
          returning id",
        tenant_id,
        &keys,
        by,
        reason
    )
    .fetch_all(&mut *tx)
    .await?;
    let bookings = sqlx::query_scalar!(
        r#"select count(*) as "n!" from ledger.bookings
           where tenant_id = $1 and client_key_id = any($2)"#,
        tenant_id,
        &keys
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(Erasure {
        keys_erased: count(erased.len()),
        keys_already_erased: count(keys.len() - erased.len()),
        bookings: u32::try_from(bookings).unwrap_or(u32::MAX),
    })
}

/// Re-wraps up to `limit` live keys not wrapped by the current key-encryption key; returns how
/// many it re-wrapped and how many remain. Safe beside the consumers and other replicas (rows
/// are locked, skipped when another holds them).
pub async fn rewrap(
    pool: &PgPool,
    vault: &Vault,
    limit: i64,
) -> Result<(u32, u64), ClientDataError> {
    let current = vault.provider().current_kek().to_string();
    let mut tx = pool.begin().await?;
    let rows = sqlx::query!(
        r#"select id, tenant_id, kek_id as "kek_id!", wrapped_key as "wrapped_key!"
           from ledger.client_keys
           where erased_at is null and kek_id <> $1
           order by id limit $2 for update skip locked"#,
        current,
        limit
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut wrapped_keys = Vec::with_capacity(rows.len());
    for row in &rows {
        let context = key_context(&row.tenant_id, row.id);
        let old = WrappedKey {
            kek_id: row.kek_id.clone(),
            bytes: row.wrapped_key.clone(),
        };
        let key = vault.provider().unwrap(&old, &context)?;
        ids.push(row.id);
        wrapped_keys.push(vault.provider().wrap(&key, &context)?.bytes);
    }
    sqlx::query!(
        "update ledger.client_keys k set kek_id = $3, wrapped_key = w.wrapped_key
         from unnest($1::uuid[], $2::bytea[]) as w(id, wrapped_key)
         where k.id = w.id and k.erased_at is null",
        &ids,
        &wrapped_keys,
        current
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let remaining = sqlx::query_scalar!(
        r#"select count(*) as "n!" from ledger.client_keys where erased_at is null and kek_id <> $1"#,
        current
    )
    .fetch_one(pool)
    .await?;
    Ok((
        u32::try_from(ids.len()).unwrap_or(u32::MAX),
        u64::try_from(remaining).unwrap_or(0),
    ))
}

/// Seals, in batches, the client details of bookings recorded before they were encrypted, and
/// removes the plaintext; details naming no identity to erase by (a name alone) are removed
/// without being kept, as for new bookings. Nothing chained or financial is read or written.
/// Returns how many bookings it changed.
pub async fn seal_plaintext(pool: &PgPool, vault: &Vault) -> Result<u64, ClientDataError> {
    let mut changed = 0u64;
    loop {
        let mut tx = pool.begin().await?;
        let rows = sqlx::query!(
            "select id, tenant_id, client_name, client_email, client_phone from ledger.bookings
             where client_sealed is null
               and (client_name is not null or client_email is not null
                    or client_phone is not null)
             order by id limit 500 for update skip locked"
        )
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(changed);
        }
        let kept: Vec<_> = rows
            .iter()
            .map(|r| {
                let info = ClientInfo {
                    name: r.client_name.clone(),
                    email: r.client_email.clone(),
                    phone: r.client_phone.clone(),
                    client_id: None,
                };
                vault.keep(&r.tenant_id, &info)
            })
            .collect();
        let to_seal: Vec<ToSeal<'_>> = rows
            .iter()
            .zip(&kept)
            .filter_map(|(r, k)| {
                Some(ToSeal {
                    booking_id: r.id,
                    tenant_id: &r.tenant_id,
                    kept: k.as_ref()?,
                })
            })
            .collect();
        let (sealed, _) = seal_batch(&mut tx, vault, &ClientCache::default(), &to_seal).await?;
        let sealed_ids: Vec<Uuid> = to_seal.iter().map(|t| t.booking_id).collect();
        let key_ids: Vec<Uuid> = sealed.iter().map(|s| s.key_id).collect();
        let blobs: Vec<Vec<u8>> = sealed.into_iter().map(|s| s.sealed).collect();
        sqlx::query!(
            "update ledger.bookings b
                set client_key_id = s.key_id, client_sealed = s.sealed, client_name = null,
                    client_email = null, client_phone = null
               from unnest($1::uuid[], $2::uuid[], $3::bytea[]) as s(id, key_id, sealed)
              where b.id = s.id",
            &sealed_ids,
            &key_ids,
            &blobs
        )
        .execute(&mut *tx)
        .await?;
        let all: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        sqlx::query!(
            "update ledger.bookings set client_name = null, client_email = null,
                    client_phone = null
              where id = any($1) and client_sealed is null",
            &all
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        changed += rows.len() as u64;
    }
}
