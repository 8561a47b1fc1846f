//! The money rules: a new booking's split at its tenant's rates (half a minor unit rounds up),
//! a price revision split by the rates snapshotted on the booking, a currency change refused.

use billing_domain::BookingAmounts;
use billing_domain::BookingStatus::{Cancelled, Confirmed};
use billing_domain::hash::{FinancialFields, GENESIS_HASH};

use super::testkit::{
    Ids, Model, Says, amounts, applied, at, d, event, numbered, plan_of, tenants,
};
use crate::integrity::Fields;
use crate::outcome::{Applied, Outcome};

#[test]
fn a_new_booking_is_recorded_with_its_tenants_split_rounded_half_up() {
    // (currency, deposit rate, fee rate, price, deposit, cash, fee): half a minor unit rounds up.
    let cases = [
        ("AUD", "0.20", "0.20", "10.01", "2.00", "8.01", "2.00"),
        ("AUD", "0.15", "0.125", "10.10", "1.52", "8.58", "1.26"),
        ("AUD", "0.15", "0.125", "0.10", "0.02", "0.08", "0.01"),
        ("AUD", "0.125", "0.33", "10.20", "1.28", "8.92", "3.37"),
        ("AUD", "0.125", "0.33", "0.04", "0.01", "0.03", "0.01"),
        ("AUD", "0.33", "0.15", "0.50", "0.17", "0.33", "0.08"),
        ("AUD", "0.33", "0.15", "150.50", "49.67", "100.83", "22.58"),
        ("JPY", "0.15", "0.33", "1010", "152", "858", "333"),
        ("JPY", "0.33", "0.125", "1050", "347", "703", "131"),
        ("BHD", "0.125", "0.33", "1.004", "0.126", "0.878", "0.331"),
    ];
    for (currency, deposit_rate, fee_rate, price, deposit, cash, fee) in cases {
        let case = format!("{price} {currency} at {deposit_rate}/{fee_rate}");
        let t = tenants(&[("claire", currency, deposit_rate, fee_rate)]);
        let e = event(
            &t,
            "claire",
            "e1",
            "101",
            at(0),
            &Says::new(Confirmed, price),
        );
        let events = numbered(&[e]);
        let mut model = Model::default();
        let loaded = model.load(&events);
        let plan = plan_of(&events, loaded, None, &mut Ids::new());
        assert_eq!(applied(&plan.outcomes), [(Applied::Stored, true)], "{case}");
        let [insert] = plan.writes.bookings.as_slice() else {
            panic!("{case}: one booking");
        };
        let b = insert.booking;
        assert_eq!(b.amounts, amounts(price, deposit, cash, fee), "{case}");
        assert_eq!(
            b.amounts.deposit + b.amounts.cash,
            b.amounts.total,
            "{case}"
        );
        let rates = (b.deposit_rate.value(), b.fee_rate.value());
        assert_eq!(rates, (d(deposit_rate), d(fee_rate)), "{case}: snapshotted");
        assert_eq!(
            (insert.chain_seq, insert.prev_hash.as_str()),
            (1, GENESIS_HASH)
        );
        let expected_hash = FinancialFields {
            tenant_id: "claire",
            booking_ref: "101",
            currency: b.currency,
            total: d(price),
            deposit: d(deposit),
            cash: d(cash),
            platform_fee: d(fee),
            deposit_rate: d(deposit_rate),
            fee_rate: d(fee_rate),
            client_digest: Some(""),
        }
        .chained_hash_with(GENESIS_HASH, None);
        assert_eq!(insert.record_hash, expected_hash, "{case}");
        assert_eq!(plan.writes.history.len(), 1, "{case}: its first state");
        assert!(
            plan.writes.states.is_empty(),
            "{case}: inserted, not updated"
        );
        model.write(&plan);
        model.verify(None).expect(&case);
    }
}

#[test]
fn a_price_change_is_a_revision_split_by_the_rates_snapshotted_on_the_booking() {
    // (currency, rates when recorded, first price, the tenant's rates at the change, new price,
    // after: deposit, cash, fee; delta: total, deposit, cash, fee)
    let cases = [
        (
            "AUD",
            ("0.20", "0.20"),
            "100.00",
            ("0.15", "0.125"),
            "10.10",
            ("2.02", "8.08", "2.02"),
            ("-89.90", "-17.98", "-71.92", "-17.98"),
        ),
        (
            "AUD",
            ("0.15", "0.125"),
            "10.00",
            ("0.20", "0.20"),
            "10.10",
            ("1.52", "8.58", "1.26"),
            ("0.10", "0.02", "0.08", "0.01"),
        ),
        (
            "AUD",
            ("0.33", "0.15"),
            "0.49",
            ("0.20", "0.20"),
            "0.50",
            ("0.17", "0.33", "0.08"),
            ("0.01", "0.01", "0.00", "0.01"),
        ),
        (
            "JPY",
            ("0.15", "0.33"),
            "1000",
            ("0.20", "0.20"),
            "1010",
            ("152", "858", "333"),
            ("10", "2", "8", "3"),
        ),
        (
            "BHD",
            ("0.125", "0.33"),
            "1.000",
            ("0.50", "0.50"),
            "1.004",
            ("0.126", "0.878", "0.331"),
            ("0.004", "0.001", "0.003", "0.001"),
        ),
    ];
    for (currency, (dep0, fee0), price0, (dep1, fee1), price1, after, delta) in cases {
        let before = tenants(&[("claire", currency, dep0, fee0)]);
        let later = tenants(&[("claire", currency, dep1, fee1)]);
        let first = event(
            &before,
            "claire",
            "e1",
            "101",
            at(0),
            &Says::new(Confirmed, price0),
        );
        let change = event(
            &later,
            "claire",
            "e2",
            "101",
            at(9),
            &Says::new(Confirmed, price1),
        );
        let (deposit, cash, fee) = after;
        let after = amounts(price1, deposit, cash, fee);
        assert_ne!(
            change.amounts, after,
            "{price1}: the tenant's new rates would split it otherwise"
        );
        // The change in a later batch, and in the same batch as the booking.
        for batches in [
            vec![vec![first.clone()], vec![change.clone()]],
            vec![vec![first.clone(), change.clone()]],
        ] {
            let case = format!(
                "{price0} -> {price1} {currency}, {} batch(es)",
                batches.len()
            );
            let mut model = Model::default();
            let outcomes = model.play(&batches, None);
            assert_eq!(
                applied(&outcomes),
                [(Applied::Stored, true), (Applied::Revised, true)],
                "{case}"
            );
            let booking = &model.bookings()[&("claire".into(), "101".into())];
            assert_eq!(booking.revision_no, 1, "{case}");
            let now = BookingAmounts {
                total: booking.total_amount,
                deposit: booking.deposit_amount,
                cash: booking.cash_amount,
                platform_fee: booking.platform_fee,
            };
            assert_eq!(now, after, "{case}");
            let rates = (booking.deposit_rate, booking.platform_fee_rate);
            assert_eq!(
                rates,
                (d(dep0), d(fee0)),
                "{case}: the booking's rates stay"
            );
            let (records, _) = model.chain("claire");
            let Fields::Revision {
                total_delta,
                deposit_delta,
                cash_delta,
                fee_delta,
                ..
            } = records[1].fields
            else {
                panic!("{case}: a revision second");
            };
            let (t, dp, c, f) = delta;
            assert_eq!(
                (total_delta, deposit_delta, cash_delta, fee_delta),
                (d(t), d(dp), d(c), d(f)),
                "{case}"
            );
            model.verify(None).expect(&case);
        }
    }
}

#[test]
fn an_event_in_another_currency_than_its_booking_is_refused_unless_it_is_stale() {
    let aud = tenants(&[("claire", "AUD", "0.20", "0.20")]);
    let jpy = tenants(&[("claire", "JPY", "0.20", "0.20")]);
    // (the event's as-of, outcome): the staleness check comes first.
    for (as_of, refused) in [(10, true), (-10, false)] {
        let mut model = Model::default();
        let first = event(
            &aud,
            "claire",
            "e1",
            "101",
            at(0),
            &Says::new(Confirmed, "150.00"),
        );
        model.play(&[vec![first]], None);
        let later = event(
            &jpy,
            "claire",
            "e2",
            "101",
            at(as_of),
            &Says::new(Cancelled, "150"),
        );
        let events = numbered(&[later]);
        let loaded = model.load(&events);
        let plan = plan_of(&events, loaded, None, &mut Ids::new());
        let w = &plan.writes;
        match &plan.outcomes[..] {
            [Outcome::Rejected(r)] if refused => {
                assert_eq!(r.code, "currency_change");
                assert_eq!(r.message, "booking 101 was recorded in AUD, event says JPY");
                assert_eq!(
                    w.released,
                    ["e2"],
                    "its key is released for the dead letter"
                );
                assert!(w.audit.is_empty(), "the dead-letter path audits it");
            }
            [Outcome::Applied(Applied::Stale, Some(_))] if !refused => {
                assert!(w.released.is_empty());
            }
            other => panic!("as of {as_of}: {other:?}"),
        }
        assert!(w.bookings.is_empty() && w.revisions.is_empty() && w.states.is_empty());
        assert!(w.heads.is_empty() && w.outbox.is_empty());
    }
}
