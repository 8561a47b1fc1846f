//! What a batch records around its bookings: each tenant's chain (positions, links, heads, the
//! key), the `ledger.booking.*` events for the outbox, and the audit log.

use std::collections::HashMap;

use billing_domain::BookingStatus::{Cancelled, Confirmed};
use billing_domain::hash::{ChainKey, GENESIS_HASH};

use super::testkit::{Ids, Model, Says, applied, at, event, numbered, plan_of, tenants};
use crate::batch::plan::{Head, next_link};
use crate::outcome::Applied;

#[test]
fn the_chain_continues_from_the_locked_head() {
    let head = |seq, hash: &str| Head {
        seq,
        hash: hash.to_string(),
    };
    let chain = HashMap::from([("claire".to_string(), head(4, "h4"))]);
    assert_eq!(next_link(&chain, "claire"), (5, "h4".to_string()));
    assert_eq!(next_link(&chain, "kenji"), (1, GENESIS_HASH.to_string()));
}

#[test]
fn each_tenants_records_take_consecutive_positions_linked_to_the_one_before() {
    let t = tenants(&[
        ("claire", "AUD", "0.20", "0.20"),
        ("kenji", "JPY", "0.15", "0.33"),
    ]);
    let says = Says::new(Confirmed, "150.00");
    let yen = Says::new(Confirmed, "1010");
    let events = numbered(&[
        event(&t, "claire", "c1", "A", at(0), &says),
        event(&t, "kenji", "k1", "X", at(0), &yen),
        event(
            &t,
            "claire",
            "c2",
            "A",
            at(1),
            &Says::new(Confirmed, "160.00"),
        ),
        event(&t, "claire", "c3", "B", at(1), &says),
        event(&t, "kenji", "k2", "X", at(1), &Says::new(Cancelled, "1010")),
    ]);
    let mut model = Model::default();
    let mut loaded = model.load(&events);
    let h4 = Head {
        seq: 4,
        hash: "h4".into(),
    };
    loaded.heads.insert("claire".into(), h4);
    let plan = plan_of(&events, loaded, None, &mut Ids::new());
    let w = &plan.writes;
    let positions: Vec<(&str, i64, &str)> = w
        .bookings
        .iter()
        .map(|b| {
            (
                b.booking.booking_ref.as_str(),
                b.chain_seq,
                b.prev_hash.as_str(),
            )
        })
        .collect();
    let a = &w.bookings[0].record_hash;
    let revision = &w.revisions[0];
    assert_eq!(
        positions,
        [
            ("A", 5, "h4"),
            ("X", 1, GENESIS_HASH),
            ("B", 7, revision.record_hash.as_str())
        ]
    );
    assert_eq!((revision.chain_seq, &revision.prev_hash), (6, a));
    let heads: Vec<(&str, i64, &str)> = w
        .heads
        .iter()
        .map(|(t, h)| (t.as_str(), h.seq, h.hash.as_str()))
        .collect();
    let (b, x) = (&w.bookings[2].record_hash, &w.bookings[1].record_hash);
    assert_eq!(heads, [("claire", 7, b.as_str()), ("kenji", 1, x.as_str())]);

    // A batch that only changes states leaves the heads as they are.
    let mut model = Model::default();
    model.play(&[vec![events[1].0.clone()]], None);
    let only_change = numbered(&[events[4].0.clone()]);
    let loaded = model.load(&only_change);
    let plan = plan_of(&only_change, loaded, None, &mut Ids::new());
    assert!(plan.writes.heads.is_empty());
}

#[test]
fn a_keyed_chain_verifies_only_with_its_key() {
    let t = tenants(&[("claire", "AUD", "0.33", "0.15")]);
    let key = ChainKey::new(vec![7; 32]).expect("key");
    let mut model = Model::default();
    model.play(
        &[vec![
            event(
                &t,
                "claire",
                "e1",
                "101",
                at(0),
                &Says::new(Confirmed, "0.49"),
            ),
            event(
                &t,
                "claire",
                "e2",
                "101",
                at(1),
                &Says::new(Confirmed, "0.50"),
            ),
        ]],
        Some(&key),
    );
    model.verify(Some(&key)).expect("keyed");
    assert!(model.verify(None).is_err(), "not as an unkeyed chain");
}

#[test]
fn each_change_is_announced_once_with_the_booking_as_it_then_stood() {
    let t = tenants(&[("kenji", "JPY", "0.15", "0.33")]);
    let e = |id: &str, as_of, says: Says| {
        let mut b = event(&t, "kenji", id, "7", at(as_of), &says);
        b.traceparent = Some(format!("trace-{id}"));
        b
    };
    let events = numbered(&[
        e("e1", 0, Says::new(Confirmed, "1000")),
        e("e2", 2, Says::new(Confirmed, "1010")),
        e("e3", 1, Says::new(Cancelled, "1010")),
        e("e4", 3, Says::new(Cancelled, "1010")),
        e("e5", 4, Says::new(Cancelled, "1010")),
        e("e6", 5, Says::new(Confirmed, "1010")),
    ]);
    let loaded = Model::default().load(&events);
    let plan = plan_of(&events, loaded, None, &mut Ids::new());
    let kinds: Vec<Applied> = applied(&plan.outcomes)
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    use Applied::*;
    let expected = [
        Stored,
        Revised,
        Stale,
        StatusChanged,
        Duplicate,
        StatusChanged,
    ];
    assert_eq!(kinds, expected);
    let announced: Vec<[String; 6]> = plan
        .writes
        .outbox
        .iter()
        .map(|o| {
            let money = |m: &Option<billing_proto::Money>| {
                m.as_ref().map(|m| m.amount.clone()).unwrap_or_default()
            };
            [
                o.event.kind.clone(),
                o.message_id.clone(),
                format!("{} {}", o.event.status, o.event.revision),
                money(&o.event.total),
                money(&o.event.platform_fee),
                o.traceparent.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let row = |cells: [&str; 6]| cells.map(str::to_string);
    assert_eq!(
        announced,
        [
            row([
                "recorded",
                "ledger:e1",
                "confirmed 0",
                "1000",
                "330",
                "trace-e1"
            ]),
            row([
                "revised",
                "ledger:e2",
                "confirmed 1",
                "1010",
                "333",
                "trace-e2"
            ]),
            row([
                "changed",
                "ledger:e4",
                "cancelled 1",
                "1010",
                "333",
                "trace-e4"
            ]),
            row([
                "changed",
                "ledger:e6",
                "confirmed 1",
                "1010",
                "333",
                "trace-e6"
            ]),
        ],
        "nothing for a stale or duplicate event"
    );
}

#[test]
fn the_audit_names_each_outcome_and_keeps_the_events_note() {
    let t = tenants(&[("claire", "AUD", "0.20", "0.20")]);
    let mut repair = event(
        &t,
        "claire",
        "r1",
        "101",
        at(0),
        &Says::new(Confirmed, "150.00"),
    );
    repair.note = Some("repair: reconciliation".into());
    let mut again = event(
        &t,
        "claire",
        "r2",
        "101",
        at(1),
        &Says::new(Confirmed, "150.00"),
    );
    again.note = Some("repair: reconciliation".into());
    let events: Vec<_> = [repair, again].into_iter().zip([41, 42]).collect();
    let loaded = Model::default().load(&events);
    let plan = plan_of(&events, loaded, None, &mut Ids::new());
    let audit: Vec<(&str, &str, Option<&str>, i64)> = plan
        .writes
        .audit
        .iter()
        .map(|a| {
            (
                a.event_id.as_str(),
                a.outcome.as_str(),
                a.reason.as_deref(),
                a.stream_seq,
            )
        })
        .collect();
    assert_eq!(
        audit,
        [
            ("r1", "stored", Some("repair: reconciliation"), 41),
            ("r2", "duplicate", Some("booking already in this state"), 42),
        ]
    );
}
