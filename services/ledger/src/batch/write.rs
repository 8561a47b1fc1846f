//! Writing a batch's plan: one statement per table, each row set passed as one array per column
//! (the shape `unnest` wants).

use std::collections::HashMap;

use billing_runtime::Subjects;
use chrono::{DateTime, Utc};
use prost::Message as _;
use sqlx::PgConnection;
use uuid::Uuid;

use super::plan::Writes;
use crate::clients::seal::Sealed;
use crate::outcome::AuditOutcome;

/// Writes everything `w` holds, in an order the foreign keys accept: released keys, bookings,
/// revisions, current states, history, chain heads, the outbox, the audit log.
pub(super) async fn write(
    conn: &mut PgConnection,
    subjects: &Subjects,
    w: &Writes<'_>,
    sealed: &HashMap<Uuid, Sealed>,
) -> Result<(), sqlx::Error> {
    if !w.released.is_empty() {
        sqlx::query!(
            "delete from ledger.processed_events where event_id = any($1)",
            w.released.as_slice()
        )
        .execute(&mut *conn)
        .await?;
    }
    bookings(conn, w, sealed).await?;
    revisions(conn, w).await?;
    states(conn, w).await?;
    history(conn, w).await?;
    heads(conn, w).await?;
    outbox(conn, subjects, w).await?;
    audit(conn, w).await
}

/// `column` of every row of `rows`.
fn col<'r, R, T>(rows: &'r [R], column: impl Fn(&'r R) -> T) -> Vec<T> {
    rows.iter().map(column).collect()
}

/// New bookings; a client's details only sealed (`sealed`, by booking id), never in plaintext.
async fn bookings(
    conn: &mut PgConnection,
    w: &Writes<'_>,
    sealed: &HashMap<Uuid, Sealed>,
) -> Result<(), sqlx::Error> {
    let rows = &w.bookings;
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "insert into ledger.bookings (id, tenant_id, booking_ref, booking_hash, chain_seq,
            currency, total_amount, deposit_amount, cash_amount, platform_fee, deposit_rate,
            platform_fee_rate, prev_hash, record_hash, status, session_at, service_id,
            service_name, service_duration_minutes, provider_name, client_key_id,
            client_sealed, client_digest, source_event_id, state_as_of, status_label)
         select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int8[],
            $6::text[], $7::numeric[], $8::numeric[], $9::numeric[], $10::numeric[],
            $11::numeric[], $12::numeric[], $13::text[], $14::text[], $15::text[],
            $16::timestamptz[], $17::text[], $18::text[], $19::int4[], $20::text[],
            $21::uuid[], $22::bytea[], $23::text[], $24::text[], $25::timestamptz[],
            $26::text[])",
        &*col(rows, |r| r.id),
        &col(rows, |r| r.booking.tenant_id.as_str()) as &[&str],
        &col(rows, |r| r.booking.booking_ref.as_str()) as &[&str],
        &col(rows, |r| r.booking.booking_hash.as_deref()) as &[Option<&str>],
        &*col(rows, |r| r.chain_seq),
        &col(rows, |r| r.booking.currency.code()) as &[&str],
        &*col(rows, |r| r.booking.amounts.total),
        &*col(rows, |r| r.booking.amounts.deposit),
        &*col(rows, |r| r.booking.amounts.cash),
        &*col(rows, |r| r.booking.amounts.platform_fee),
        &*col(rows, |r| r.booking.deposit_rate.value()),
        &*col(rows, |r| r.booking.fee_rate.value()),
        &col(rows, |r| r.prev_hash.as_str()) as &[&str],
        &col(rows, |r| r.record_hash.as_str()) as &[&str],
        &col(rows, |r| r.booking.status.as_str()) as &[&str],
        &*col(rows, |r| r.booking.session_at),
        &col(rows, |r| r.booking.service_id.as_deref()) as &[Option<&str>],
        &col(rows, |r| r.booking.service_name.as_str()) as &[&str],
        &col(rows, |r| r.booking.service_duration_minutes) as &[Option<i32>],
        &col(rows, |r| r.booking.provider_name.as_deref()) as &[Option<&str>],
        &col(rows, |r| sealed.get(&r.id).map(|s| s.key_id)) as &[Option<Uuid>],
        &col(rows, |r| sealed.get(&r.id).map(|s| s.sealed.as_slice())) as &[Option<&[u8]>],
        &col(rows, |r| r
            .client
            .as_ref()
            .map_or("", |c| c.identity_digest())) as &[&str],
        &col(rows, |r| r.booking.event_id.as_str()) as &[&str],
        &*col(rows, |r| r.booking.as_of),
        &col(rows, |r| r.booking.status_label.as_deref()) as &[Option<&str>],
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn revisions(conn: &mut PgConnection, w: &Writes<'_>) -> Result<(), sqlx::Error> {
    let rows = &w.revisions;
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "insert into ledger.booking_revisions (id, booking_id, tenant_id, revision_no,
            chain_seq, currency, total_delta, deposit_delta, cash_delta, fee_delta, total_after,
            deposit_after, cash_after, fee_after, prev_hash, record_hash, source_event_id)
         select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::int4[], $5::int8[],
            $6::text[], $7::numeric[], $8::numeric[], $9::numeric[], $10::numeric[],
            $11::numeric[], $12::numeric[], $13::numeric[], $14::numeric[], $15::text[],
            $16::text[], $17::text[])",
        &*col(rows, |r| r.id),
        &*col(rows, |r| r.booking_id),
        &col(rows, |r| r.tenant_id.as_str()) as &[&str],
        &*col(rows, |r| r.revision_no),
        &*col(rows, |r| r.chain_seq),
        &col(rows, |r| r.currency.as_str()) as &[&str],
        &*col(rows, |r| r.delta.total),
        &*col(rows, |r| r.delta.deposit),
        &*col(rows, |r| r.delta.cash),
        &*col(rows, |r| r.delta.platform_fee),
        &*col(rows, |r| r.after.total),
        &*col(rows, |r| r.after.deposit),
        &*col(rows, |r| r.after.cash),
        &*col(rows, |r| r.after.platform_fee),
        &col(rows, |r| r.prev_hash.as_str()) as &[&str],
        &col(rows, |r| r.record_hash.as_str()) as &[&str],
        &col(rows, |r| r.source_event_id.as_str()) as &[&str],
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The final current state of every recorded booking the batch changed.
async fn states(conn: &mut PgConnection, w: &Writes<'_>) -> Result<(), sqlx::Error> {
    let rows = &w.states;
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "update ledger.bookings b set status = m.status, session_at = m.session_at,
            service_id = m.service_id, service_name = m.service_name,
            state_as_of = m.as_of, status_label = m.label, updated_at = now()
         from unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],
            $6::timestamptz[], $7::text[])
            as m(id, status, session_at, service_id, service_name, as_of, label)
         where b.id = m.id",
        &*col(rows, |c| c.id),
        &col(rows, |c| c.status.as_str()) as &[&str],
        &*col(rows, |c| c.session_at),
        &col(rows, |c| c.service_id.as_deref()) as &[Option<&str>],
        &col(rows, |c| c.service_name.as_str()) as &[&str],
        &col(rows, |c| c.state_as_of) as &[Option<DateTime<Utc>>],
        &col(rows, |c| c.status_label.as_deref()) as &[Option<&str>],
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn history(conn: &mut PgConnection, w: &Writes<'_>) -> Result<(), sqlx::Error> {
    let rows = &w.history;
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "insert into ledger.booking_status_history (booking_id, status, session_at,
            service_name, event_id, status_label)
         select * from unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[],
            $5::text[], $6::text[])",
        &*col(rows, |h| h.booking_id),
        &col(rows, |h| h.status.as_str()) as &[&str],
        &*col(rows, |h| h.session_at),
        &col(rows, |h| h.service_name.as_str()) as &[&str],
        &col(rows, |h| h.event_id.as_str()) as &[&str],
        &col(rows, |h| h.status_label.as_deref()) as &[Option<&str>],
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn heads(conn: &mut PgConnection, w: &Writes<'_>) -> Result<(), sqlx::Error> {
    let rows = &w.heads;
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "update ledger.chain_heads h set last_seq = n.seq, last_hash = n.hash
         from unnest($1::text[], $2::int8[], $3::text[]) as n(tenant_id, seq, hash)
         where h.tenant_id = n.tenant_id",
        &col(rows, |(tenant, _)| tenant.as_str()) as &[&str],
        &*col(rows, |(_, head)| head.seq),
        &col(rows, |(_, head)| head.hash.as_str()) as &[&str],
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn outbox(
    conn: &mut PgConnection,
    subjects: &Subjects,
    w: &Writes<'_>,
) -> Result<(), sqlx::Error> {
    let rows = &w.outbox;
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "insert into ledger.outbox (subject, message_id, payload, traceparent)
         select * from unnest($1::text[], $2::text[], $3::bytea[], $4::text[])
         on conflict (message_id) do nothing",
        &*col(rows, |o| subjects.booking_event(&o.event.kind)),
        &col(rows, |o| o.message_id.as_str()) as &[&str],
        &*col(rows, |o| o.event.encode_to_vec()),
        &col(rows, |o| o.traceparent.as_deref()) as &[Option<&str>],
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn audit(conn: &mut PgConnection, w: &Writes<'_>) -> Result<(), sqlx::Error> {
    let rows = &w.audit;
    if rows.is_empty() {
        return Ok(());
    }
    // clock_timestamp(), not now(): the moment the outcome is written, just before the commit,
    // rather than when the transaction began.
    sqlx::query!(
        "insert into ledger.audit_log (occurred_at, source, event_id, tenant_id, outcome,
            booking_id, reason, stream_seq)
         select clock_timestamp(), 'simplybook', * from unnest($1::text[], $2::text[],
            $3::text[], $4::uuid[], $5::text[], $6::int8[])",
        &col(rows, |a| a.event_id.as_str()) as &[&str],
        &col(rows, |a| a.tenant_id.as_str()) as &[&str],
        &col(rows, |a| AuditOutcome::from(a.outcome)) as &[AuditOutcome],
        &col(rows, |a| a.booking_id) as &[Option<Uuid>],
        &col(rows, |a| a.reason.as_deref()) as &[Option<&str>],
        &*col(rows, |a| a.stream_seq),
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
