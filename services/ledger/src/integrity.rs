//! Verifying a tenant's hash chain: every record (booking or price revision) must hash to its
//! stored hash from its stored financial fields, link to the record before it, and the chain
//! head must agree with the last record. The first record that does not is reported.

use billing_domain::Currency;
use billing_domain::hash::{ChainKey, FinancialFields, GENESIS_HASH, RevisionFields};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

/// The financial fields of one chained record, as stored.
#[derive(Debug, Clone)]
pub enum Fields {
    Booking {
        total: Decimal,
        deposit: Decimal,
        cash: Decimal,
        platform_fee: Decimal,
        deposit_rate: Decimal,
        fee_rate: Decimal,
        /// The chained client identity digest; `None` on records that predate it (v1).
        client_digest: Option<String>,
    },
    Revision {
        revision_no: i32,
        total_delta: Decimal,
        deposit_delta: Decimal,
        cash_delta: Decimal,
        fee_delta: Decimal,
        after: Amounts,
        /// The booking's amounts before this revision: the original record's for revision 1,
        /// else revision `revision_no - 1`'s after-amounts; `None` when that record is missing.
        before: Option<Amounts>,
    },
}

/// A booking's amounts at one point of its history (the original record, or after a revision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amounts {
    pub total: Decimal,
    pub deposit: Decimal,
    pub cash: Decimal,
    pub fee: Decimal,
}

#[derive(Debug, Clone)]
pub struct ChainRecord {
    pub chain_seq: i64,
    pub id: Uuid,
    pub booking_ref: String,
    pub currency: String,
    pub fields: Fields,
    pub prev_hash: String,
    pub record_hash: String,
}

impl ChainRecord {
    pub fn kind(&self) -> &'static str {
        match self.fields {
            Fields::Booking { .. } => "booking",
            Fields::Revision { .. } => "revision",
        }
    }

    /// An amount stored finer than the currency's minor unit. Every amount is written at the
    /// currency's exponent and hashed at it, so an edit below it (150.00 → 150.004) would keep
    /// the hash: it is caught here instead.
    fn finer_than_minor_unit(&self) -> Option<Decimal> {
        let currency: Currency = self.currency.trim().parse().ok()?;
        let amounts: Vec<Decimal> = match &self.fields {
            Fields::Booking {
                total,
                deposit,
                cash,
                platform_fee,
                ..
            } => vec![*total, *deposit, *cash, *platform_fee],
            Fields::Revision {
                total_delta,
                deposit_delta,
                cash_delta,
                fee_delta,
                after,
                ..
            } => vec![
                *total_delta,
                *deposit_delta,
                *cash_delta,
                *fee_delta,
                after.total,
                after.deposit,
                after.cash,
                after.fee,
            ],
        };
        amounts.into_iter().find(|a| currency.round(*a) != *a)
    }

    /// A revision's after-amounts that do not follow from the amounts before it and its deltas.
    /// The hash covers the deltas and the total and fee after, not the deposit and cash after
    /// (the encoding is fixed by every stored chain), so those two are held to the hashed values
    /// here: by induction from the booking's hashed original, every after-amount is covered.
    fn unexplained_after_amounts(&self) -> Option<String> {
        let Fields::Revision {
            revision_no,
            total_delta,
            deposit_delta,
            cash_delta,
            fee_delta,
            after,
            before,
        } = &self.fields
        else {
            return None;
        };
        let Some(before) = before else {
            return Some(if *revision_no == 1 {
                "its booking's original record is missing".to_string()
            } else {
                format!("revision {} of its booking is missing", revision_no - 1)
            });
        };
        [
            ("total", before.total, *total_delta, after.total),
            ("deposit", before.deposit, *deposit_delta, after.deposit),
            ("cash", before.cash, *cash_delta, after.cash),
            ("fee", before.fee, *fee_delta, after.fee),
        ]
        .into_iter()
        .find(|(_, before, delta, after)| before + delta != *after)
        .map(|(name, before, delta, after)| {
            format!(
                "{name} after the revision is {after}, but {before} + ({delta}) is {}: changed \
                 outside the chain",
                before + delta
            )
        })
    }

    /// The hash this record should have when chained from `prev_hash`.
    pub(crate) fn expected_hash(
        &self,
        tenant_id: &str,
        prev_hash: &str,
        key: Option<&ChainKey>,
    ) -> Option<String> {
        let currency: Currency = self.currency.trim().parse().ok()?;
        Some(match &self.fields {
            Fields::Booking {
                total,
                deposit,
                cash,
                platform_fee,
                deposit_rate,
                fee_rate,
                client_digest,
            } => FinancialFields {
                tenant_id,
                booking_ref: &self.booking_ref,
                currency,
                total: *total,
                deposit: *deposit,
                cash: *cash,
                platform_fee: *platform_fee,
                deposit_rate: *deposit_rate,
                fee_rate: *fee_rate,
                client_digest: client_digest.as_deref(),
            }
            .chained_hash_with(prev_hash, key),
            Fields::Revision {
                revision_no,
                total_delta,
                deposit_delta,
                cash_delta,
                fee_delta,
                after,
                ..
            } => RevisionFields {
                tenant_id,
                booking_ref: &self.booking_ref,
                revision_no: *revision_no,
                currency,
                total_delta: *total_delta,
                deposit_delta: *deposit_delta,
                cash_delta: *cash_delta,
                fee_delta: *fee_delta,
                total_after: after.total,
                fee_after: after.fee,
            }
            .chained_hash_with(prev_hash, key),
        })
    }
}

/// The latest head of a tenant's chain anchored outside the database (see [`crate::anchors`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub chain_seq: i64,
    pub record_hash: String,
    pub anchored_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub chain_seq: i64,
    /// `booking`, `revision`, or empty when the record is missing.
    pub kind: &'static str,
    pub record_id: Option<Uuid>,
    pub booking_ref: String,
    pub reason: String,
    pub expected_hash: String,
    pub stored_hash: String,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub records_checked: u64,
    pub head_hash: String,
    pub violation: Option<Violation>,
}

fn violation(r: &ChainRecord, reason: String, expected: &str, stored: &str) -> Violation {
    Violation {
        chain_seq: r.chain_seq,
        kind: r.kind(),
        record_id: Some(r.id),
        booking_ref: r.booking_ref.clone(),
        reason,
        expected_hash: expected.to_string(),
        stored_hash: stored.to_string(),
    }
}

/// Checks `records` (in chain order), the chain head `(last_seq, last_hash)`, and the latest
/// head anchored outside the database: the record at its position must still have its hash (a
/// rewritten history, re-chained so every link holds, does not).
pub fn verify_anchored(
    tenant_id: &str,
    records: &[ChainRecord],
    head: Option<(i64, String)>,
    anchor: Option<&Anchor>,
    key: Option<&ChainKey>,
) -> Report {
    let report = verify(tenant_id, records, head, key);
    let Some(anchor) = anchor else { return report };
    if report.violation.is_some() {
        return report;
    }
    let at = records.iter().find(|r| r.chain_seq == anchor.chain_seq);
    let when = anchor
        .anchored_at
        .map(|t| format!(" at {}", t.to_rfc3339()))
        .unwrap_or_default();
    let reason = match at {
        None => format!(
            "the chain was anchored{when} with {} records; only {} remain",
            anchor.chain_seq,
            records.len()
        ),
        Some(r) if r.record_hash != anchor.record_hash => format!(
            "record {} no longer has the hash anchored{when}: the chain was rewritten and \
             re-chained",
            anchor.chain_seq
        ),
        Some(_) => return report,
    };
    Report {
        violation: Some(Violation {
            chain_seq: anchor.chain_seq,
            kind: at.map_or("", ChainRecord::kind),
            record_id: at.map(|r| r.id),
            booking_ref: at.map(|r| r.booking_ref.clone()).unwrap_or_default(),
            reason,
            expected_hash: anchor.record_hash.clone(),
            stored_hash: at.map(|r| r.record_hash.clone()).unwrap_or_default(),
        }),
        ..report
    }
}

/// Checks `records` (in chain order) and the chain head `(last_seq, last_hash)`.
/// With `key`, every record must carry its keyed hash (HMAC): one written by anyone without the
/// key fails.
pub fn verify(
    tenant_id: &str,
    records: &[ChainRecord],
    head: Option<(i64, String)>,
    key: Option<&ChainKey>,
) -> Report {
    let mut prev = GENESIS_HASH.to_string();
    let mut expected_seq = 1;
    let mut checked = 0;
    let report = |checked, prev: &str, violation| Report {
        records_checked: checked,
        head_hash: prev.to_string(),
        violation,
    };
    for r in records {
        checked += 1;
        if r.chain_seq != expected_seq {
            let (reason, at) = if r.chain_seq > expected_seq {
                (format!("record {expected_seq} is missing"), expected_seq)
            } else {
                (
                    format!("two records at position {}", r.chain_seq),
                    r.chain_seq,
                )
            };
            let missing = Violation {
                chain_seq: at,
                kind: "",
                record_id: None,
                booking_ref: String::new(),
                reason,
                expected_hash: String::new(),
                stored_hash: String::new(),
            };
            return report(checked, &prev, Some(missing));
        }
        if r.prev_hash != prev {
            let reason = format!(
                "does not link to record {}: that record or this link was altered",
                expected_seq - 1
            );
            return report(
                checked,
                &prev,
                Some(violation(r, reason, &prev, &r.prev_hash)),
            );
        }
        let Some(expected) = r.expected_hash(tenant_id, &prev, key) else {
            let reason = format!("unknown currency {:?}", r.currency);
            return report(
                checked,
                &prev,
                Some(violation(r, reason, "", &r.record_hash)),
            );
        };
        if let Some(amount) = r.finer_than_minor_unit() {
            let reason = format!(
                "amount {amount} is finer than {}'s minor unit: changed below the hash's precision",
                r.currency.trim()
            );
            return report(
                checked,
                &prev,
                Some(violation(r, reason, &expected, &r.record_hash)),
            );
        }
        if expected != r.record_hash {
            let reason = "financial fields do not match the record's hash".to_string();
            return report(
                checked,
                &prev,
                Some(violation(r, reason, &expected, &r.record_hash)),
            );
        }
        if let Some(reason) = r.unexplained_after_amounts() {
            return report(
                checked,
                &prev,
                Some(violation(r, reason, &expected, &r.record_hash)),
            );
        }
        prev = r.record_hash.clone();
        expected_seq += 1;
    }
    let last_seq = expected_seq - 1;
    let head_violation = match head {
        None if last_seq == 0 => None,
        None => Some((
            "the chain head is missing".to_string(),
            last_seq,
            String::new(),
        )),
        Some((seq, _)) if seq != last_seq => Some((
            format!("the chain head counts {seq} records, {last_seq} remain"),
            seq,
            String::new(),
        )),
        Some((_, hash)) if hash != prev => Some((
            "the chain head's hash differs from the last record's".to_string(),
            last_seq,
            hash,
        )),
        Some(_) => None,
    };
    let violation = head_violation.map(|(reason, chain_seq, stored_hash)| Violation {
        chain_seq,
        kind: "",
        record_id: None,
        booking_ref: String::new(),
        reason,
        expected_hash: prev.clone(),
        stored_hash,
    });
    report(checked, &prev, violation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).expect("decimal")
    }

    /// A valid chain of `n` bookings of 100.00 each.
    fn chain(n: i64) -> (Vec<ChainRecord>, (i64, String)) {
        let mut prev = GENESIS_HASH.to_string();
        let mut records = Vec::new();
        for seq in 1..=n {
            let mut r = ChainRecord {
                chain_seq: seq,
                id: Uuid::now_v7(),
                booking_ref: format!("b{seq}"),
                currency: "AUD".into(),
                fields: Fields::Booking {
                    total: d("100.00"),
                    deposit: d("20.00"),
                    cash: d("80.00"),
                    platform_fee: d("20.00"),
                    deposit_rate: d("0.2"),
                    fee_rate: d("0.2"),
                    // Odd records as written before client digests were chained (v1).
                    client_digest: (seq % 2 == 0).then(|| format!("{seq:064x}")),
                },
                prev_hash: prev.clone(),
                record_hash: String::new(),
            };
            r.record_hash = r.expected_hash("t", &prev, None).expect("hash");
            prev = r.record_hash.clone();
            records.push(r);
        }
        (records, (n, prev))
    }

    #[test]
    fn an_edit_below_the_minor_unit_is_caught_though_the_hash_still_matches() {
        let (mut records, head) = chain(3);
        if let Fields::Booking { total, .. } = &mut records[1].fields {
            *total = d("100.004");
        }
        // The rounded encoding hashes the same…
        let prev = records[0].record_hash.clone();
        assert_eq!(
            records[1].expected_hash("t", &prev, None).as_deref(),
            Some(records[1].record_hash.as_str())
        );
        // …but the record is reported.
        let v = verify("t", &records, Some(head), None)
            .violation
            .expect("a violation");
        assert_eq!(v.chain_seq, 2);
        assert!(
            v.reason
                .contains("amount 100.004 is finer than AUD's minor unit"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn a_revisions_deposit_and_cash_after_must_follow_from_its_hashed_fields() {
        let amounts = |total, deposit, cash, fee| Amounts {
            total: d(total),
            deposit: d(deposit),
            cash: d(cash),
            fee: d(fee),
        };
        let (mut records, _) = chain(1);
        let prev = records[0].record_hash.clone();
        let mut revision = ChainRecord {
            chain_seq: 2,
            id: Uuid::now_v7(),
            booking_ref: "b1".into(),
            currency: "AUD".into(),
            fields: Fields::Revision {
                revision_no: 1,
                total_delta: d("-20.00"),
                deposit_delta: d("-4.00"),
                cash_delta: d("-16.00"),
                fee_delta: d("-4.00"),
                after: amounts("80.00", "16.00", "64.00", "16.00"),
                before: Some(amounts("100.00", "20.00", "80.00", "20.00")),
            },
            prev_hash: prev.clone(),
            record_hash: String::new(),
        };
        revision.record_hash = revision.expected_hash("t", &prev, None).expect("hash");
        let head = (2, revision.record_hash.clone());
        records.push(revision);
        assert_eq!(
            verify("t", &records, Some(head.clone()), None).violation,
            None
        );

        // A unit moved from cash to deposit: the split still adds up and the hash still
        // matches (neither is in it), but the deposit no longer follows from the delta.
        let mut shifted = records.clone();
        if let Fields::Revision { after, .. } = &mut shifted[1].fields {
            after.deposit += Decimal::ONE;
            after.cash -= Decimal::ONE;
        }
        let v = verify("t", &shifted, Some(head.clone()), None)
            .violation
            .expect("a violation");
        assert_eq!((v.chain_seq, v.kind), (2, "revision"));
        assert!(
            v.reason
                .starts_with("deposit after the revision is 17.00, but 20.00 + (-4.00) is 16.00"),
            "{}",
            v.reason
        );

        // Without the record before it, a revision cannot be explained.
        let mut orphan = records.clone();
        if let Fields::Revision { before, .. } = &mut orphan[1].fields {
            *before = None;
        }
        let v = verify("t", &orphan, Some(head), None)
            .violation
            .expect("a violation");
        assert_eq!(v.reason, "its booking's original record is missing");
    }

    #[test]
    fn an_untouched_chain_is_intact() {
        let (records, head) = chain(3);
        let report = verify("t", &records, Some(head.clone()), None);
        assert_eq!(report.violation, None);
        assert_eq!(report.records_checked, 3);
        assert_eq!(report.head_hash, head.1);
        assert!(verify("t", &[], None, None).violation.is_none());
    }

    #[test]
    fn each_kind_of_tampering_names_the_first_bad_record() {
        // An edited amount.
        let (mut records, head) = chain(3);
        if let Fields::Booking { platform_fee, .. } = &mut records[1].fields {
            *platform_fee = d("0.01");
        }
        let v = verify("t", &records, Some(head), None)
            .violation
            .expect("caught");
        assert_eq!((v.chain_seq, v.booking_ref.as_str()), (2, "b2"));
        assert!(v.reason.contains("do not match"), "{}", v.reason);

        // An edited amount with its own hash recomputed: the next link breaks.
        let (mut records, head2) = chain(3);
        if let Fields::Booking { platform_fee, .. } = &mut records[1].fields {
            *platform_fee = d("0.01");
        }
        let prev = records[0].record_hash.clone();
        records[1].record_hash = records[1].expected_hash("t", &prev, None).expect("hash");
        let v = verify("t", &records, Some(head2), None)
            .violation
            .expect("caught");
        assert_eq!(v.chain_seq, 3);
        assert!(
            v.reason.contains("does not link to record 2"),
            "{}",
            v.reason
        );

        // A deleted record in the middle, and at the end.
        let (mut records, head3) = chain(3);
        records.remove(1);
        let v = verify("t", &records, Some(head3), None)
            .violation
            .expect("caught");
        assert_eq!((v.chain_seq, v.reason.as_str()), (2, "record 2 is missing"));
        let (mut records, head4) = chain(3);
        records.pop();
        let v = verify("t", &records, Some(head4), None)
            .violation
            .expect("caught");
        assert_eq!(v.chain_seq, 3);
        assert!(
            v.reason.contains("counts 3 records, 2 remain"),
            "{}",
            v.reason
        );

        // Another tenant's records do not verify as this tenant's.
        let (records, head5) = chain(1);
        assert!(verify("u", &records, Some(head5), None).violation.is_some());
    }
}
