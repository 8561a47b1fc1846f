//! Stripe's limits on what we send: an invoice number of at most 26 characters, and a due
//! date in the future that is our own due date wherever it can be (docs/contracts/stripe.md).

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use super::PushError;

/// Longest invoice `number` Stripe accepts (`PostInvoices`, `number.maxLength`).
pub(super) const MAX_NUMBER_LEN: usize = 26;
/// How far ahead of the push Stripe's due date must be: clock skew and a retry minutes later
/// must still find it in the future.
const MIN_DUE_LEAD: TimeDelta = TimeDelta::hours(1);
/// Refuses, before any call, an invoice number Stripe would refuse.
pub fn check_number(number: &str, tenant: &str) -> Result<(), PushError> {
    let len = number.chars().count();
    if len > MAX_NUMBER_LEN {
        return Err(PushError::NumberTooLong {
            number: number.to_string(),
            len,
            tenant: tenant.to_string(),
        });
    }
    Ok(())
}

/// The last second of `day` in `zone`: the invoice is overdue from the next local midnight,
/// where the overdue sweep also draws the line.
pub fn end_of_day(day: NaiveDate, zone: Tz) -> DateTime<Utc> {
    let next = day.succ_opt().unwrap_or(day).and_time(NaiveTime::MIN);
    // A zone whose clocks skip midnight starts the day at the first hour that exists.
    let start = zone
        .from_local_datetime(&next)
        .earliest()
        .or_else(|| {
            zone.from_local_datetime(&(next + TimeDelta::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| next.and_utc());
    start - TimeDelta::seconds(1)
}

/// The due date Stripe is given for an invoice due on `due` (in `zone`), pushed at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StripeDue {
    pub at: DateTime<Utc>,
    /// False when `at` is the end of our due date; true when ours was too close or past.
    pub moved: bool,
}

pub fn stripe_due(due: NaiveDate, zone: Tz, now: DateTime<Utc>) -> StripeDue {
    let ours = end_of_day(due, zone);
    if ours - now >= MIN_DUE_LEAD {
        return StripeDue {
            at: ours,
            moved: false,
        };
    }
    // Late: the end of today in the tenant's zone, or of tomorrow in the day's last hour. Stable
    // through the day, so a retry sends the same parameters.
    let mut day = now.with_timezone(&zone).date_naive();
    let mut at = end_of_day(day, zone);
    while at - now < MIN_DUE_LEAD {
        day = day.succ_opt().unwrap_or(day);
        at = end_of_day(day, zone);
        if day == NaiveDate::MAX {
            break;
        }
    }
    StripeDue { at, moved: true }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("rfc3339")
            .with_timezone(&Utc)
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn stripes_due_date_is_the_last_second_of_ours_in_the_tenants_zone() {
        let sydney = chrono_tz::Australia::Sydney;
        let cases = [
            // AEST (+10), an ordinary day.
            ("2026-08-15", "2026-08-15T13:59:59Z"),
            // The day DST starts (5 Oct 2026): midnight after it is already AEDT (+11).
            ("2026-10-04", "2026-10-04T12:59:59Z"),
            // The day DST ends (5 Apr 2026): a 25-hour day, ending in AEST.
            ("2026-04-05", "2026-04-05T13:59:59Z"),
        ];
        for (due, expected) in cases {
            assert_eq!(end_of_day(day(due), sydney), utc(expected), "{due}");
        }
        assert_eq!(
            end_of_day(day("2026-08-15"), chrono_tz::Asia::Tokyo),
            utc("2026-08-15T14:59:59Z")
        );
        // Santiago skips from midnight to 01:00 when DST starts (6 Sep 2026): the day before
        // ends at the last second before 01:00.
        assert_eq!(
            end_of_day(day("2026-09-05"), chrono_tz::America::Santiago),
            utc("2026-09-06T03:59:59Z")
        );
    }

    #[test]
    fn a_timely_push_sends_our_due_date_and_a_late_one_a_future_one() {
        let sydney = chrono_tz::Australia::Sydney;
        let due = day("2026-08-15");
        let ours = utc("2026-08-15T13:59:59Z");
        let cases = [
            // Pushed on the 1st: our due date, unmoved.
            ("2026-07-31T22:00:00Z", ours, false),
            // On the due day, more than an hour before its end.
            ("2026-08-15T12:59:59Z", ours, false),
            // In its last hour: the end of the next day.
            ("2026-08-15T13:30:00Z", utc("2026-08-16T13:59:59Z"), true),
            // Days late: the end of the day of the push, in the tenant's zone.
            ("2026-08-20T01:00:00Z", utc("2026-08-20T13:59:59Z"), true),
            // Late, pushed in the last hour of a Sydney day.
            ("2026-08-20T13:10:00Z", utc("2026-08-21T13:59:59Z"), true),
        ];
        for (now, at, moved) in cases {
            let got = stripe_due(due, sydney, utc(now));
            assert_eq!(got, StripeDue { at, moved }, "pushed at {now}");
            assert!(got.at - utc(now) >= MIN_DUE_LEAD, "{now}");
        }
    }

    #[test]
    fn numbers_longer_than_stripe_takes_are_refused_before_any_call() {
        assert!(check_number("ABCDEFGHIJKL-2026-0001", "claire").is_ok());
        // Sequences past 9999 grow the number; a 12-character prefix still fits to 99,999,999.
        assert!(check_number("ABCDEFGHIJKL-2026-99999999", "claire").is_ok());
        let err = check_number("ABCDEFGHIJKL-2026-100000000", "claire")
            .expect_err("27 characters")
            .to_string();
        assert!(
            err.contains("27 characters") && err.contains("at most 12"),
            "{err}"
        );
    }
}
