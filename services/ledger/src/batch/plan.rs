//! The batch's decisions, and nothing else: given the events (in stream order) and the state the
//! batch's transaction loaded, what each event does and what must be written. No I/O and no
//! clock (ids come from the caller), so every rule is tested here without a database.
//!
//! The rules, event by event:
//! - **Duplicates.** An event whose id the batch did not claim was processed before; the second
//!   copy of an id within the batch counts once as well.
//! - **New booking.** A booking not recorded yet is appended to its tenant's chain with the
//!   amounts and rates the event was split by: those rates are the booking's from now on.
//! - **Stale.** An event older than the booking's recorded state (`as_of`) changes nothing. The
//!   same instant counts as newer: two events of one second apply in the order received.
//! - **Currency.** An event in another currency than the booking's is refused.
//! - **Revision.** A new price (unless it only comes from the service's price list) is split by
//!   the rates snapshotted on the booking, never the event's, and appended to the chain as the
//!   change from the current amounts.
//! - **Change.** A new status, session time or service (or Status-feature label) updates the
//!   booking's current state and adds a history row; anything else is a duplicate. Either way
//!   the booking's state is now known as of the event's time, so an older event is stale.
//! - **Chain.** Each tenant's records take consecutive positions after the locked head, each
//!   linked to the hash before it, in the batch's order.

use std::collections::{HashMap, HashSet};

use billing_domain::hash::{ChainKey, FinancialFields, GENESIS_HASH, RevisionFields};
use billing_domain::{BookingAmounts, Rate};
use billing_proto::convert::{money, timestamp};
use billing_proto::events::BookingEventV1;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::clients::{Kept, Vault};
use crate::incoming::NewBooking;
use crate::outcome::{Applied, Outcome, Reject};

/// A recorded booking as it stands (its latest revision's amounts), updated in memory as the
/// batch is walked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Current {
    pub tenant_id: String,
    pub booking_ref: String,
    pub id: Uuid,
    pub status: String,
    pub session_at: DateTime<Utc>,
    pub currency: String,
    pub deposit_rate: Decimal,
    pub platform_fee_rate: Decimal,
    pub service_id: Option<String>,
    pub service_name: String,
    pub status_label: Option<String>,
    pub state_as_of: Option<DateTime<Utc>>,
    pub revision_no: i32,
    pub total_amount: Decimal,
    pub deposit_amount: Decimal,
    pub cash_amount: Decimal,
    pub platform_fee: Decimal,
}

impl Current {
    /// A booking as `b` records it, stored under `id`, before any revision.
    pub(crate) fn recorded(b: &NewBooking, id: Uuid) -> Self {
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
}

/// A tenant's chain head: its last position and that record's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub seq: i64,
    pub hash: String,
}

/// What the batch's transaction loaded: the state the plan starts from.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// The event ids this batch claimed; any other was processed before.
    pub claimed: HashSet<String>,
    /// The chain head of every tenant in the batch, locked.
    pub heads: HashMap<String, Head>,
    /// The recorded bookings the batch names, by (tenant, booking_ref).
    pub bookings: HashMap<(String, String), Current>,
}

/// A new booking record.
#[derive(Debug, Clone)]
pub(crate) struct BookingInsert<'e> {
    pub id: Uuid,
    pub chain_seq: i64,
    pub prev_hash: String,
    pub record_hash: String,
    /// The event it is recorded from (amounts, rates, status, …).
    pub booking: &'e NewBooking,
    /// What is kept of its client (sealed when written), whose identity digest the record
    /// chains; `None` without a keyring or when the event names no one to keep.
    pub client: Option<Kept>,
}

/// A price revision record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RevisionInsert {
    pub id: Uuid,
    pub booking_id: Uuid,
    pub tenant_id: String,
    pub revision_no: i32,
    pub chain_seq: i64,
    pub currency: String,
    pub delta: BookingAmounts,
    pub after: BookingAmounts,
    pub prev_hash: String,
    pub record_hash: String,
    pub source_event_id: String,
}

/// A row of a booking's status history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistoryInsert {
    pub booking_id: Uuid,
    pub status: String,
    pub session_at: DateTime<Utc>,
    pub service_name: String,
    pub status_label: Option<String>,
    pub event_id: String,
}

/// A `ledger.booking.<kind>` event for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutboxInsert {
    pub message_id: String,
    pub event: BookingEventV1,
    pub traceparent: Option<String>,
}

/// An audit-log row for one event's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditInsert {
    pub event_id: String,
    pub tenant_id: String,
    pub outcome: Applied,
    pub booking_id: Option<Uuid>,
    pub reason: Option<String>,
    pub stream_seq: i64,
}

/// Everything the batch writes.
#[derive(Debug, Default)]
pub(crate) struct Writes<'e> {
    /// Event ids to release: their events were refused and go to the dead-letter path.
    pub released: Vec<String>,
    pub bookings: Vec<BookingInsert<'e>>,
    pub revisions: Vec<RevisionInsert>,
    /// The final current state of each recorded booking whose state changed, in the order the
    /// batch first changed it (a booking recorded by this batch too, when it changed again).
    pub states: Vec<Current>,
    pub history: Vec<HistoryInsert>,
    /// The new head of each tenant whose chain grew, in tenant order.
    pub heads: Vec<(String, Head)>,
    pub outbox: Vec<OutboxInsert>,
    pub audit: Vec<AuditInsert>,
}

/// The plan: one outcome per event, in order, and the writes.
#[derive(Debug)]
pub(crate) struct Plan<'e> {
    pub outcomes: Vec<Outcome>,
    pub writes: Writes<'e>,
}

/// Decides what `events` (each with its stream sequence, in stream order) do to the `loaded`
/// state. `vault` decides what of each new booking's client is kept; `new_id` names each new
/// record (bookings and revisions).
pub(crate) fn plan<'e>(
    events: &'e [(NewBooking, u64)],
    loaded: Loaded,
    chain_key: Option<&ChainKey>,
    vault: Option<&Vault>,
    new_id: &mut dyn FnMut() -> Uuid,
) -> Plan<'e> {
    let Loaded {
        mut claimed,
        heads,
        bookings,
    } = loaded;
    let mut p = Planner {
        key: chain_key,
        vault,
        new_id,
        start: heads.clone(),
        chain: heads,
        state: bookings,
        changed: Vec::new(),
        changed_set: HashSet::new(),
        w: Writes::default(),
    };
    let mut outcomes = Vec::with_capacity(events.len());
    for (b, stream_seq) in events {
        let stream_seq = i64::try_from(*stream_seq).unwrap_or(i64::MAX);
        // `remove`: the same event twice in one batch counts once.
        let outcome = if claimed.remove(&b.event_id) {
            p.apply(b, stream_seq)
        } else {
            let reason = Some("event already processed");
            p.audit(b, Applied::Duplicate, None, reason, stream_seq);
            Outcome::Applied(Applied::Duplicate, None)
        };
        outcomes.push(outcome);
    }
    Plan {
        outcomes,
        writes: p.finish(),
    }
}

/// The batch's state while its events are walked.
struct Planner<'a, 'e> {
    key: Option<&'a ChainKey>,
    vault: Option<&'a Vault>,
    new_id: &'a mut dyn FnMut() -> Uuid,
    /// Each tenant's head as loaded, and as the batch moved it.
    start: HashMap<String, Head>,
    chain: HashMap<String, Head>,
    state: HashMap<(String, String), Current>,
    /// Bookings whose state changed, in the order they first did.
    changed: Vec<(String, String)>,
    changed_set: HashSet<(String, String)>,
    w: Writes<'e>,
}

impl<'e> Planner<'_, 'e> {
    /// A claimed event: a new booking, a change of a recorded one, or a refusal.
    fn apply(&mut self, b: &'e NewBooking, stream_seq: i64) -> Outcome {
        let key = (b.tenant_id.clone(), b.booking_ref.clone());
        let Some(mut current) = self.state.remove(&key) else {
            let current = self.new_booking(b);
            let id = current.id;
            self.announce(Applied::Stored, b, &current);
            self.state.insert(key, current);
            self.audit(b, Applied::Stored, Some(id), None, stream_seq);
            return Outcome::Applied(Applied::Stored, Some(id));
        };
        let outcome = match self.change(b, &mut current) {
            Ok(applied) => {
                let reason = match applied {
                    Applied::Duplicate => Some("booking already in this state"),
                    Applied::Stale => Some("older than the booking's recorded state"),
                    _ => None,
                };
                self.audit(b, applied, Some(current.id), reason, stream_seq);
                self.announce(applied, b, &current);
                Outcome::Applied(applied, Some(current.id))
            }
            Err(reject) => {
                self.w.released.push(b.event_id.clone());
                Outcome::Rejected(reject)
            }
        };
        self.state.insert(key, current);
        outcome
    }

    /// The next position on `tenant`'s chain and the hash to link to.
    fn next_link(&self, tenant: &str) -> (i64, String) {
        next_link(&self.chain, tenant)
    }

    /// Records `hash` at `seq` as `tenant`'s new head.
    fn link(&mut self, tenant: &str, seq: i64, hash: &str) {
        let head = Head {
            seq,
            hash: hash.to_string(),
        };
        self.chain.insert(tenant.to_string(), head);
    }

    /// A new booking appended to its tenant's chain, with the event's amounts and rates.
    fn new_booking(&mut self, b: &'e NewBooking) -> Current {
        let (seq, prev) = self.next_link(&b.tenant_id);
        let client = self
            .vault
            .zip(b.client.as_ref())
            .and_then(|(vault, info)| vault.keep(&b.tenant_id, info));
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
            client_digest: Some(client.as_ref().map_or("", Kept::identity_digest)),
        }
        .chained_hash_with(&prev, self.key);
        let id = (self.new_id)();
        self.link(&b.tenant_id, seq, &record_hash);
        self.w.bookings.push(BookingInsert {
            id,
            chain_seq: seq,
            prev_hash: prev,
            record_hash,
            booking: b,
            client,
        });
        self.history(id, b);
        Current::recorded(b, id)
    }

    fn history(&mut self, booking_id: Uuid, b: &NewBooking) {
        self.w.history.push(HistoryInsert {
            booking_id,
            status: b.status.as_str().to_string(),
            session_at: b.session_at,
            service_name: b.service_name.clone(),
            status_label: b.status_label.clone(),
            event_id: b.event_id.clone(),
        });
    }

    /// An event about a recorded booking: a price revision, a change of status, time or
    /// service, or nothing.
    fn change(&mut self, b: &NewBooking, current: &mut Current) -> Result<Applied, Reject> {
        if is_stale(current, b) {
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
        let revised = reprices(current, b);
        if revised {
            self.revise(b, current)?;
        }
        let moved = moves(current, b);
        if moved {
            if b.status_label.is_some() || current.status != b.status.as_str() {
                current.status_label = b.status_label.clone();
            }
            current.status = b.status.as_str().to_string();
            current.session_at = b.session_at;
            current.service_id = b.service_id.clone();
            current.service_name = b.service_name.clone();
            self.history(current.id, b);
        }
        // An event saying what the booking already says still confirms that state as of its
        // own time: an older event delivered after it must then be stale, not applied over it.
        let newer = current
            .state_as_of
            .is_none_or(|recorded| b.as_of > recorded);
        if revised || moved || newer {
            current.state_as_of = Some(b.as_of);
            self.changed(current);
        }
        Ok(match (revised, moved) {
            (true, _) => Applied::Revised,
            (false, true) => Applied::StatusChanged,
            (false, false) => Applied::Duplicate,
        })
    }

    /// A price change: the new price split by the rates snapshotted on the booking (never the
    /// event's, which are the tenant's current ones), recorded as the change from the current
    /// amounts.
    fn revise(&mut self, b: &NewBooking, current: &mut Current) -> Result<(), Reject> {
        let after = revised_amounts(current, b)?;
        let before = amounts(current);
        let delta = BookingAmounts {
            total: after.total - before.total,
            deposit: after.deposit - before.deposit,
            cash: after.cash - before.cash,
            platform_fee: after.platform_fee - before.platform_fee,
        };
        let (seq, prev) = self.next_link(&b.tenant_id);
        let fields = RevisionFields {
            tenant_id: &b.tenant_id,
            booking_ref: &b.booking_ref,
            revision_no: current.revision_no + 1,
            currency: b.currency,
            total_delta: delta.total,
            deposit_delta: delta.deposit,
            cash_delta: delta.cash,
            fee_delta: delta.platform_fee,
            total_after: after.total,
            fee_after: after.platform_fee,
        };
        let record_hash = fields.chained_hash_with(&prev, self.key);
        let revision_no = fields.revision_no;
        let id = (self.new_id)();
        self.link(&b.tenant_id, seq, &record_hash);
        self.w.revisions.push(RevisionInsert {
            id,
            booking_id: current.id,
            tenant_id: b.tenant_id.clone(),
            revision_no,
            chain_seq: seq,
            currency: b.currency.code().to_string(),
            delta,
            after,
            prev_hash: prev,
            record_hash,
            source_event_id: b.event_id.clone(),
        });
        current.revision_no = revision_no;
        current.total_amount = after.total;
        current.deposit_amount = after.deposit;
        current.cash_amount = after.cash;
        current.platform_fee = after.platform_fee;
        Ok(())
    }

    /// Marks `current`'s state as changed (its final state is written once).
    fn changed(&mut self, current: &Current) {
        let key = (current.tenant_id.clone(), current.booking_ref.clone());
        if self.changed_set.insert(key.clone()) {
            self.changed.push(key);
        }
    }

    /// The booking event announcing what `applied` did, with the booking as it now stands.
    fn announce(&mut self, applied: Applied, b: &NewBooking, current: &Current) {
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
        self.w.outbox.push(OutboxInsert {
            // One event per applied source event, so its id is a stable identity.
            message_id: format!("ledger:{}", b.event_id),
            event,
            traceparent: b.traceparent.clone(),
        });
    }

    fn audit(
        &mut self,
        b: &NewBooking,
        outcome: Applied,
        booking_id: Option<Uuid>,
        reason: Option<&'static str>,
        stream_seq: i64,
    ) {
        self.w.audit.push(AuditInsert {
            event_id: b.event_id.clone(),
            tenant_id: b.tenant_id.clone(),
            outcome,
            booking_id,
            // The event's own note (a repair, an unmapped label) when the outcome has none.
            reason: reason.map(str::to_string).or_else(|| b.note.clone()),
            stream_seq,
        });
    }

    fn finish(mut self) -> Writes<'e> {
        let changed = std::mem::take(&mut self.changed);
        self.w.states = changed
            .iter()
            .filter_map(|key| self.state.get(key).cloned())
            .collect();
        let mut heads: Vec<(String, Head)> = self
            .chain
            .into_iter()
            .filter(|(tenant, head)| self.start.get(tenant).map(|h| h.seq) != Some(head.seq))
            .collect();
        heads.sort_by(|a, b| a.0.cmp(&b.0));
        self.w.heads = heads;
        self.w
    }
}

/// The next position on `tenant`'s chain and the hash to link to: after the head, or the first
/// position after the genesis hash for a chain without one.
pub(super) fn next_link(chain: &HashMap<String, Head>, tenant: &str) -> (i64, String) {
    match chain.get(tenant) {
        Some(head) => (head.seq + 1, head.hash.clone()),
        None => (1, GENESIS_HASH.to_string()),
    }
}

/// Whether `b` is older than the booking's recorded state. The same second counts as newer:
/// senders' timestamps are whole seconds, and two events of one second are applied in the order
/// they were received.
fn is_stale(current: &Current, b: &NewBooking) -> bool {
    current
        .state_as_of
        .is_some_and(|recorded| b.as_of < recorded)
}

/// Whether `b` re-prices the booking. A value from the service's price list values a booking
/// when first recorded; a later change of the list does not re-price it (only SimplyBook's own
/// price object does).
fn reprices(current: &Current, b: &NewBooking) -> bool {
    !b.priced_from_service && current.total_amount != b.amounts.total
}

/// Whether `b` changes the booking's status, session time, service or label. Only an event that
/// can carry a label (SimplyBook's details) changes it; a signed payload has none and leaves it,
/// unless the status itself changed.
fn moves(current: &Current, b: &NewBooking) -> bool {
    current.status != b.status.as_str()
        || current.session_at != b.session_at
        || current.service_name != b.service_name
        || current.service_id != b.service_id
        || (b.status_label.is_some() && current.status_label != b.status_label)
}

/// The booking's current amounts.
fn amounts(current: &Current) -> BookingAmounts {
    BookingAmounts {
        total: current.total_amount,
        deposit: current.deposit_amount,
        cash: current.cash_amount,
        platform_fee: current.platform_fee,
    }
}

/// `b`'s price split by the rates snapshotted on the booking.
fn revised_amounts(current: &Current, b: &NewBooking) -> Result<BookingAmounts, Reject> {
    let rate = |r: Decimal| {
        Rate::new(r).map_err(|e| Reject::new("invalid_amount", format!("stored rate: {e}")))
    };
    BookingAmounts::split(
        b.amounts.total,
        b.currency,
        rate(current.deposit_rate)?,
        rate(current.platform_fee_rate)?,
    )
    .map_err(|e| Reject::new("invalid_amount", e.to_string()))
}
