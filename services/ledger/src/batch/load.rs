//! What a batch reads in its transaction before deciding anything, locking what it will change.

use std::collections::HashSet;

use billing_domain::hash::GENESIS_HASH;
use sqlx::PgConnection;

use super::plan::{Current, Head, Loaded};
use crate::incoming::NewBooking;

/// Claims every event id (a redelivered event finds its key and claims nothing), locks the
/// chain head of every tenant in the batch in tenant order (two replicas working on the same
/// tenant take turns, and never deadlock), and loads the bookings the batch names as they stand
/// now, locked.
pub(super) async fn load(
    conn: &mut PgConnection,
    events: &[(NewBooking, u64)],
) -> Result<Loaded, sqlx::Error> {
    let ids: Vec<&str> = events.iter().map(|(b, _)| b.event_id.as_str()).collect();
    let claimed: HashSet<String> = sqlx::query_scalar!(
        "insert into ledger.processed_events (event_id) select * from unnest($1::text[])
         on conflict do nothing returning event_id",
        ids.as_slice() as &[&str]
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();

    let mut tenants: Vec<&str> = events.iter().map(|(b, _)| b.tenant_id.as_str()).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let heads = sqlx::query!(
        "insert into ledger.chain_heads (tenant_id, last_seq, last_hash)
         select t, 0, $2 from unnest($1::text[]) as t order by t
         on conflict (tenant_id) do update set tenant_id = excluded.tenant_id
         returning tenant_id, last_seq, last_hash",
        tenants.as_slice() as &[&str],
        GENESIS_HASH
    )
    .fetch_all(&mut *conn)
    .await?;

    let (key_tenants, key_refs): (Vec<&str>, Vec<&str>) = events
        .iter()
        .map(|(b, _)| (b.tenant_id.as_str(), b.booking_ref.as_str()))
        .unzip();
    let bookings = sqlx::query_as!(
        Current,
        r#"select b.tenant_id, b.booking_ref, b.id, b.status, b.session_at, b.currency,
                b.deposit_rate, b.platform_fee_rate, b.service_id, b.service_name,
                b.status_label, b.state_as_of,
                coalesce(r.revision_no, 0) as "revision_no!",
                coalesce(r.total_after, b.total_amount) as "total_amount!",
                coalesce(r.deposit_after, b.deposit_amount) as "deposit_amount!",
                coalesce(r.cash_after, b.cash_amount) as "cash_amount!",
                coalesce(r.fee_after, b.platform_fee) as "platform_fee!"
         from (select distinct * from unnest($1::text[], $2::text[])) as k(tenant_id, booking_ref)
         join ledger.bookings b on b.tenant_id = k.tenant_id and b.booking_ref = k.booking_ref
         left join lateral (
             select revision_no, total_after, deposit_after, cash_after, fee_after
             from ledger.booking_revisions where booking_id = b.id
             order by revision_no desc limit 1) r on true
         for update of b"#,
        key_tenants.as_slice() as &[&str],
        key_refs.as_slice() as &[&str]
    )
    .fetch_all(&mut *conn)
    .await?;

    Ok(Loaded {
        claimed,
        heads: heads
            .into_iter()
            .map(|h| {
                let head = Head {
                    seq: h.last_seq,
                    hash: h.last_hash,
                };
                (h.tenant_id, head)
            })
            .collect(),
        bookings: bookings
            .into_iter()
            .map(|c| ((c.tenant_id.clone(), c.booking_ref.clone()), c))
            .collect(),
    })
}
