//! Billing periods: calendar months in a tenant's own time zone, half-open
//! `[first day 00:00 local, next first day 00:00 local)`, correct across daylight-saving changes.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid billing period {0:?}: expected YYYY-MM, e.g. 2026-10")]
pub struct PeriodParseError(String);

/// A calendar month, e.g. 2026-10.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BillingPeriod {
    year: i32,
    month: u32,
}

impl BillingPeriod {
    pub fn new(year: i32, month: u32) -> Option<Self> {
        ((1..=12).contains(&month) && (1970..=9999).contains(&year))
            .then_some(BillingPeriod { year, month })
    }

    pub fn year(&self) -> i32 {
        self.year
    }

    pub fn month(&self) -> u32 {
        self.month
    }

    /// The month containing `instant` as seen in `tz`.
    pub fn containing(instant: DateTime<Utc>, tz: Tz) -> Self {
        let local = instant.with_timezone(&tz);
        BillingPeriod {
            year: local.year(),
            month: local.month(),
        }
    }

    /// The month before the one containing `now` in `tz`: what a run on the 1st (or the 3rd)
    /// of a month bills.
    pub fn previous_to(now: DateTime<Utc>, tz: Tz) -> Self {
        Self::containing(now, tz).previous()
    }

    pub fn previous(&self) -> Self {
        if self.month == 1 {
            BillingPeriod {
                year: self.year - 1,
                month: 12,
            }
        } else {
            BillingPeriod {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    pub fn next(&self) -> Self {
        if self.month == 12 {
            BillingPeriod {
                year: self.year + 1,
                month: 1,
            }
        } else {
            BillingPeriod {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    pub fn first_day(&self) -> NaiveDate {
        // Always valid: the constructor checks the month and the year range.
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or_default()
    }

    /// The last calendar day of the month (inclusive), for display.
    pub fn last_day(&self) -> NaiveDate {
        self.next().first_day().pred_opt().unwrap_or_default()
    }

    /// `[start, end)` in UTC for this month in `tz`.
    pub fn bounds(&self, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            start_of_local_day(self.first_day(), tz),
            start_of_local_day(self.next().first_day(), tz),
        )
    }
}

/// The first instant of a local calendar day. Where a daylight-saving jump skips local midnight,
/// the day starts at the first local time that exists.
fn start_of_local_day(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    // Gaps are at most a few hours; step minute by minute through one if midnight is inside it.
    (0..=24 * 60)
        .find_map(|minutes| {
            tz.from_local_datetime(&(midnight + chrono::Duration::minutes(minutes)))
                .earliest()
        })
        .map(|local| local.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
}

impl FromStr for BillingPeriod {
    type Err = PeriodParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PeriodParseError(s.to_string());
        let (y, m) = s.trim().split_once('-').ok_or_else(err)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(err());
        }
        let year = y.parse().map_err(|_| err())?;
        let month = m.parse().map_err(|_| err())?;
        BillingPeriod::new(year, month).ok_or_else(err)
    }
}

impl fmt::Display for BillingPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> BillingPeriod {
        s.parse().expect("period")
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("rfc3339")
            .with_timezone(&Utc)
    }

    #[test]
    fn sydney_month_bounds_follow_daylight_saving() {
        let syd: Tz = "Australia/Sydney".parse().expect("tz");
        // October 2026: starts in AEST (+10), ends in AEDT (+11) after the 4 Oct change.
        assert_eq!(
            p("2026-10").bounds(syd),
            (utc("2026-09-30T14:00:00Z"), utc("2026-10-31T13:00:00Z"))
        );
        // April 2026: starts in AEDT (+11), ends in AEST (+10).
        assert_eq!(
            p("2026-04").bounds(syd),
            (utc("2026-03-31T13:00:00Z"), utc("2026-04-30T14:00:00Z"))
        );
    }

    #[test]
    fn last_evening_of_the_month_belongs_to_the_month() {
        // The seed's filter `<= last day 00:00` dropped everything on the last day.
        let syd: Tz = "Australia/Sydney".parse().expect("tz");
        let (start, end) = p("2026-10").bounds(syd);
        let last_evening = utc("2026-10-31T12:30:00Z"); // 31 Oct 23:30 AEDT
        assert!(start <= last_evening && last_evening < end);
        let next_midnight = utc("2026-10-31T13:00:00Z"); // 1 Nov 00:00 AEDT
        assert!(next_midnight >= end);
        assert_eq!(BillingPeriod::containing(last_evening, syd), p("2026-10"));
        assert_eq!(BillingPeriod::containing(next_midnight, syd), p("2026-11"));
    }

    #[test]
    fn midnight_skipped_by_dst_starts_the_day_at_the_first_existing_instant() {
        // Santiago moved clocks from 00:00 to 01:00 on 2022-09-11.
        let tz: Tz = "America/Santiago".parse().expect("tz");
        let start = start_of_local_day(NaiveDate::from_ymd_opt(2022, 9, 11).expect("date"), tz);
        assert_eq!(start, utc("2022-09-11T04:00:00Z"));
    }

    #[test]
    fn previous_month_is_computed_in_the_tenant_zone() {
        let syd: Tz = "Australia/Sydney".parse().expect("tz");
        // 1 Nov 00:30 in Sydney is still 31 Oct in UTC: Sydney bills October.
        assert_eq!(
            BillingPeriod::previous_to(utc("2026-10-31T13:30:00Z"), syd),
            p("2026-10")
        );
        assert_eq!(
            BillingPeriod::previous_to(utc("2026-01-02T00:00:00Z"), syd),
            p("2025-12")
        );
        // A late run on the 3rd still bills the previous month.
        assert_eq!(
            BillingPeriod::previous_to(utc("2026-12-03T09:00:00Z"), syd),
            p("2026-11")
        );
    }

    #[test]
    fn periods_parse_strictly() {
        assert_eq!(p("2026-02").last_day().to_string(), "2026-02-28");
        assert_eq!(p("2028-02").last_day().to_string(), "2028-02-29");
        assert_eq!(p("2026-12").next(), p("2027-01"));
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", "", "2026-00"] {
            assert!(bad.parse::<BillingPeriod>().is_err(), "{bad:?}");
        }
    }
}
