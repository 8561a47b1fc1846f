//! Wall-clock times without an offset (SimplyBook's company-local `YYYY-MM-DD HH:MM:SS`) placed
//! in a time zone, including the two readings daylight saving makes awkward:
//!
//! - a time in a spring-forward gap (it never showed on the clock) moves forward by the length of
//!   the gap: 02:30 in Sydney's 02:00→03:00 gap is read with the offset in force just before the
//!   gap (+10), which is the instant the clock showed as 03:30 (+11);
//! - a time in a fall-back overlap (it showed twice) is the first occurrence, with the earlier,
//!   pre-transition offset: 02:30 on Sydney's last daylight-saving night is 02:30 +11.
//!
//! This is iCalendar's rule (RFC 5545, 3.3.5) and `java.time`'s, so a booking at a time the clock
//! skipped is kept, at the moment the client would have arrived, instead of being dropped.

use chrono::{DateTime, NaiveDateTime, Offset, TimeDelta, TimeZone};
use chrono_tz::Tz;

/// The longest gap searched for: a day and a half covers every gap in the tz database (the
/// longest, Samoa's in December 2011, skipped a whole day).
const LONGEST_GAP_MINUTES: i64 = 36 * 60;

/// `local` as read on a clock in `tz`: the one instant it names, the first of two in an overlap,
/// or, in a gap, the instant the offset in force before the gap gives it (so it lands as far
/// after the gap's end as it was after its start).
///
/// `None` only if no local time in the [`LONGEST_GAP_MINUTES`] before `local` exists either (no
/// real zone) or the arithmetic leaves chrono's range.
pub fn resolve(local: NaiveDateTime, tz: Tz) -> Option<DateTime<Tz>> {
    match tz.from_local_datetime(&local) {
        chrono::LocalResult::Single(at) => Some(at),
        chrono::LocalResult::Ambiguous(earlier, _) => Some(earlier),
        chrono::LocalResult::None => {
            // A local time at most a minute before the gap starts: its offset is the one in
            // force before the gap.
            let before = (1..=LONGEST_GAP_MINUTES).find_map(|minutes| {
                let earlier = local.checked_sub_signed(TimeDelta::minutes(minutes))?;
                tz.from_local_datetime(&earlier).latest()
            })?;
            let offset = before.offset().fix();
            let utc = local.checked_sub_offset(offset)?;
            Some(tz.from_utc_datetime(&utc))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::SecondsFormat;
    use chrono_tz::{America, Australia, Pacific};

    fn at(local: &str, tz: Tz) -> Option<(String, String)> {
        let naive = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S").expect("test time");
        resolve(naive, tz).map(|t| {
            (
                t.naive_utc()
                    .and_utc()
                    .to_rfc3339_opts(SecondsFormat::Secs, true),
                t.to_rfc3339(),
            )
        })
    }

    #[test]
    fn gaps_move_forward_by_their_length_and_overlaps_take_the_first_occurrence() {
        let cases = [
            // (zone, local, instant, local reading of the instant, why)
            (
                Australia::Sydney,
                "2026-10-14 10:00:00",
                "2026-10-13T23:00:00Z",
                "2026-10-14T10:00:00+11:00",
                "an ordinary time",
            ),
            (
                Australia::Sydney,
                "2026-10-04 01:59:59",
                "2026-10-03T15:59:59Z",
                "2026-10-04T01:59:59+10:00",
                "the last second before the gap",
            ),
            (
                Australia::Sydney,
                "2026-10-04 02:00:00",
                "2026-10-03T16:00:00Z",
                "2026-10-04T03:00:00+11:00",
                "the gap's first second",
            ),
            (
                Australia::Sydney,
                "2026-10-04 02:30:00",
                "2026-10-03T16:30:00Z",
                "2026-10-04T03:30:00+11:00",
                "inside the gap: 02:30 +10",
            ),
            (
                Australia::Sydney,
                "2026-10-04 02:59:59",
                "2026-10-03T16:59:59Z",
                "2026-10-04T03:59:59+11:00",
                "the gap's last second",
            ),
            (
                Australia::Sydney,
                "2026-10-04 03:00:00",
                "2026-10-03T16:00:00Z",
                "2026-10-04T03:00:00+11:00",
                "the gap's end exists (the same instant as its start)",
            ),
            (
                Australia::Sydney,
                "2026-04-05 02:30:00",
                "2026-04-04T15:30:00Z",
                "2026-04-05T02:30:00+11:00",
                "the overlap: first occurrence, +11",
            ),
            (
                Australia::Sydney,
                "2026-04-05 02:00:00",
                "2026-04-04T15:00:00Z",
                "2026-04-05T02:00:00+11:00",
                "the overlap's first second",
            ),
            (
                Australia::Sydney,
                "2026-04-05 03:00:00",
                "2026-04-04T17:00:00Z",
                "2026-04-05T03:00:00+10:00",
                "after the overlap",
            ),
            (
                America::New_York,
                "2026-03-08 02:30:00",
                "2026-03-08T07:30:00Z",
                "2026-03-08T03:30:00-04:00",
                "New York's gap: 02:30 -05",
            ),
            (
                America::New_York,
                "2026-11-01 01:30:00",
                "2026-11-01T05:30:00Z",
                "2026-11-01T01:30:00-04:00",
                "New York's overlap: first occurrence, -04",
            ),
            (
                Australia::Lord_Howe,
                "2026-10-04 02:15:00",
                "2026-10-03T15:45:00Z",
                "2026-10-04T02:45:00+11:00",
                "a half-hour gap: 02:15 +10:30",
            ),
            (
                Pacific::Apia,
                "2011-12-30 12:00:00",
                "2011-12-30T22:00:00Z",
                "2011-12-31T12:00:00+14:00",
                "Samoa skipped a whole day: 12:00 -10",
            ),
        ];
        for (tz, local, instant, reading, why) in cases {
            assert_eq!(
                at(local, tz),
                Some((instant.to_string(), reading.to_string())),
                "{tz} {local}: {why}"
            );
        }
    }
}
