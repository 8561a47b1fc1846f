//! For the plan's tests: events made the way the consumer makes them (a tenant's settings and a
//! payload, through the webhook decoding, so amounts are split by the real rules), and an
//! in-memory model of the tables a batch loads and writes, so several batches, redeliveries and
//! released keys can be played without a database.

use std::collections::{BTreeMap, HashMap, HashSet};

use billing_domain::hash::ChainKey;
use billing_domain::{BookingAmounts, BookingStatus, Tenants};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::batch::plan::{Current, Head, HistoryInsert, Loaded, Plan, RevisionInsert, plan};
use crate::incoming::{self, NewBooking};
use crate::integrity::{self, Amounts, ChainRecord, Fields};
use crate::outcome::{Applied, Outcome};

/// Each outcome as (what it did, whether it names a booking); a refusal fails the test.
pub fn applied(outcomes: &[Outcome]) -> Vec<(Applied, bool)> {
    outcomes
        .iter()
        .map(|o| match o {
            Outcome::Applied(a, id) => (*a, id.is_some()),
            Outcome::Rejected(r) => panic!("rejected: {}: {}", r.code, r.message),
        })
        .collect()
}

pub fn amounts(total: &str, deposit: &str, cash: &str, fee: &str) -> BookingAmounts {
    BookingAmounts {
        total: d(total),
        deposit: d(deposit),
        cash: d(cash),
        platform_fee: d(fee),
    }
}

pub fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).expect("decimal")
}

/// `secs` after a fixed instant.
pub fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_790_000_000 + secs, 0).expect("time")
}

/// The session times events choose from.
pub fn session(n: u32) -> String {
    format!("2026-10-{:02}T10:00:00+11:00", 14 + n)
}

/// A tenant's settings: `(id, currency, deposit rate, fee rate)`.
pub fn tenants(list: &[(&str, &str, &str, &str)]) -> Tenants {
    let tenants: Vec<serde_json::Value> = list
        .iter()
        .map(|(id, currency, deposit, fee)| {
            serde_json::json!({"id": id, "name": id, "billing_email": "t@example.test",
                "currency": currency, "deposit_rate": deposit, "platform_fee_rate": fee})
        })
        .collect();
    Tenants::from_json(&serde_json::json!({ "tenants": tenants }).to_string()).expect("tenants")
}

/// What an event says about its booking.
#[derive(Debug, Clone)]
pub struct Says {
    pub status: BookingStatus,
    pub price: Decimal,
    pub session: u32,
    pub service: u32,
    pub label: Option<String>,
}

impl Says {
    pub fn new(status: BookingStatus, price: &str) -> Self {
        Says {
            status,
            price: d(price),
            session: 0,
            service: 0,
            label: None,
        }
    }
}

/// Event `event_id` about `booking_ref` of `tenant`, as of `as_of`, decoded like a signed
/// payload (split by the tenant's current rates), then given `says.label`.
pub fn event(
    tenants: &Tenants,
    tenant: &str,
    event_id: &str,
    booking_ref: &str,
    as_of: DateTime<Utc>,
    says: &Says,
) -> NewBooking {
    let body = serde_json::json!({"booking_id": booking_ref, "status": says.status.as_str(),
        "price": says.price.to_string(), "datetime": session(says.session),
        "service": {"id": says.service.to_string(), "name": format!("Service {}", says.service)},
        "client": {"name": "A client"}});
    let mut b = incoming::decode(
        tenants,
        tenant,
        event_id,
        as_of,
        body.to_string().as_bytes(),
    )
    .unwrap_or_else(|r| panic!("{event_id}: {}: {}", r.code, r.message));
    b.status_label = says.label.clone();
    b
}

/// Ids 1, 2, 3, … in the order the plan asks for them.
pub struct Ids(u128);

impl Ids {
    pub fn new() -> Self {
        Ids(0)
    }

    pub fn next(&mut self) -> Uuid {
        self.0 += 1;
        Uuid::from_u128(self.0)
    }
}

/// The plan of one batch of `events` (stream sequences 1, 2, …) from `loaded`.
pub fn plan_of<'e>(
    events: &'e [(NewBooking, u64)],
    loaded: Loaded,
    key: Option<&ChainKey>,
    ids: &mut Ids,
) -> Plan<'e> {
    plan(events, loaded, key, None, &mut || ids.next())
}

/// `events` numbered by stream sequence from 1.
pub fn numbered(events: &[NewBooking]) -> Vec<(NewBooking, u64)> {
    events.iter().cloned().zip(1..).collect()
}

/// A booking row as the model stores it: the original record and its current state.
#[derive(Debug, Clone)]
struct Row {
    chain_seq: i64,
    original: Amounts,
    prev_hash: String,
    record_hash: String,
    /// The chained client digest, as written ('' when no client is kept).
    client_digest: String,
    /// The state columns (and the original amounts, rates and currency).
    current: Current,
}

/// The ledger's tables, in memory, as a batch loads and writes them.
#[derive(Default)]
pub struct Model {
    processed: HashSet<String>,
    heads: HashMap<String, Head>,
    rows: BTreeMap<(String, String), Row>,
    revisions: Vec<RevisionInsert>,
    pub history: Vec<HistoryInsert>,
    ids: u128,
}

impl Model {
    /// What `load` would read for `events`, claiming their ids.
    pub fn load(&mut self, events: &[(NewBooking, u64)]) -> Loaded {
        let mut loaded = Loaded::default();
        for (b, _) in events {
            if self.processed.insert(b.event_id.clone()) {
                loaded.claimed.insert(b.event_id.clone());
            }
            let head = self.heads.entry(b.tenant_id.clone()).or_insert(Head {
                seq: 0,
                hash: billing_domain::hash::GENESIS_HASH.to_string(),
            });
            loaded.heads.insert(b.tenant_id.clone(), head.clone());
            let key = (b.tenant_id.clone(), b.booking_ref.clone());
            if let Some(current) = self.current(&key) {
                loaded.bookings.insert(key, current);
            }
        }
        loaded
    }

    /// A booking as `load` reads it: the row with its latest revision's amounts.
    fn current(&self, key: &(String, String)) -> Option<Current> {
        let row = self.rows.get(key)?;
        let mut current = row.current.clone();
        let latest = self
            .revisions
            .iter()
            .filter(|r| r.booking_id == current.id)
            .max_by_key(|r| r.revision_no);
        if let Some(r) = latest {
            current.revision_no = r.revision_no;
            current.total_amount = r.after.total;
            current.deposit_amount = r.after.deposit;
            current.cash_amount = r.after.cash;
            current.platform_fee = r.after.platform_fee;
        }
        Some(current)
    }

    /// Writes `plan` as `write` would.
    pub fn write(&mut self, plan: &Plan<'_>) {
        let w = &plan.writes;
        for id in &w.released {
            self.processed.remove(id);
        }
        for r in &w.bookings {
            let b = r.booking;
            let key = (b.tenant_id.clone(), b.booking_ref.clone());
            assert!(!self.rows.contains_key(&key), "{key:?} inserted twice");
            let current = Current::recorded(b, r.id);
            let original = Amounts {
                total: b.amounts.total,
                deposit: b.amounts.deposit,
                cash: b.amounts.cash,
                fee: b.amounts.platform_fee,
            };
            let row = Row {
                chain_seq: r.chain_seq,
                original,
                prev_hash: r.prev_hash.clone(),
                record_hash: r.record_hash.clone(),
                client_digest: r
                    .client
                    .as_ref()
                    .map_or(String::new(), |c| c.identity_digest().to_string()),
                current,
            };
            self.rows.insert(key, row);
        }
        self.revisions.extend(w.revisions.iter().cloned());
        for state in &w.states {
            let row = self
                .rows
                .values_mut()
                .find(|r| r.current.id == state.id)
                .expect("an update of a recorded booking");
            let c = &mut row.current;
            c.status.clone_from(&state.status);
            c.session_at = state.session_at;
            c.service_id.clone_from(&state.service_id);
            c.service_name.clone_from(&state.service_name);
            c.state_as_of = state.state_as_of;
            c.status_label.clone_from(&state.status_label);
        }
        self.history.extend(w.history.iter().cloned());
        for (tenant, head) in &w.heads {
            self.heads.insert(tenant.clone(), head.clone());
        }
    }

    /// Plays `batches` one after the other (ids numbered across them); every outcome.
    pub fn play(&mut self, batches: &[Vec<NewBooking>], key: Option<&ChainKey>) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for batch in batches {
            let events = numbered(batch);
            let loaded = self.load(&events);
            let mut ids = Ids(self.ids);
            let plan = plan_of(&events, loaded, key, &mut ids);
            self.ids = ids.0;
            self.write(&plan);
            outcomes.extend(plan.outcomes);
        }
        outcomes
    }

    /// Every recorded booking as it stands, by (tenant, booking_ref).
    pub fn bookings(&self) -> BTreeMap<(String, String), Current> {
        self.rows
            .keys()
            .filter_map(|k| Some((k.clone(), self.current(k)?)))
            .collect()
    }

    /// `tenant`'s chain as the verifier reads it, and its head.
    pub fn chain(&self, tenant: &str) -> (Vec<ChainRecord>, Option<(i64, String)>) {
        let mut records: Vec<ChainRecord> = Vec::new();
        for row in self.rows.values().filter(|r| r.current.tenant_id == tenant) {
            let c = &row.current;
            records.push(ChainRecord {
                chain_seq: row.chain_seq,
                id: c.id,
                booking_ref: c.booking_ref.clone(),
                currency: c.currency.clone(),
                fields: Fields::Booking {
                    total: row.original.total,
                    deposit: row.original.deposit,
                    cash: row.original.cash,
                    platform_fee: row.original.fee,
                    deposit_rate: c.deposit_rate,
                    fee_rate: c.platform_fee_rate,
                    client_digest: Some(row.client_digest.clone()),
                },
                prev_hash: row.prev_hash.clone(),
                record_hash: row.record_hash.clone(),
            });
            let mut before = row.original;
            let mut revisions: Vec<&RevisionInsert> = self
                .revisions
                .iter()
                .filter(|r| r.booking_id == c.id)
                .collect();
            revisions.sort_by_key(|r| r.revision_no);
            for r in revisions {
                let after = Amounts {
                    total: r.after.total,
                    deposit: r.after.deposit,
                    cash: r.after.cash,
                    fee: r.after.platform_fee,
                };
                records.push(ChainRecord {
                    chain_seq: r.chain_seq,
                    id: r.id,
                    booking_ref: c.booking_ref.clone(),
                    currency: r.currency.clone(),
                    fields: Fields::Revision {
                        revision_no: r.revision_no,
                        total_delta: r.delta.total,
                        deposit_delta: r.delta.deposit,
                        cash_delta: r.delta.cash,
                        fee_delta: r.delta.platform_fee,
                        after,
                        before: Some(before),
                    },
                    prev_hash: r.prev_hash.clone(),
                    record_hash: r.record_hash.clone(),
                });
                before = after;
            }
        }
        records.sort_by_key(|r| r.chain_seq);
        let head = self.heads.get(tenant).map(|h| (h.seq, h.hash.clone()));
        (records, head)
    }

    /// Verifies every tenant's chain as VerifyIntegrity would; the first violation.
    pub fn verify(&self, key: Option<&ChainKey>) -> Result<(), String> {
        for tenant in self.heads.keys() {
            let (records, head) = self.chain(tenant);
            if let Some(v) = integrity::verify(tenant, &records, head, key).violation {
                return Err(format!("{tenant}: record {}: {}", v.chain_seq, v.reason));
            }
        }
        Ok(())
    }
}
