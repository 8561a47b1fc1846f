//! Applying a batch of booking events in one transaction, with one statement per table.
//!
//! 1. Claim every event id (a redelivered event finds its key and changes nothing).
//! 2. Lock the chain head of every tenant in the batch, in tenant order (two ledger replicas
//!    working on the same tenant take turns, and never deadlock).
//! 3. Load the bookings the batch names, as they stand now.
//! 4. Decide, event by event in stream order and in memory, what each one does: a new booking
//!    on the chain, a price revision on the chain, a status/time change, nothing (duplicate), or
//!    a rejection (its key is released so the dead-letter path can handle it).
//! 5. Write everything with `unnest` inserts and updates — with a `ledger.booking.*` event in the
//!    outbox for each change — and commit.

use std::collections::{HashMap, HashSet};

use billing_domain::hash::{ChainKey, FinancialFields, GENESIS_HASH, RevisionFields};
use billing_domain::{BookingAmounts, Currency, Rate};
use billing_proto::convert::{money, timestamp};
use billing_proto::events::BookingEventV1;
use billing_runtime::Subjects;
use chrono::{DateTime, Utc};
use prost::Message as _;
use rust_decimal::Decimal;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::events::NewBooking;
use crate::outcome::{Applied, Outcome, Reject};

/// A recorded booking as it stands, updated in memory as the batch is walked.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Current {
    tenant_id: String,
    booking_ref: String,
    id: Uuid,
    status: String,
    session_at: DateTime<Utc>,
    currency: String,
    deposit_rate: Decimal,
    platform_fee_rate: Decimal,
    service_id: Option<String>,
    service_name: String,
    status_label: Option<String>,
    state_as_of: Option<DateTime<Utc>>,
    revision_no: i32,
    total_amount: Decimal,
    deposit_amount: Decimal,
    cash_amount: Decimal,
    platform_fee: Decimal,
}

/// Rows to write, one vector per column (the shape `unnest` wants).
#[derive(Default)]
struct Writes {
    bookings: BookingColumns,
    revisions: RevisionColumns,
    history: HistoryColumns,
    /// Recorded bookings whose status, time, service or price changed: their final state is
    /// written from the batch's in-memory state.
    moved: HashSet<Uuid>,
    audit: AuditColumns,
    outbox: OutboxColumns,
    released: Vec<String>,
}

#[derive(Default)]
struct OutboxColumns {
    subject: Vec<String>,
    message_id: Vec<String>,
    payload: Vec<Vec<u8>>,
    traceparent: Vec<Option<String>>,
}

impl OutboxColumns {
    /// The booking event announcing what `applied` did, with the booking as it now stands.
    fn push(&mut self, subjects: &Subjects, applied: Applied, b: &NewBooking, current: &Current) {
        let kind = match applied {
            Applied::Stored => "recorded",
            Applied::StatusChanged => "changed",
            Applied::Revised => "revised",
            Applied::Duplicate | Applied::Stale => return,
        };
        let money = |amount: Decimal| Some(money(b.currency.code(), b.currency.format(amount)));
        let event = BookingEventV1 {
            kind: kind.to_string(),
            booking_id: current.id.to_string(),
            tenant_id: current.tenant_id.clone(),
            booking_ref: current.booking_ref.clone(),
            status: current.status.clone(),
            session_at: Some(timestamp(current.session_at)),
            service_name: current.service_name.clone(),
            total: money(current.total_amount),
            platform_fee: money(current.platform_fee),
            revision: u32::try_from(current.revision_no).unwrap_or_default(),
            source_event_id: b.event_id.clone(),
        };
        self.subject.push(subjects.booking_event(kind));
        // One event per applied source event, so its id is a stable identity.
        self.message_id.push(format!("ledger:{}", b.event_id));
        self.payload.push(event.encode_to_vec());
        self.traceparent.push(b.traceparent.clone());
    }
}

#[derive(Default)]
struct BookingColumns {
    id: Vec<Uuid>,
    tenant_id: Vec<String>,
    booking_ref: Vec<String>,
    booking_hash: Vec<Option<String>>,
    chain_seq: Vec<i64>,
    currency: Vec<String>,
    total: Vec<Decimal>,
    deposit: Vec<Decimal>,
    cash: Vec<Decimal>,
    fee: Vec<Decimal>,
    deposit_rate: Vec<Decimal>,
    fee_rate: Vec<Decimal>,
    prev_hash: Vec<String>,
    record_hash: Vec<String>,
    status: Vec<String>,
    session_at: Vec<DateTime<Utc>>,
    service_id: Vec<Option<String>>,
    service_name: Vec<String>,
    service_duration: Vec<Option<i32>>,
    provider_name: Vec<Option<String>>,
    client_name: Vec<Option<String>>,
    client_email: Vec<Option<String>>,
    client_phone: Vec<Option<String>>,
    source_event_id: Vec<String>,
    state_as_of: Vec<DateTime<Utc>>,
    status_label: Vec<Option<String>>,
}

#[derive(Default)]
struct RevisionColumns {
    id: Vec<Uuid>,
    booking_id: Vec<Uuid>,
    tenant_id: Vec<String>,
    revision_no: Vec<i32>,
    chain_seq: Vec<i64>,
    currency: Vec<String>,
    total_delta: Vec<Decimal>,
    deposit_delta: Vec<Decimal>,
    cash_delta: Vec<Decimal>,
    fee_delta: Vec<Decimal>,
    total_after: Vec<Decimal>,
    deposit_after: Vec<Decimal>,
    cash_after: Vec<Decimal>,
    fee_after: Vec<Decimal>,
    prev_hash: Vec<String>,
    record_hash: Vec<String>,
    source_event_id: Vec<String>,
}

#[derive(Default)]
struct HistoryColumns {
    booking_id: Vec<Uuid>,
    status: Vec<String>,
    session_at: Vec<DateTime<Utc>>,
    service_name: Vec<String>,
    status_label: Vec<Option<String>>,
    event_id: Vec<String>,
}

#[derive(Default)]
struct AuditColumns {
    event_id: Vec<String>,
    tenant_id: Vec<String>,
    outcome: Vec<&'static str>,
    booking_id: Vec<Option<Uuid>>,
    reason: Vec<Option<String>>,
    stream_seq: Vec<i64>,
}

impl AuditColumns {
    fn push(
        &mut self,
        b: &NewBooking,
        outcome: Applied,
        booking_id: Option<Uuid>,
        reason: Option<&'static str>,
        stream_seq: u64,
    ) {
        // The event's own note (a repair, an unmapped label) when the outcome has no reason.
        let reason = reason.map(str::to_string).or_else(|| b.note.clone());
        self.event_id.push(b.event_id.clone());
        self.tenant_id.push(b.tenant_id.clone());
        self.outcome.push(outcome.as_str());
        self.booking_id.push(booking_id);
        self.reason.push(reason);
        self.stream_seq
            .push(i64::try_from(stream_seq).unwrap_or(i64::MAX));
    }
}

/// Applies `events` (each with its stream sequence) in one transaction; one outcome per event,
/// in order. A database error rolls everything back: retry the whole batch.
pub async fn apply(
    pool: &PgPool,
    subjects: &Subjects,
    events: &[(NewBooking, u64)],
    chain_key: Option<&ChainKey>,
) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut tx = pool.begin().await?;

    let ids: Vec<&str> = events.iter().map(|(b, _)| b.event_id.as_str()).collect();
    let mut claimed: HashSet<String> = sqlx::query_scalar(
        "insert into processed_events (event_id) select * from unnest($1::text[])
         on conflict do nothing returning event_id",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();

    let mut tenants: Vec<&str> = events.iter().map(|(b, _)| b.tenant_id.as_str()).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let heads: Vec<(String, i64, String)> = sqlx::query_as(
        "insert into chain_heads (tenant_id, last_seq, last_hash)
         select t, 0, $2 from unnest($1::text[]) as t order by t
         on conflict (tenant_id) do update set tenant_id = excluded.tenant_id
         returning tenant_id, last_seq, last_hash",
    )
    .bind(&tenants)
    .bind(GENESIS_HASH)
    .fetch_all(&mut *tx)
    .await?;
    let start: HashMap<String, i64> = heads.iter().map(|(t, s, _)| (t.clone(), *s)).collect();
    let mut chain: HashMap<String, (i64, String)> =
        heads.into_iter().map(|(t, s, h)| (t, (s, h))).collect();

    let (key_tenants, key_refs): (Vec<&str>, Vec<&str>) = events
        .iter()
        .map(|(b, _)| (b.tenant_id.as_str(), b.booking_ref.as_str()))
        .unzip();
    let existing: Vec<Current> = sqlx::query_as(
        "select b.tenant_id, b.booking_ref, b.id, b.status, b.session_at, b.currency,
                b.deposit_rate, b.platform_fee_rate, b.service_id, b.service_name,
                b.status_label, b.state_as_of,
                coalesce(r.revision_no, 0) as revision_no,
                coalesce(r.total_after, b.total_amount) as total_amount,
                coalesce(r.deposit_after, b.deposit_amount) as deposit_amount,
                coalesce(r.cash_after, b.cash_amount) as cash_amount,
                coalesce(r.fee_after, b.platform_fee) as platform_fee
         from (select distinct * from unnest($1::text[], $2::text[])) as k(tenant_id, booking_ref)
         join bookings b on b.tenant_id = k.tenant_id and b.booking_ref = k.booking_ref
         left join lateral (
             select revision_no, total_after, deposit_after, cash_after, fee_after
             from booking_revisions where booking_id = b.id
             order by revision_no desc limit 1) r on true
         for update of b",
    )
    .bind(&key_tenants)
    .bind(&key_refs)
    .fetch_all(&mut *tx)
    .await?;
    let mut state: HashMap<(String, String), Current> = existing
        .into_iter()
        .map(|c| ((c.tenant_id.clone(), c.booking_ref.clone()), c))
        .collect();

    let mut w = Writes::default();
    let mut outcomes = Vec::with_capacity(events.len());
    for (b, stream_seq) in events {
        // `remove`: the same event twice in one batch counts once.
        if !claimed.remove(&b.event_id) {
            w.audit.push(
                b,
                Applied::Duplicate,
                None,
                Some("event already processed"),
                *stream_seq,
            );
            outcomes.push(Outcome::Applied(Applied::Duplicate, None));
            continue;
        }
        let key = (b.tenant_id.clone(), b.booking_ref.clone());
        let outcome = match state.get_mut(&key) {
            None => {
                let current = new_booking(&mut w, &mut chain, b, chain_key);
                let id = current.id;
                w.outbox.push(subjects, Applied::Stored, b, &current);
                state.insert(key, current);
                w.audit
                    .push(b, Applied::Stored, Some(id), None, *stream_seq);
                Outcome::Applied(Applied::Stored, Some(id))
            }
            Some(current) => match change(&mut w, &mut chain, b, current, chain_key) {
                Ok(applied) => {
                    let reason = match applied {
                        Applied::Duplicate => Some("booking already in this state"),
                        Applied::Stale => Some("older than the booking's recorded state"),
                        _ => None,
                    };
                    w.audit
                        .push(b, applied, Some(current.id), reason, *stream_seq);
                    w.outbox.push(subjects, applied, b, current);
                    Outcome::Applied(applied, Some(current.id))
                }
                Err(reject) => {
                    w.released.push(b.event_id.clone());
                    Outcome::Rejected(reject)
                }
            },
        };
        outcomes.push(outcome);
    }

    write(&mut tx, &w, &state, &chain, &start).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// The next position on `tenant`'s chain and the hash to link to; the caller records the new
/// hash with [`chain_set`].
fn chain_link(chain: &mut HashMap<String, (i64, String)>, tenant: &str) -> (i64, String) {
    let (seq, hash) = chain
        .get(tenant)
        .cloned()
        .unwrap_or((0, GENESIS_HASH.to_string()));
    (seq + 1, hash)
}

fn chain_set(chain: &mut HashMap<String, (i64, String)>, tenant: &str, seq: i64, hash: &str) {
    chain.insert(tenant.to_string(), (seq, hash.to_string()));
}

/// A new booking appended to its tenant's chain.
fn new_booking(
    w: &mut Writes,
    chain: &mut HashMap<String, (i64, String)>,
    b: &NewBooking,
    key: Option<&ChainKey>,
) -> Current {
    let (seq, prev) = chain_link(chain, &b.tenant_id);
    let record_hash = FinancialFields {
        tenant_id: &b.tenant_id,
        booking_ref: &b.booking_ref,
        currency: b.currency,
        total: b.amounts.total,
        deposit: b.amounts.deposit,
        cash: b.amounts.cash,
        platform_fee: b.amounts.platform_fee,
        deposit_rate: b.deposit_rate.value(),
        fee_rate: b.fee_rate.value(),
    }
    .chained_hash_with(&prev, key);
    let id = Uuid::now_v7();
    let c = &mut w.bookings;
    c.id.push(id);
    c.tenant_id.push(b.tenant_id.clone());
    c.booking_ref.push(b.booking_ref.clone());
    c.booking_hash.push(b.booking_hash.clone());
    c.chain_seq.push(seq);
    c.currency.push(b.currency.code().to_string());
    c.total.push(b.amounts.total);
    c.deposit.push(b.amounts.deposit);
    c.cash.push(b.amounts.cash);
    c.fee.push(b.amounts.platform_fee);
    c.deposit_rate.push(b.deposit_rate.value());
    c.fee_rate.push(b.fee_rate.value());
    chain_set(chain, &b.tenant_id, seq, &record_hash);
    c.prev_hash.push(prev);
    c.record_hash.push(record_hash);
    c.status.push(b.status.as_str().to_string());
    c.session_at.push(b.session_at);
    c.service_id.push(b.service_id.clone());
    c.service_name.push(b.service_name.clone());
    c.service_duration.push(b.service_duration_minutes);
    c.provider_name.push(b.provider_name.clone());
    let client = b.client.as_ref();
    c.client_name.push(client.and_then(|c| c.name.clone()));
    c.client_email.push(client.and_then(|c| c.email.clone()));
    c.client_phone.push(client.and_then(|c| c.phone.clone()));
    c.source_event_id.push(b.event_id.clone());
    c.state_as_of.push(b.as_of);
    c.status_label.push(b.status_label.clone());
    history(w, id, b);
    Current {
        tenant_id: b.tenant_id.clone(),
        booking_ref: b.booking_ref.clone(),
        id,
        status: b.status.as_str().to_string(),
        session_at: b.session_at,
        currency: b.currency.code().to_string(),
        deposit_rate: b.deposit_rate.value(),
        platform_fee_rate: b.fee_rate.value(),
        service_id: b.service_id.clone(),
        service_name: b.service_name.clone(),
        status_label: b.status_label.clone(),
        state_as_of: Some(b.as_of),
        revision_no: 0,
        total_amount: b.amounts.total,
        deposit_amount: b.amounts.deposit,
        cash_amount: b.amounts.cash,
        platform_fee: b.amounts.platform_fee,
    }
}

fn history(w: &mut Writes, id: Uuid, b: &NewBooking) {
    w.history.booking_id.push(id);
    w.history.status.push(b.status.as_str().to_string());
    w.history.session_at.push(b.session_at);
    w.history.service_name.push(b.service_name.clone());
    w.history.status_label.push(b.status_label.clone());
    w.history.event_id.push(b.event_id.clone());
}

/// An event about a recorded booking: a price revision, a change of status, time or service, or
/// nothing.
fn change(
    w: &mut Writes,
    chain: &mut HashMap<String, (i64, String)>,
    b: &NewBooking,
    current: &mut Current,
    key: Option<&ChainKey>,
) -> Result<Applied, Reject> {
    // Same second counts as newer: senders' timestamps are whole seconds, and two events of
    // one second are applied in the order they were received.
    if current
        .state_as_of
        .is_some_and(|recorded| b.as_of < recorded)
    {
        return Ok(Applied::Stale);
    }
    if current.currency.trim() != b.currency.code() {
        return Err(Reject::new(
            "currency_change",
            format!(
                "booking {} was recorded in {}, event says {}",
                b.booking_ref,
                current.currency.trim(),
                b.currency
            ),
        ));
    }
    // A value from the service's price list values a booking when first recorded; a later
    // change of the list does not re-price it (only SimplyBook's own price object does).
    let revised = !b.priced_from_service && current.total_amount != b.amounts.total;
    if revised {
        revise(w, chain, b, current, key)?;
    }
    let moved = current.status != b.status.as_str()
        || current.session_at != b.session_at
        || current.service_name != b.service_name
        || current.service_id != b.service_id
        // Only an event that can carry a label (SimplyBook's details) changes it; a signed
        // payload has none and leaves it, unless the status itself changed.
        || (b.status_label.is_some() && current.status_label != b.status_label);
    if moved {
        if b.status_label.is_some() || current.status != b.status.as_str() {
            current.status_label = b.status_label.clone();
        }
        current.status = b.status.as_str().to_string();
        current.session_at = b.session_at;
        current.service_id = b.service_id.clone();
        current.service_name = b.service_name.clone();
        history(w, current.id, b);
    }
    if revised || moved {
        current.state_as_of = Some(b.as_of);
        w.moved.insert(current.id);
    }
    Ok(match (revised, moved) {
        (true, _) => Applied::Revised,
        (false, true) => Applied::StatusChanged,
        (false, false) => Applied::Duplicate,
    })
}

/// A price change: the new price split by the rates snapshotted on the booking (never the
/// tenant's current ones), recorded as the change from the current amounts.
fn revise(
    w: &mut Writes,
    chain: &mut HashMap<String, (i64, String)>,
    b: &NewBooking,
    current: &mut Current,
    key: Option<&ChainKey>,
) -> Result<(), Reject> {
    let rate = |r: Decimal| {
        Rate::new(r).map_err(|e| Reject::new("invalid_amount", format!("stored rate: {e}")))
    };
    let currency: Currency = b.currency;
    let after = BookingAmounts::split(
        b.amounts.total,
        currency,
        rate(current.deposit_rate)?,
        rate(current.platform_fee_rate)?,
    )
    .map_err(|e| Reject::new("invalid_amount", e.to_string()))?;
    let (seq, prev) = chain_link(chain, &b.tenant_id);
    let fields = RevisionFields {
        tenant_id: &b.tenant_id,
        booking_ref: &b.booking_ref,
        revision_no: current.revision_no + 1,
        currency,
        total_delta: after.total - current.total_amount,
        deposit_delta: after.deposit - current.deposit_amount,
        cash_delta: after.cash - current.cash_amount,
        fee_delta: after.platform_fee - current.platform_fee,
        total_after: after.total,
        fee_after: after.platform_fee,
    };
    let record_hash = fields.chained_hash_with(&prev, key);
    let r = &mut w.revisions;
    r.id.push(Uuid::now_v7());
    r.booking_id.push(current.id);
    r.tenant_id.push(b.tenant_id.clone());
    r.revision_no.push(fields.revision_no);
    r.chain_seq.push(seq);
    r.currency.push(currency.code().to_string());
    r.total_delta.push(fields.total_delta);
    r.deposit_delta.push(fields.deposit_delta);
    r.cash_delta.push(fields.cash_delta);
    r.fee_delta.push(fields.fee_delta);
    r.total_after.push(after.total);
    r.deposit_after.push(after.deposit);
    r.cash_after.push(after.cash);
    r.fee_after.push(after.platform_fee);
    r.prev_hash.push(prev);
    r.record_hash.push(record_hash.clone());
    r.source_event_id.push(b.event_id.clone());
    chain_set(chain, &b.tenant_id, seq, &record_hash);
    current.revision_no = fields.revision_no;
    current.total_amount = after.total;
    current.deposit_amount = after.deposit;
    current.cash_amount = after.cash;
    current.platform_fee = after.platform_fee;
    Ok(())
}

/// One statement per table.
async fn write(
    tx: &mut Transaction<'_, Postgres>,
    w: &Writes,
    state: &HashMap<(String, String), Current>,
    chain: &HashMap<String, (i64, String)>,
    start: &HashMap<String, i64>,
) -> Result<(), sqlx::Error> {
    if !w.released.is_empty() {
        sqlx::query("delete from processed_events where event_id = any($1)")
            .bind(&w.released)
            .execute(&mut **tx)
            .await?;
    }
    let c = &w.bookings;
    if !c.id.is_empty() {
        sqlx::query(
            "insert into bookings (id, tenant_id, booking_ref, booking_hash, chain_seq, currency,
                total_amount, deposit_amount, cash_amount, platform_fee, deposit_rate,
                platform_fee_rate, prev_hash, record_hash, status, session_at, service_id,
                service_name, service_duration_minutes, provider_name, client_name,
                client_email, client_phone, source_event_id, state_as_of, status_label)
             select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int8[],
                $6::text[], $7::numeric[], $8::numeric[], $9::numeric[], $10::numeric[],
                $11::numeric[], $12::numeric[], $13::text[], $14::text[], $15::text[],
                $16::timestamptz[], $17::text[], $18::text[], $19::int4[], $20::text[],
                $21::text[], $22::text[], $23::text[], $24::text[], $25::timestamptz[],
                $26::text[])",
        )
        .bind(&c.id)
        .bind(&c.tenant_id)
        .bind(&c.booking_ref)
        .bind(&c.booking_hash)
        .bind(&c.chain_seq)
        .bind(&c.currency)
        .bind(&c.total)
        .bind(&c.deposit)
        .bind(&c.cash)
        .bind(&c.fee)
        .bind(&c.deposit_rate)
        .bind(&c.fee_rate)
        .bind(&c.prev_hash)
        .bind(&c.record_hash)
        .bind(&c.status)
        .bind(&c.session_at)
        .bind(&c.service_id)
        .bind(&c.service_name)
        .bind(&c.service_duration)
        .bind(&c.provider_name)
        .bind(&c.client_name)
        .bind(&c.client_email)
        .bind(&c.client_phone)
        .bind(&c.source_event_id)
        .bind(&c.state_as_of)
        .bind(&c.status_label)
        .execute(&mut **tx)
        .await?;
    }
    let r = &w.revisions;
    if !r.id.is_empty() {
        sqlx::query(
            "insert into booking_revisions (id, booking_id, tenant_id, revision_no, chain_seq,
                currency, total_delta, deposit_delta, cash_delta, fee_delta, total_after,
                deposit_after, cash_after, fee_after, prev_hash, record_hash, source_event_id)
             select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::int4[], $5::int8[],
                $6::text[], $7::numeric[], $8::numeric[], $9::numeric[], $10::numeric[],
                $11::numeric[], $12::numeric[], $13::numeric[], $14::numeric[], $15::text[],
                $16::text[], $17::text[])",
        )
        .bind(&r.id)
        .bind(&r.booking_id)
        .bind(&r.tenant_id)
        .bind(&r.revision_no)
        .bind(&r.chain_seq)
        .bind(&r.currency)
        .bind(&r.total_delta)
        .bind(&r.deposit_delta)
        .bind(&r.cash_delta)
        .bind(&r.fee_delta)
        .bind(&r.total_after)
        .bind(&r.deposit_after)
        .bind(&r.cash_after)
        .bind(&r.fee_after)
        .bind(&r.prev_hash)
        .bind(&r.record_hash)
        .bind(&r.source_event_id)
        .execute(&mut **tx)
        .await?;
    }
    if !w.moved.is_empty() {
        let moved = || state.values().filter(|c| w.moved.contains(&c.id));
        let ids: Vec<Uuid> = moved().map(|c| c.id).collect();
        let statuses: Vec<&str> = moved().map(|c| c.status.as_str()).collect();
        let times: Vec<DateTime<Utc>> = moved().map(|c| c.session_at).collect();
        let service_ids: Vec<Option<&str>> = moved().map(|c| c.service_id.as_deref()).collect();
        let service_names: Vec<&str> = moved().map(|c| c.service_name.as_str()).collect();
        let as_of: Vec<Option<DateTime<Utc>>> = moved().map(|c| c.state_as_of).collect();
        let labels: Vec<Option<&str>> = moved().map(|c| c.status_label.as_deref()).collect();
        sqlx::query(
            "update bookings b set status = m.status, session_at = m.session_at,
                service_id = m.service_id, service_name = m.service_name,
                state_as_of = m.as_of, status_label = m.label, updated_at = now()
             from unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],
                $6::timestamptz[], $7::text[])
                as m(id, status, session_at, service_id, service_name, as_of, label)
             where b.id = m.id",
        )
        .bind(&ids)
        .bind(&statuses)
        .bind(&times)
        .bind(&service_ids)
        .bind(&service_names)
        .bind(&as_of)
        .bind(&labels)
        .execute(&mut **tx)
        .await?;
    }
    let h = &w.history;
    if !h.booking_id.is_empty() {
        sqlx::query(
            "insert into booking_status_history (booking_id, status, session_at, service_name,
                event_id, status_label)
             select * from unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[],
                $5::text[], $6::text[])",
        )
        .bind(&h.booking_id)
        .bind(&h.status)
        .bind(&h.session_at)
        .bind(&h.service_name)
        .bind(&h.event_id)
        .bind(&h.status_label)
        .execute(&mut **tx)
        .await?;
    }
    let (tenants, (seqs, hashes)): (Vec<&str>, (Vec<i64>, Vec<&str>)) = chain
        .iter()
        .filter(|(t, (seq, _))| start.get(*t) != Some(seq))
        .map(|(t, (seq, hash))| (t.as_str(), (*seq, hash.as_str())))
        .unzip();
    if !tenants.is_empty() {
        sqlx::query(
            "update chain_heads h set last_seq = n.seq, last_hash = n.hash
             from unnest($1::text[], $2::int8[], $3::text[]) as n(tenant_id, seq, hash)
             where h.tenant_id = n.tenant_id",
        )
        .bind(&tenants)
        .bind(&seqs)
        .bind(&hashes)
        .execute(&mut **tx)
        .await?;
    }
    let o = &w.outbox;
    if !o.subject.is_empty() {
        sqlx::query(
            "insert into outbox (subject, message_id, payload, traceparent)
             select * from unnest($1::text[], $2::text[], $3::bytea[], $4::text[])
             on conflict (message_id) do nothing",
        )
        .bind(&o.subject)
        .bind(&o.message_id)
        .bind(&o.payload)
        .bind(&o.traceparent)
        .execute(&mut **tx)
        .await?;
    }
    let a = &w.audit;
    if !a.event_id.is_empty() {
        sqlx::query(
            // clock_timestamp(), not now(): the moment the outcome is written, just before the
            // commit, rather than when the transaction began.
            "insert into audit_log (occurred_at, source, event_id, tenant_id, outcome, booking_id,
                reason, stream_seq)
             select clock_timestamp(), 'simplybook', * from unnest($1::text[], $2::text[],
                $3::text[], $4::uuid[], $5::text[], $6::int8[])",
        )
        .bind(&a.event_id)
        .bind(&a.tenant_id)
        .bind(&a.outcome)
        .bind(&a.booking_id)
        .bind(&a.reason)
        .bind(&a.stream_seq)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_continues_from_the_locked_head() {
        let mut chain = HashMap::from([("claire".to_string(), (4, "h4".to_string()))]);
        assert_eq!(chain_link(&mut chain, "claire"), (5, "h4".to_string()));
        chain_set(&mut chain, "claire", 5, "h5");
        assert_eq!(chain_link(&mut chain, "claire"), (6, "h5".to_string()));
        assert_eq!(
            chain_link(&mut chain, "kenji"),
            (1, GENESIS_HASH.to_string())
        );
    }
}
