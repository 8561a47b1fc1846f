//! The known workload: each tenant's bookings, some changed or cancelled, as signed webhooks
//! delivered one to three times in shuffled order, and what the ledger and the close must end
//! up with.

use std::collections::BTreeMap;

use anyhow::Context as _;
use billing_domain::standard_webhooks::SigningKey;
use rust_decimal::Decimal;

use crate::{Args, SECRET};

/// splitmix64: a small deterministic generator, enough to shuffle a workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

pub fn tenant_id(t: usize) -> String {
    format!("t{t:02}")
}

/// The state a booking event carries (the signed forwarder sends the whole booking).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub status: &'static str,
    pub price: Decimal,
    /// Local time in Sydney, `YYYY-MM-DD HH:MM:SS`.
    pub local: String,
}

pub struct Event {
    pub tenant: usize,
    pub body: String,
    pub webhook_id: String,
    pub timestamp: i64,
    pub signature: String,
}

/// What a booking's events may leave in the ledger, worked out from the workload alone.
#[derive(Debug, Default)]
pub struct Expect {
    /// Its events' webhook ids, in the order they were made.
    pub webhook_ids: Vec<String>,
    /// The most price revisions its events can make, whatever order they arrive in: one per
    /// change of price from one event to the next (an older event arriving late is stale, so
    /// the applied events are in order and each revision needs a change between them).
    pub max_revisions: usize,
    /// The most status-history rows: the first applied event's, then one per change of status
    /// or session time from one event to the next.
    pub max_history: usize,
}

pub struct Workload {
    pub events: Vec<Event>,
    /// Indexes into `events`, one per delivery, shuffled.
    pub deliveries: Vec<usize>,
    /// (tenant, booking ref) → the last state.
    pub expected: BTreeMap<(String, String), State>,
    /// (tenant, booking ref) → what its events may leave.
    pub bookings: BTreeMap<(String, String), Expect>,
}

pub fn workload(args: &Args, seed: u64, now: i64) -> anyhow::Result<Workload> {
    let key = SigningKey::parse(SECRET)?;
    let mut rng = Rng(seed);
    let mut events = Vec::new();
    let mut expected = BTreeMap::new();
    let mut bookings = BTreeMap::new();
    // Every event of a booking is older than the next by a second, and all are within ingest's
    // five-minute signature window while a scenario's deliveries last (about 30 s here; a
    // workload that takes longer than four minutes to send would see stale refusals).
    let base = now - 30;
    for t in 1..=args.tenants {
        for b in 1..=args.bookings {
            let booking = format!("{t:02}{b:05}");
            let day = 1 + rng.below(31);
            let hour = 8 + rng.below(11);
            let price = Decimal::new(5_000 + i64::try_from(rng.below(20_000))?, 2);
            let mut states = vec![State {
                status: "confirmed",
                price,
                local: format!("2026-10-{day:02} {hour:02}:00:00"),
            }];
            // A third change price or time; one in seven is cancelled in the end.
            if rng.below(3) == 0 {
                let mut changed = states[0].clone();
                if rng.below(2) == 0 {
                    changed.price = Decimal::new(5_000 + i64::try_from(rng.below(20_000))?, 2);
                } else {
                    changed.local = format!("2026-10-{day:02} {:02}:30:00", 8 + rng.below(11));
                }
                states.push(changed);
            }
            if rng.below(7) == 0 {
                let mut cancelled = states[states.len() - 1].clone();
                cancelled.status = "cancelled";
                states.push(cancelled);
            }
            let mut expect = Expect {
                max_history: 1,
                ..Default::default()
            };
            for pair in states.windows(2) {
                expect.max_revisions += usize::from(pair[0].price != pair[1].price);
                expect.max_history +=
                    usize::from(pair[0].status != pair[1].status || pair[0].local != pair[1].local);
            }
            for (seq, state) in states.iter().enumerate() {
                let body = format!(
                    r#"{{"booking_id":"{booking}","booking_hash":"h{booking}","status":"{}","price":"{}","currency":"AUD","datetime":"{}","service":{{"id":"7","name":"Remedial massage"}}}}"#,
                    state.status, state.price, state.local
                );
                let webhook_id = format!("fault-{seed}-{booking}-{seq}");
                let timestamp = base + i64::try_from(seq)?;
                let signature = key.sign(&webhook_id, timestamp, body.as_bytes());
                expect.webhook_ids.push(webhook_id.clone());
                events.push(Event {
                    tenant: t,
                    body,
                    webhook_id,
                    timestamp,
                    signature,
                });
            }
            let last = states.pop().context("a booking has a state")?;
            bookings.insert((tenant_id(t), booking.clone()), expect);
            expected.insert((tenant_id(t), booking), last);
        }
    }
    let mut deliveries = Vec::new();
    for i in 0..events.len() {
        for _ in 0..=rng.below(3) {
            deliveries.push(i);
        }
    }
    for i in (1..deliveries.len()).rev() {
        let j = usize::try_from(rng.below(u64::try_from(i)? + 1))?;
        deliveries.swap(i, j);
    }
    Ok(Workload {
        events,
        deliveries,
        expected,
        bookings,
    })
}

/// The fee subtotal each tenant's October invoice must show, worked out here in whole cents
/// (20%, half a cent rounded up) rather than with the domain code under test.
pub fn expected_subtotals(
    expected: &BTreeMap<(String, String), State>,
) -> anyhow::Result<BTreeMap<String, Decimal>> {
    let mut cents: BTreeMap<String, i64> = BTreeMap::new();
    for ((tenant, _), state) in expected {
        if state.status == "cancelled" {
            continue;
        }
        let in_cents = state.price * Decimal::ONE_HUNDRED;
        anyhow::ensure!(in_cents.fract().is_zero(), "prices are whole cents");
        let price_cents: i64 = in_cents.normalize().to_string().parse()?;
        *cents.entry(tenant.clone()).or_default() += (price_cents * 20 + 50) / 100;
    }
    Ok(cents
        .into_iter()
        .map(|(t, c)| (t, Decimal::new(c, 2)))
        .collect())
}
