//! The state rules: staleness, what each kind of event does to a recorded booking, and
//! duplicates (by event id, within a batch and across batches, and by content).

use billing_domain::BookingStatus::{Cancelled, Completed, Confirmed};

use super::testkit::{Ids, Model, Says, applied, at, d, event, numbered, plan_of, tenants};
use crate::incoming::NewBooking;
use crate::outcome::{Applied, Outcome};

/// (case, the recorded booking's label, what the event says, whether its price is the list's,
/// what it does: see [`one_change`]).
type ChangeCase = (
    &'static str,
    Option<&'static str>,
    Says,
    bool,
    [&'static str; 7],
);
/// (case, the batches, the last batch's outcomes: `None` for a refusal).
type DuplicateCase = (
    &'static str,
    Vec<Vec<NewBooking>>,
    Vec<Option<(Applied, bool)>>,
);

#[test]
fn staleness_is_decided_by_when_the_state_was_true() {
    let t = tenants(&[("claire", "AUD", "0.20", "0.20")]);
    // (recorded state's as-of, the event's as-of, outcome): the same second counts as newer.
    let cases = [
        (Some(100), 99, Applied::Stale),
        (Some(100), 100, Applied::StatusChanged),
        (Some(100), 101, Applied::StatusChanged),
        (None, 0, Applied::StatusChanged),
    ];
    for (recorded, as_of, expected) in cases {
        let case = format!("recorded {recorded:?}, event {as_of}");
        let first = event(
            &t,
            "claire",
            "e1",
            "101",
            at(0),
            &Says::new(Confirmed, "150.00"),
        );
        let mut model = Model::default();
        model.play(&[vec![first]], None);
        let cancel = event(
            &t,
            "claire",
            "e2",
            "101",
            at(as_of),
            &Says::new(Cancelled, "150.00"),
        );
        let events = numbered(&[cancel]);
        let mut loaded = model.load(&events);
        for current in loaded.bookings.values_mut() {
            current.state_as_of = recorded.map(at);
        }
        let plan = plan_of(&events, loaded, None, &mut Ids::new());
        assert_eq!(applied(&plan.outcomes), [(expected, true)], "{case}");
        let w = &plan.writes;
        let reason = w.audit[0].reason.as_deref();
        if expected == Applied::Stale {
            assert_eq!(
                reason,
                Some("older than the booking's recorded state"),
                "{case}"
            );
            assert!(w.states.is_empty() && w.history.is_empty() && w.outbox.is_empty());
        } else {
            assert_eq!(w.states[0].status, "cancelled", "{case}");
            assert_eq!(w.states[0].state_as_of, Some(at(as_of)), "{case}");
        }
    }
}

/// A recorded booking (confirmed, 150.00, session 0, service 0, `label`, as of 0) and what one
/// event as of 10 does to it: (outcome, history rows, revisions, state written, status, total,
/// label). The state is written for a duplicate too: it is now known as of 10.
fn one_change(label: Option<&str>, event_says: &Says, from_list: bool) -> [String; 7] {
    let t = tenants(&[("claire", "AUD", "0.20", "0.20")]);
    let recorded = Says {
        label: label.map(str::to_string),
        ..Says::new(Confirmed, "150.00")
    };
    let mut model = Model::default();
    model.play(
        &[vec![event(&t, "claire", "e1", "101", at(0), &recorded)]],
        None,
    );
    let mut e = event(&t, "claire", "e2", "101", at(10), event_says);
    e.priced_from_service = from_list;
    let events = numbered(&[e]);
    let loaded = model.load(&events);
    let plan = plan_of(&events, loaded, None, &mut Ids::new());
    let w = &plan.writes;
    let (outcome, _) = applied(&plan.outcomes)[0];
    model.write(&plan);
    let now = &model.bookings()[&("claire".into(), "101".into())];
    [
        outcome.as_str().to_string(),
        w.history.len().to_string(),
        w.revisions.len().to_string(),
        (!w.states.is_empty()).to_string(),
        now.status.clone(),
        now.total_amount.to_string(),
        format!("{:?}", now.status_label),
    ]
}

#[test]
fn what_each_kind_of_event_does_to_a_recorded_booking() {
    let says = |f: &dyn Fn(&mut Says)| {
        let mut s = Says::new(Confirmed, "150.00");
        f(&mut s);
        s
    };
    let arrived = Some("Arrived");
    let cases: [ChangeCase; 12] = [
        (
            "the same state",
            None,
            says(&|_| {}),
            false,
            ["duplicate", "0", "0", "true", "confirmed", "150.00", "None"],
        ),
        (
            "a new status",
            None,
            says(&|s| s.status = Cancelled),
            false,
            [
                "status_changed",
                "1",
                "0",
                "true",
                "cancelled",
                "150.00",
                "None",
            ],
        ),
        (
            "a new session time",
            None,
            says(&|s| s.session = 1),
            false,
            [
                "status_changed",
                "1",
                "0",
                "true",
                "confirmed",
                "150.00",
                "None",
            ],
        ),
        (
            "another service",
            None,
            says(&|s| s.service = 1),
            false,
            [
                "status_changed",
                "1",
                "0",
                "true",
                "confirmed",
                "150.00",
                "None",
            ],
        ),
        (
            "a label where there was none",
            None,
            says(&|s| s.label = Some("Arrived".into())),
            false,
            [
                "status_changed",
                "1",
                "0",
                "true",
                "confirmed",
                "150.00",
                "Some(\"Arrived\")",
            ],
        ),
        (
            "no label, same status: the label stays",
            arrived,
            says(&|_| {}),
            false,
            [
                "duplicate",
                "0",
                "0",
                "true",
                "confirmed",
                "150.00",
                "Some(\"Arrived\")",
            ],
        ),
        (
            "no label, a new status: the label goes",
            arrived,
            says(&|s| s.status = Cancelled),
            false,
            [
                "status_changed",
                "1",
                "0",
                "true",
                "cancelled",
                "150.00",
                "None",
            ],
        ),
        (
            "a new price",
            None,
            says(&|s| s.price = d("160.00")),
            false,
            ["revised", "0", "1", "true", "confirmed", "160.00", "None"],
        ),
        (
            "a new price and status",
            None,
            says(&|s| {
                s.price = d("160.00");
                s.status = Cancelled;
            }),
            false,
            ["revised", "1", "1", "true", "cancelled", "160.00", "None"],
        ),
        (
            "the same price at another scale",
            None,
            says(&|s| s.price = d("150")),
            false,
            ["duplicate", "0", "0", "true", "confirmed", "150.00", "None"],
        ),
        (
            "a new list price: not re-priced",
            None,
            says(&|s| s.price = d("160.00")),
            true,
            ["duplicate", "0", "0", "true", "confirmed", "150.00", "None"],
        ),
        (
            "a new list price and status: only the status",
            None,
            says(&|s| {
                s.price = d("160.00");
                s.status = Cancelled;
            }),
            true,
            [
                "status_changed",
                "1",
                "0",
                "true",
                "cancelled",
                "150.00",
                "None",
            ],
        ),
    ];
    for (case, label, event_says, from_list, expected) in cases {
        assert_eq!(
            one_change(label, &event_says, from_list),
            expected,
            "{case}"
        );
    }
}

#[test]
fn a_repeated_state_is_known_as_of_the_repeat_so_an_older_event_after_it_is_stale() {
    // The property test's case: e4 says again what e0 said, and e1, older than e4, comes last.
    // e4 used to leave the booking's as-of at e0's, so e1 was applied over the newer state.
    let t = tenants(&[("claire", "AUD", "0.20", "0.20")]);
    let completed = Says::new(Completed, "0.49");
    let cancelled = Says {
        session: 1,
        ..Says::new(Cancelled, "0.01")
    };
    let e0 = event(&t, "claire", "e0", "b0", at(0), &completed);
    let e1 = event(&t, "claire", "e1", "b0", at(10), &cancelled);
    let e4 = event(&t, "claire", "e4", "b0", at(40), &completed);
    let in_time = vec![vec![e0.clone(), e1.clone(), e4.clone()]];
    let one_batch = vec![vec![e0.clone(), e4.clone(), e1.clone()]];
    let three_batches = vec![vec![e0.clone()], vec![e4.clone()], vec![e1.clone()]];
    for batches in [in_time, one_batch, three_batches] {
        let mut model = Model::default();
        let outcomes = model.play(&batches, None);
        let booking = &model.bookings()[&("claire".into(), "b0".into())];
        // In time order e1 re-prices and e4 re-prices back: the chain differs, the booking not.
        let state = (
            booking.status.as_str(),
            booking.total_amount,
            booking.session_at,
        );
        let session = e0.session_at;
        assert_eq!(state, ("completed", d("0.49"), session), "{outcomes:?}");
        assert_eq!(booking.state_as_of, Some(at(40)));
    }
    let late = [vec![e0.clone()], vec![e4.clone()], vec![e1.clone()]];
    let outcomes = Model::default().play(&late, None);
    let kinds = [Applied::Stored, Applied::Duplicate, Applied::Stale];
    assert_eq!(applied(&outcomes), kinds.map(|a| (a, true)));
}

#[test]
fn an_event_already_processed_or_repeated_in_its_batch_counts_once() {
    let t = tenants(&[("claire", "AUD", "0.20", "0.20")]);
    let jpy = tenants(&[("claire", "JPY", "0.20", "0.20")]);
    let e = |id: &str, as_of| {
        event(
            &t,
            "claire",
            id,
            "101",
            at(as_of),
            &Says::new(Confirmed, "150.00"),
        )
    };
    let refused = event(
        &jpy,
        "claire",
        "e9",
        "101",
        at(5),
        &Says::new(Confirmed, "150"),
    );
    let stored = (Applied::Stored, true);
    let by_id = (Applied::Duplicate, false);
    let by_content = (Applied::Duplicate, true);
    let cases: [DuplicateCase; 5] = [
        (
            "processed before",
            vec![vec![e("e1", 0)], vec![e("e1", 0)]],
            vec![Some(by_id)],
        ),
        (
            "twice in a batch",
            vec![vec![e("e1", 0), e("e1", 0)]],
            vec![Some(stored), Some(by_id)],
        ),
        (
            "three times",
            vec![vec![e("e1", 0), e("e1", 0), e("e1", 0)]],
            vec![Some(stored), Some(by_id), Some(by_id)],
        ),
        (
            "another event saying the same",
            vec![vec![e("e1", 0), e("e2", 1)]],
            vec![Some(stored), Some(by_content)],
        ),
        (
            "a refused event repeated",
            vec![vec![e("e1", 0)], vec![refused.clone(), refused.clone()]],
            vec![None, Some(by_id)],
        ),
    ];
    for (case, batches, expected) in cases {
        let mut model = Model::default();
        let (last, earlier) = batches.split_last().expect("a batch");
        model.play(earlier, None);
        let events = numbered(last);
        let loaded = model.load(&events);
        let plan = plan_of(&events, loaded, None, &mut Ids::new());
        let got: Vec<Option<(Applied, bool)>> = plan
            .outcomes
            .iter()
            .map(|o| match o {
                Outcome::Applied(a, id) => Some((*a, id.is_some())),
                Outcome::Rejected(_) => None,
            })
            .collect();
        assert_eq!(got, expected, "{case}");
        let reasons: Vec<Option<&str>> = plan
            .writes
            .audit
            .iter()
            .map(|a| a.reason.as_deref())
            .collect();
        for (o, reason) in got.iter().flatten().zip(&reasons) {
            let want = match o {
                (Applied::Duplicate, false) => Some("event already processed"),
                (Applied::Duplicate, true) => Some("booking already in this state"),
                _ => None,
            };
            assert_eq!(*reason, want, "{case}");
        }
        assert_eq!(
            plan.writes.bookings.len(),
            usize::from(got.first() == Some(&Some(stored)))
        );
    }
}
