//! Properties of the plan over generated histories: however the events of a history are
//! delivered — in any order, any of them repeated, cut into batches anywhere — the ledger ends
//! with the same bookings, statuses and amounts: those of each booking's newest event, split by
//! its tenant's rates, on chains that verify.
//!
//! The histories are the ones the rules are meant to converge on: every event of a booking at
//! its own instant (two events of the same second apply in the order received, by design), all
//! priced by SimplyBook's own price (not the service's list price), and each booking's events
//! either all carrying a Status-feature label or none. `known_divergence_*` below show, with
//! the smallest failing case, what happens outside that.

use std::collections::BTreeMap;

use billing_domain::BookingStatus::{self, Cancelled, Completed, Confirmed, NoShow, Pending};
use billing_domain::{BookingAmounts, Tenants};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::testkit::{Model, Says, at, event, tenants};
use crate::incoming::NewBooking;
use crate::outcome::{Applied, Outcome};

/// Tenant settings the histories are drawn from: (currency, deposit rate, fee rate).
const SETTINGS: [(&str, &str, &str); 5] = [
    ("AUD", "0.20", "0.20"),
    ("AUD", "0.15", "0.125"),
    ("AUD", "0.33", "0.125"),
    ("JPY", "0.33", "0.15"),
    ("BHD", "0.125", "0.33"),
];
const TENANTS: [&str; 2] = ["claire", "kenji"];
const BOOKINGS: usize = 3;
const STATUSES: [BookingStatus; 5] = [Pending, Confirmed, Cancelled, Completed, NoShow];
const LABELS: [&str; 2] = ["Arrived", "Paid at the desk"];
/// Prices in minor units: each splits to half a minor unit at one of the rates above (10 × 15%,
/// 4 × 12.5%, 50 × 33%, 1010 × 15%, 15050 × 33%, …), and few, so bookings return to a price.
const PRICES: [i64; 7] = [1, 4, 10, 49, 50, 1010, 15050];

/// One event of a history, as generated.
#[derive(Debug, Clone)]
struct Step {
    tenant: usize,
    booking: usize,
    status: usize,
    /// The price in the currency's minor units.
    minor: i64,
    session: u32,
    service: u32,
    label: usize,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0..TENANTS.len(),
        0..BOOKINGS,
        0..STATUSES.len(),
        prop::sample::select(PRICES.to_vec()),
        0u32..3,
        0u32..2,
        0..LABELS.len(),
    )
        .prop_map(
            |(tenant, booking, status, minor, session, service, label)| Step {
                tenant,
                booking,
                status,
                minor,
                session,
                service,
                label,
            },
        )
}

/// A history and one way of delivering it.
#[derive(Debug, Clone)]
struct Case {
    /// Each tenant's settings (an index into [`SETTINGS`]).
    settings: [usize; 2],
    /// Per (tenant, booking): whether its events carry a label.
    labelled: Vec<bool>,
    /// Event `i` is `e{i}`, true as of second `10 * i`.
    steps: Vec<Step>,
    /// The order events are delivered in (an index may repeat), and after which deliveries a
    /// batch ends.
    deliveries: Vec<usize>,
    cuts: Vec<bool>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        [0..SETTINGS.len(), 0..SETTINGS.len()],
        prop::collection::vec(any::<bool>(), TENANTS.len() * BOOKINGS),
        prop::collection::vec(step(), 1..14),
        // A step may say again what an earlier one said (a reminder, a resent webhook): a new
        // event, at its own instant, with the same content.
        prop::collection::vec(
            prop::option::weighted(0.3, any::<prop::sample::Index>()),
            14,
        ),
    )
        .prop_map(|(settings, labelled, mut steps, echoes)| {
            for i in 1..steps.len() {
                if let Some(earlier) = echoes[i] {
                    steps[i] = steps[earlier.index(i)].clone();
                }
            }
            (settings, labelled, steps)
        })
        .prop_flat_map(|(settings, labelled, steps)| {
            let n = steps.len();
            let repeats = prop::collection::vec(0..n, 0..=n);
            let deliveries = repeats
                .prop_map(move |extra| (0..n).chain(extra).collect::<Vec<_>>())
                .prop_shuffle();
            (
                Just(settings),
                Just(labelled),
                Just(steps),
                deliveries,
                prop::collection::vec(any::<bool>(), 2 * n),
            )
        })
        .prop_map(|(settings, labelled, steps, deliveries, cuts)| Case {
            settings,
            labelled,
            steps,
            deliveries,
            cuts,
        })
}

impl Case {
    fn tenants(&self) -> Tenants {
        let list: Vec<(&str, &str, &str, &str)> = TENANTS
            .iter()
            .zip(self.settings)
            .map(|(id, s)| {
                let (currency, deposit, fee) = SETTINGS[s];
                (*id, currency, deposit, fee)
            })
            .collect();
        tenants(&list)
    }

    /// Event `i` of the history.
    fn event(&self, tenants: &Tenants, i: usize) -> NewBooking {
        let s = &self.steps[i];
        let tenant = TENANTS[s.tenant];
        let currency = tenants.get(tenant).expect("tenant").currency;
        let labelled = self.labelled[s.tenant * BOOKINGS + s.booking];
        let says = Says {
            status: STATUSES[s.status],
            price: Decimal::new(s.minor, currency.exponent()),
            session: s.session,
            service: s.service,
            label: labelled.then(|| LABELS[s.label].to_string()),
        };
        let as_of = at(10 * i64::try_from(i).expect("small"));
        event(
            tenants,
            tenant,
            &format!("e{i}"),
            &format!("b{}", s.booking),
            as_of,
            &says,
        )
    }

    /// The deliveries, cut into batches.
    fn batches(&self, tenants: &Tenants) -> Vec<Vec<NewBooking>> {
        let mut batches = vec![Vec::new()];
        for (k, &i) in self.deliveries.iter().enumerate() {
            batches
                .last_mut()
                .expect("a batch")
                .push(self.event(tenants, i));
            if self.cuts[k] {
                batches.push(Vec::new());
            }
        }
        batches
    }
}

/// What must be the same however a history is delivered.
type Final = BTreeMap<(String, String), [String; 9]>;

fn final_state(model: &Model) -> Final {
    model
        .bookings()
        .into_iter()
        .map(|(key, c)| {
            let state = [
                c.status,
                c.session_at.to_rfc3339(),
                format!("{:?} {}", c.service_id, c.service_name),
                format!("{:?}", c.status_label),
                c.currency,
                format!("{} {}", c.deposit_rate, c.platform_fee_rate),
                format!("{} {}", c.total_amount, c.deposit_amount),
                format!("{} {}", c.cash_amount, c.platform_fee),
                format!("{:?}", c.state_as_of),
            ];
            (key, state)
        })
        .collect()
}

/// The state the rules promise: each booking as its newest event says, split by its tenant's
/// rates.
fn expected(case: &Case, tenants: &Tenants) -> Final {
    let mut newest: BTreeMap<(String, String), NewBooking> = BTreeMap::new();
    for i in 0..case.steps.len() {
        let e = case.event(tenants, i);
        newest.insert((e.tenant_id.clone(), e.booking_ref.clone()), e);
    }
    newest
        .into_iter()
        .map(|(key, e)| {
            let t = tenants.get(&e.tenant_id).expect("tenant");
            let split = BookingAmounts::split(
                e.amounts.total,
                e.currency,
                t.deposit_rate,
                t.platform_fee_rate,
            )
            .expect("split");
            let rates = (t.deposit_rate.value(), t.platform_fee_rate.value());
            let state = [
                e.status.as_str().to_string(),
                e.session_at.to_rfc3339(),
                format!("{:?} {}", e.service_id, e.service_name),
                format!("{:?}", e.status_label),
                e.currency.code().to_string(),
                format!("{} {}", rates.0, rates.1),
                format!("{} {}", split.total, split.deposit),
                format!("{} {}", split.cash, split.platform_fee),
                format!("{:?}", Some(e.as_of)),
            ];
            (key, state)
        })
        .collect()
}

proptest! {
    // A failing case is shrunk and printed; it is kept as a named test (see plan_tests), not in
    // a seed file.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_order_and_any_repetition_of_a_history_ends_in_the_same_bookings(case in case()) {
        let tenants = case.tenants();
        let batches = case.batches(&tenants);
        let mut model = Model::default();
        let outcomes = model.play(&batches, None);

        prop_assert_eq!(final_state(&model), expected(&case, &tenants));
        prop_assert_eq!(model.verify(None), Ok(()));
        // Each event is applied once; every other delivery of it is a duplicate by its id.
        let by_id = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Applied(Applied::Duplicate, None)))
            .count();
        prop_assert_eq!(outcomes.len(), case.deliveries.len());
        prop_assert_eq!(by_id, case.deliveries.len() - case.steps.len());
    }
}

/// The booking each delivery order of `history` ends with: (status, total, label).
fn ends(history: &[NewBooking]) -> Vec<(String, Decimal, Option<String>)> {
    let orders = [history.to_vec(), history.iter().rev().cloned().collect()];
    orders
        .into_iter()
        .map(|events| {
            let mut model = Model::default();
            model.play(&[events], None);
            let (_, b) = model.bookings().pop_first().expect("a booking");
            (b.status, b.total_amount, b.status_label)
        })
        .collect()
}

#[test]
#[ignore = "known divergence: a booking keeps a Status-feature label only if the labelled \
            event is recorded before a newer unlabelled one (needs the label's as-of)"]
fn known_divergence_a_label_followed_by_a_newer_event_without_one() {
    let t = tenants(&[("claire", "AUD", "0.20", "0.20")]);
    let labelled = Says {
        label: Some("Arrived".into()),
        ..Says::new(Confirmed, "150.00")
    };
    // SimplyBook's details with the label, then a signed payload (never labelled) saying the
    // same status 10 s later. In time order the label stays; the other way round the payload
    // is recorded first and the labelled event is stale.
    let history = [
        event(&t, "claire", "e0", "101", at(0), &labelled),
        event(
            &t,
            "claire",
            "e1",
            "101",
            at(10),
            &Says::new(Confirmed, "150.00"),
        ),
    ];
    let [in_time, reversed] = <[_; 2]>::try_from(ends(&history)).expect("two");
    assert_eq!(in_time.2.as_deref(), Some("Arrived"));
    assert_eq!(reversed, in_time, "the label depends on the delivery order");
}

#[test]
#[ignore = "known divergence: a booking valued by the service's list price keeps the price of \
            whichever event is recorded first, not the oldest (needs the value's as-of)"]
fn known_divergence_list_prices_follow_the_recording_order() {
    let t = tenants(&[("claire", "AUD", "0.20", "0.20")]);
    let listed = |id: &str, secs, price: &str| {
        let mut e = event(
            &t,
            "claire",
            id,
            "101",
            at(secs),
            &Says::new(Confirmed, price),
        );
        e.priced_from_service = true;
        e
    };
    // The service's list price was 100.00 when the booking was made and 120.00 ten seconds
    // later. In time order the booking is worth 100.00 (a later list price never re-prices);
    // the other way round the 120.00 event is recorded first and the 100.00 one is stale.
    let history = [listed("e0", 0, "100.00"), listed("e1", 10, "120.00")];
    let [in_time, reversed] = <[_; 2]>::try_from(ends(&history)).expect("two");
    assert_eq!(in_time.1, Decimal::new(10000, 2));
    assert_eq!(reversed, in_time, "the value depends on the delivery order");
}
