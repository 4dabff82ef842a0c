//! Local time: the star stores UTC instants; a listener reads their history
//! on their own wall clock. [`Zone`] is an IANA time zone, and the
//! `local_time(ts)` SQL function it registers turns a UTC timestamp into the
//! wall-clock time there, daylight saving included: a play at 01:30 on the
//! night the clocks go back is at 01:30 once, whichever of the two 01:30s.
//!
//! The `plays` view that queries read is `fact_plays` with its local time
//! columns, cut to the period asked for ([`Period`]).

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;

/// A quarter hour in µs: every offset in use is a whole number of them.
pub const QUARTER_US: i64 = 15 * 60 * 1_000_000;

/// An IANA time zone, and whether it was the machine's (not asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub tz: Tz,
    pub from_machine: bool,
}

impl std::str::FromStr for Zone {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let tz = s.trim().parse::<Tz>().map_err(|_| {
            format!("`{s}` is not an IANA time zone name (like Europe/Berlin, America/Los_Angeles or UTC)")
        })?;
        Ok(Zone { tz, from_machine: false })
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.tz.name())?;
        if self.from_machine {
            f.write_str(" (this machine's; --tz or TUNELAKE_TZ to change)")?;
        }
        Ok(())
    }
}

impl Zone {
    /// This machine's zone: `TZ` when it names one, else the system's
    /// (`/etc/localtime`), else UTC.
    pub fn machine() -> Zone {
        let from_env = std::env::var("TZ").ok().and_then(|v| v.trim_start_matches(':').parse::<Tz>().ok());
        let tz = from_env
            .or_else(|| iana_time_zone::get_timezone().ok().and_then(|n| n.parse::<Tz>().ok()))
            .unwrap_or(Tz::UTC);
        Zone { tz, from_machine: true }
    }

    /// The offset from UTC, in µs, at the UTC instant `utc_us`.
    fn offset_us(&self, utc_us: i64) -> i64 {
        let Some(t) = DateTime::from_timestamp_micros(utc_us) else { return 0 };
        i64::from(self.tz.offset_from_utc_datetime(&t.naive_utc()).fix().local_minus_utc()) * 1_000_000
    }

    /// Whether the quarter hour starting at `start_us` (UTC, on a quarter
    /// hour) lies in one local hour: its offset is the same at both ends and
    /// a whole number of quarter hours (every zone's since 1972).
    pub fn quarter_in_one_hour(&self, start_us: i64) -> bool {
        let offset = self.offset_us(start_us);
        start_us % QUARTER_US == 0 && offset % QUARTER_US == 0 && offset == self.offset_us(start_us + QUARTER_US - 1)
    }

    /// The wall-clock time (µs since the epoch, as if it were UTC) at `utc_us`.
    pub fn local_us(&self, utc_us: i64) -> i64 {
        utc_us + self.offset_us(utc_us)
    }

    /// The UTC instant of local midnight starting `date` (the earliest one,
    /// where a zone skips or repeats midnight).
    pub fn midnight_utc(&self, date: NaiveDate) -> DateTime<Utc> {
        let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists");
        match self.tz.from_local_datetime(&midnight).earliest() {
            Some(t) => t.with_timezone(&Utc),
            // Midnight skipped by a change of offset: the hour after it.
            None => self
                .tz
                .from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                .earliest()
                .map_or_else(|| Utc.from_utc_datetime(&midnight), |t| t.with_timezone(&Utc)),
        }
    }

    /// `local_time(ts)` for every value of `utc`. Offsets change only at
    /// transitions, so one lookup serves every play of a quarter hour whose
    /// both ends have the same offset; a quarter hour holding a transition is
    /// looked up play by play.
    fn local_array(&self, utc: &TimestampMicrosecondArray) -> TimestampMicrosecondArray {
        let memo = std::cell::Cell::new(None::<(i64, i64)>); // (quarter, offset)
        utc.unary(|us| {
            let quarter = us.div_euclid(QUARTER_US);
            if let Some((q, offset)) = memo.get()
                && q == quarter
            {
                return us + offset;
            }
            let start = quarter * QUARTER_US;
            let (first, last) = (self.offset_us(start), self.offset_us(start + QUARTER_US - 1));
            if first == last {
                memo.set(Some((quarter, first)));
                us + first
            } else {
                self.local_us(us)
            }
        })
    }

    /// Registers `local_time(ts)` on `ctx`: a UTC timestamp (µs, no zone) to
    /// the wall-clock time in this zone.
    pub fn register(&self, ctx: &SessionContext) {
        let zone = self.clone();
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        let fun = Arc::new(move |args: &[ColumnarValue]| -> Result<ColumnarValue, DataFusionError> {
            match &args[0] {
                ColumnarValue::Array(a) => {
                    let utc = a.as_primitive_opt::<TimestampMicrosecondType>().ok_or_else(|| {
                        DataFusionError::Plan(format!("local_time takes a timestamp, not {}", a.data_type()))
                    })?;
                    Ok(ColumnarValue::Array(Arc::new(zone.local_array(utc)) as ArrayRef))
                }
                ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(v, _)) => {
                    Ok(ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(v.map(|us| zone.local_us(us)), None)))
                }
                ColumnarValue::Scalar(s) => {
                    Err(DataFusionError::Plan(format!("local_time takes a timestamp, not {}", s.data_type())))
                }
            }
        });
        ctx.register_udf(create_udf("local_time", vec![ts.clone()], ts, Volatility::Immutable, fun));
    }
}

/// Which plays a query reads: all, or those in `[from, to)` (UTC instants).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Period {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl Period {
    /// From `--since` (a duration back from now), `--from` and `--to` (local
    /// dates in `zone`, `to` included).
    pub fn new(
        since: Option<std::time::Duration>,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
        zone: &Zone,
        now: DateTime<Utc>,
    ) -> Period {
        let since = since.and_then(|d| chrono::Duration::from_std(d).ok()).map(|d| now - d);
        let from = [since, from.map(|d| zone.midnight_utc(d))].into_iter().flatten().max();
        let to = to.and_then(|d| d.succ_opt()).map(|d| zone.midnight_utc(d));
        Period { from, to }
    }

    /// Whether a row's `played_at` (UTC) is in the period, as SQL (`TRUE` for all of it).
    pub fn predicate(&self) -> String {
        let literal = |t: &DateTime<Utc>| format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S%.6f"));
        let parts: Vec<String> = [
            self.from.as_ref().map(|t| format!("played_at >= {}", literal(t))),
            self.to.as_ref().map(|t| format!("played_at < {}", literal(t))),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() { "TRUE".into() } else { parts.join(" AND ") }
    }

    /// The view's WHERE clause on `played_at`, or nothing.
    fn condition(&self) -> String {
        if self.from.is_none() && self.to.is_none() { String::new() } else { format!("WHERE {}", self.predicate()) }
    }

    /// In words, for a report's heading.
    pub fn describe(&self, zone: &Zone) -> String {
        let local = |t: &DateTime<Utc>| t.with_timezone(&zone.tz).format("%Y-%m-%d %H:%M").to_string();
        match (&self.from, &self.to) {
            (None, None) => "all of it".into(),
            (Some(f), None) => format!("since {}", local(f)),
            (None, Some(t)) => format!("before {}", local(t)),
            (Some(f), Some(t)) => format!("{} to {}", local(f), local(t)),
        }
    }
}

/// The `plays` view: `fact_plays` in `period`, with the play's wall-clock
/// time in the zone registered (`local_time`) and its parts: `local_at`,
/// `local_date`, `local_hour` (0-23), `local_weekday` (Monday = 0),
/// `local_week` (the Monday starting the ISO week), `local_month` (its first
/// day) and `local_year`.
pub async fn register_plays(ctx: &SessionContext, period: &Period) -> Result<(), DataFusionError> {
    let sql = format!(
        "SELECT *, \
           CAST(local_at AS DATE) AS local_date, \
           CAST(date_part('hour', local_at) AS INT) AS local_hour, \
           CAST((date_part('dow', local_at) + 6) % 7 AS INT) AS local_weekday, \
           CAST(date_trunc('week', local_at) AS DATE) AS local_week, \
           CAST(date_trunc('month', local_at) AS DATE) AS local_month, \
           CAST(date_part('year', local_at) AS INT) AS local_year \
         FROM (SELECT *, local_time(played_at) AS local_at FROM fact_plays {})",
        period.condition()
    );
    let view = ctx.sql(&sql).await?.into_view();
    ctx.register_table("plays", view)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(zone: &str, utc: &str) -> String {
        let zone: Zone = zone.parse().unwrap();
        let us = DateTime::parse_from_rfc3339(utc).unwrap().timestamp_micros();
        let array = TimestampMicrosecondArray::from(vec![us]);
        let by_array = zone.local_array(&array).value(0);
        assert_eq!(by_array, zone.local_us(us), "the memo agrees with a lookup");
        DateTime::from_timestamp_micros(by_array).unwrap().format("%Y-%m-%d %H:%M").to_string()
    }

    #[test]
    fn wall_clock_times_across_daylight_saving_changes() {
        // Berlin falls back at 01:00 UTC on 2024-10-27: 00:30 and 01:30 UTC are both 02:30 local.
        assert_eq!(local("Europe/Berlin", "2024-10-27T00:30:00Z"), "2024-10-27 02:30");
        assert_eq!(local("Europe/Berlin", "2024-10-27T01:30:00Z"), "2024-10-27 02:30");
        assert_eq!(local("Europe/Berlin", "2025-03-30T00:59:00Z"), "2025-03-30 01:59");
        assert_eq!(local("Europe/Berlin", "2025-03-30T01:00:00Z"), "2025-03-30 03:00");
        assert_eq!(local("America/Los_Angeles", "2024-11-03T08:30:00Z"), "2024-11-03 01:30");
        assert_eq!(local("America/Los_Angeles", "2024-11-03T09:30:00Z"), "2024-11-03 01:30");
        assert_eq!(local("Australia/Sydney", "2025-04-05T15:59:00Z"), "2025-04-06 02:59");
        assert_eq!(local("Australia/Sydney", "2025-04-05T16:00:00Z"), "2025-04-06 02:00");
        assert_eq!(local("Asia/Kolkata", "2024-06-01T18:45:00Z"), "2024-06-02 00:15");
        assert_eq!(local("Australia/Adelaide", "2024-10-05T16:29:00Z"), "2024-10-06 01:59");
        assert_eq!(local("Australia/Adelaide", "2024-10-05T16:30:00Z"), "2024-10-06 03:00");
    }

    #[test]
    fn a_quarter_hour_holding_a_transition_is_looked_up_play_by_play() {
        let zone: Zone = "Europe/Berlin".parse().unwrap();
        // 00:55 to 01:05 UTC on 2024-10-27, a minute apart, in one call.
        let start = DateTime::parse_from_rfc3339("2024-10-27T00:55:00Z").unwrap().timestamp_micros();
        let utc: Vec<i64> = (0..10).map(|m| start + m * 60_000_000).collect();
        let local = zone.local_array(&TimestampMicrosecondArray::from(utc.clone()));
        for (u, l) in utc.iter().zip(local.values()) {
            assert_eq!(*l, zone.local_us(*u));
        }
    }

    #[test]
    fn a_quarter_hour_lies_in_one_local_hour_unless_the_offset_is_minutes() {
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().timestamp_micros();
        let zone = |z: &str| z.parse::<Zone>().unwrap();
        // Either side of Berlin's change at 01:00 UTC, and Kolkata's and Kathmandu's offsets.
        for (z, t) in [
            ("Europe/Berlin", "2024-10-27T00:45:00Z"),
            ("Europe/Berlin", "2024-10-27T01:00:00Z"),
            ("Asia/Kolkata", "2024-06-01T18:45:00Z"),
            ("Asia/Kathmandu", "2024-06-01T18:45:00Z"),
        ] {
            assert!(zone(z).quarter_in_one_hour(at(t)), "{z} {t}");
        }
        // Monrovia was 44.5 minutes behind UTC until 1972; not on a quarter hour.
        assert!(!zone("Africa/Monrovia").quarter_in_one_hour(at("1971-06-01T12:00:00Z")));
        assert!(!zone("UTC").quarter_in_one_hour(at("2024-06-01T12:05:00Z")), "not a quarter's start");
    }

    #[test]
    fn periods_are_local_dates_and_a_duration_back_from_now() {
        let zone: Zone = "America/Los_Angeles".parse().unwrap();
        let now = DateTime::parse_from_rfc3339("2025-01-31T12:00:00Z").unwrap().with_timezone(&Utc);
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let p = Period::new(None, Some(d("2025-01-01")), Some(d("2025-01-31")), &zone, now);
        assert_eq!(p.from.unwrap().to_rfc3339(), "2025-01-01T08:00:00+00:00");
        assert_eq!(p.to.unwrap().to_rfc3339(), "2025-02-01T08:00:00+00:00");
        let p = Period::new(Some(std::time::Duration::from_secs(86_400)), None, None, &zone, now);
        assert_eq!(p.from.unwrap().to_rfc3339(), "2025-01-30T12:00:00+00:00");
        assert_eq!(p.condition(), "WHERE played_at >= TIMESTAMP '2025-01-30 12:00:00.000000'");
        assert!("Mars/Olympus".parse::<Zone>().unwrap_err().contains("not an IANA time zone"));
    }
}
