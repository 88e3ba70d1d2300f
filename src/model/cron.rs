//! Cron expressions and their fire times in an IANA timezone.
//!
//! Accepts the 5-field crontab (`m h dom mon dow`, day of week 0-7 with 0 and 7 =
//! Sunday), the 6-field form with a leading seconds field, and the shorthands `@yearly`,
//! `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`. Parsing is the
//! `cron` crate's; this module only normalises crontab conventions onto it and owns the
//! daylight-saving rules, which it applies to wall-clock times:
//!
//! - a wall time that does not exist (the clock jumps forward over it) fires once, at the
//!   first instant after the jump (a daily 02:30 in Europe/Berlin fires at 03:00 on the
//!   spring-forward day);
//! - a wall time that happens twice (the clock falls back) fires once, at its first
//!   occurrence.

use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct CronExpr {
    source: String,
    schedule: cron::Schedule,
}

impl CronExpr {
    /// Parses `expr`; the error names the problem.
    pub fn parse(expr: &str) -> Result<CronExpr, String> {
        let trimmed = expr.trim();
        let normalised = match trimmed {
            "@yearly" | "@annually" => "0 0 0 1 1 *".to_owned(),
            "@monthly" => "0 0 0 1 * *".to_owned(),
            "@weekly" => "0 0 0 * * SUN".to_owned(),
            "@daily" | "@midnight" => "0 0 0 * * *".to_owned(),
            "@hourly" => "0 0 * * * *".to_owned(),
            s if s.starts_with('@') => return Err(format!("unknown shorthand {s:?}")),
            s => {
                let fields: Vec<&str> = s.split_whitespace().collect();
                let (seconds, rest) = match fields.len() {
                    5 => ("0", &fields[..]),
                    6 => (fields[0], &fields[1..]),
                    n => {
                        return Err(format!(
                            "{s:?} has {n} fields; expected 5 (minute hour day month weekday) or 6 (with seconds first)"
                        ));
                    }
                };
                let dow = weekdays(rest[4])?;
                format!(
                    "{seconds} {} {} {} {} {dow}",
                    rest[0], rest[1], rest[2], rest[3]
                )
            }
        };
        let schedule = cron::Schedule::from_str(&normalised)
            .map_err(|e| format!("invalid cron expression {trimmed:?}: {e}"))?;
        if schedule.after(&Utc::now()).next().is_none() {
            return Err(format!("cron expression {trimmed:?} never fires"));
        }
        Ok(CronExpr {
            source: trimmed.to_owned(),
            schedule,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The first fire time strictly after `after`, in `tz` wall-clock terms (see the
    /// module docs for daylight-saving transitions).
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        // Iterate wall-clock times: the schedule runs over naive local times carried in
        // a UTC DateTime, which has no transitions to trip over.
        let local_after = after.with_timezone(&tz).naive_local();
        for wall in self.schedule.after(&local_after.and_utc()).take(10_000) {
            let instant = to_instant(wall.naive_utc(), tz)?;
            if instant > after {
                return Some(instant);
            }
        }
        None
    }
}

/// The instant of a wall-clock time: the earlier of two, or the end of a gap.
fn to_instant(wall: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => {
            // Inside a forward jump: the first existing minute after it.
            (1..=24 * 60).find_map(|m| {
                match tz.from_local_datetime(&(wall + Duration::minutes(m))) {
                    LocalResult::Single(t) => {
                        Some(floor_to_gap_end(t.with_timezone(&Utc), wall, tz))
                    }
                    LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
                    LocalResult::None => None,
                }
            })
        }
    }
}

/// `found` is the first whole minute after `wall` that exists; the jump itself happened
/// at a whole minute at or before it, on the local clock's new offset.
fn floor_to_gap_end(found: DateTime<Utc>, wall: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    let mut t = found;
    loop {
        let earlier = t - Duration::minutes(1);
        if earlier.with_timezone(&tz).naive_local() <= wall {
            return t;
        }
        t = earlier;
    }
}

/// Maps crontab day-of-week numbers (0-7, 0 and 7 = Sunday) to names, since the cron
/// crate numbers days 1-7 from Sunday.
fn weekdays(field: &str) -> Result<String, String> {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let name = |t: &str| -> Result<String, String> {
        match t.parse::<usize>() {
            Ok(n) if n <= 7 => Ok(NAMES[n].to_owned()),
            Ok(n) => Err(format!("day of week {n} is out of range 0-7")),
            Err(_) => Ok(t.to_owned()),
        }
    };
    let mut out = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let mapped = match range.split_once('-') {
            // "5-7" ends on Sunday: the crate wants ranges within SUN..SAT.
            Some((a, "7")) if a != "0" && a != "7" && step.is_none() => {
                format!("{}-SAT,SUN", name(a)?)
            }
            Some((a, b)) => format!("{}-{}", name(a)?, name(b)?),
            None => name(range)?,
        };
        out.push(match step {
            Some(s) => format!("{mapped}/{s}"),
            None => mapped,
        });
    }
    Ok(out.join(","))
}

/// Parses an IANA timezone name; the error names it.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("unknown IANA timezone {name:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fires(expr: &str, tz: &str, from: &str, n: usize) -> Vec<DateTime<Utc>> {
        let c = CronExpr::parse(expr).unwrap();
        let tz = parse_timezone(tz).unwrap();
        let mut t = at(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = c.next_after(t, tz).unwrap();
            out.push(t);
        }
        out
    }

    #[test]
    fn five_field_crontab_with_weekday_numbers() {
        // 2026-11-23 is a Monday. 1-5 = Monday to Friday, as in crontab.
        let f = fires("30 9 * * 1-5", "UTC", "2026-11-21T00:00:00Z", 6);
        assert_eq!(f[0], at("2026-11-23T09:30:00Z"));
        assert_eq!(f[4], at("2026-11-27T09:30:00Z"));
        assert_eq!(f[5], at("2026-11-30T09:30:00Z"), "skips the weekend");
        assert_eq!(
            fires("0 0 * * 0", "UTC", "2026-11-23T00:00:00Z", 1)[0],
            at("2026-11-29T00:00:00Z")
        );
        assert_eq!(
            fires("0 0 * * 7", "UTC", "2026-11-23T00:00:00Z", 1)[0],
            at("2026-11-29T00:00:00Z")
        );
        let weekend = fires("0 0 * * 6-7", "UTC", "2026-11-23T00:00:00Z", 2);
        assert_eq!(
            weekend,
            vec![at("2026-11-28T00:00:00Z"), at("2026-11-29T00:00:00Z")]
        );
    }

    #[test]
    fn seconds_field_and_shorthands() {
        let f = fires("*/10 * * * * *", "UTC", "2026-11-23T00:00:01Z", 3);
        assert_eq!(
            f,
            vec![
                at("2026-11-23T00:00:10Z"),
                at("2026-11-23T00:00:20Z"),
                at("2026-11-23T00:00:30Z")
            ]
        );
        let shorthands = [
            (
                "@hourly",
                "UTC",
                "2026-11-23T10:15:00Z",
                "2026-11-23T11:00:00Z",
            ),
            (
                "@daily",
                "Europe/Berlin",
                "2026-11-23T12:00:00Z",
                "2026-11-23T23:00:00Z",
            ),
            (
                "@weekly",
                "UTC",
                "2026-11-23T12:00:00Z",
                "2026-11-29T00:00:00Z",
            ),
            (
                "@monthly",
                "UTC",
                "2026-11-23T12:00:00Z",
                "2026-12-01T00:00:00Z",
            ),
            (
                "@yearly",
                "UTC",
                "2026-11-23T12:00:00Z",
                "2027-01-01T00:00:00Z",
            ),
        ];
        for (expr, tz, after, want) in shorthands {
            assert_eq!(fires(expr, tz, after, 1)[0], at(want), "{expr} in {tz}");
        }
    }

    #[test]
    fn spring_forward_fires_once_at_the_end_of_the_gap() {
        // Europe/Berlin skips 02:00-03:00 on 2026-03-29 (UTC+1 -> UTC+2).
        let f = fires("30 2 * * *", "Europe/Berlin", "2026-03-27T12:00:00Z", 3);
        assert_eq!(f[0], at("2026-03-28T01:30:00Z"), "02:30 CET");
        assert_eq!(f[1], at("2026-03-29T01:00:00Z"), "03:00 CEST, once");
        assert_eq!(f[2], at("2026-03-30T00:30:00Z"), "02:30 CEST");
        // A half-hourly schedule does not pile three fires onto 03:00.
        let g = fires("*/30 * * * *", "Europe/Berlin", "2026-03-29T00:15:00Z", 3);
        assert_eq!(
            g,
            vec![
                at("2026-03-29T00:30:00Z"),
                at("2026-03-29T01:00:00Z"),
                at("2026-03-29T01:30:00Z")
            ]
        );
    }

    #[test]
    fn fall_back_fires_once_at_the_first_occurrence() {
        // America/New_York repeats 01:00-02:00 on 2026-11-01 (EDT -> EST).
        let f = fires("30 1 * * *", "America/New_York", "2026-10-31T00:00:00Z", 3);
        assert_eq!(f[0], at("2026-10-31T05:30:00Z"));
        assert_eq!(
            f[1],
            at("2026-11-01T05:30:00Z"),
            "01:30 EDT, the first occurrence"
        );
        assert_eq!(f[2], at("2026-11-02T06:30:00Z"), "not again at 01:30 EST");
    }

    #[test]
    fn invalid_expressions_and_zones_are_named() {
        let invalid = [
            ("* * *", "3 fields"),
            ("61 * * * *", "invalid cron expression"),
            ("0 0 * * 9", "out of range"),
            ("@fortnightly", "unknown shorthand"),
            ("0 0 30 2 *", "never fires"),
        ];
        for (expr, reason) in invalid {
            let err = CronExpr::parse(expr).unwrap_err();
            assert!(err.contains(reason), "{expr}: {err}");
        }
        assert!(
            parse_timezone("Mars/Olympus")
                .unwrap_err()
                .contains("Mars/Olympus")
        );
    }
}
