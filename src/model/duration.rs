//! Durations: one grammar, `^[0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h)?$` (a bare number is
//! seconds), the one the API documents in its OpenAPI patterns and accepts exactly.
//! Operator input (CLI flags, ordinaut.toml, environment) accepts the same grammar and,
//! so that values written for earlier versions keep working, humantime's longer forms
//! (`1h30m`, `2d`, `1 day`) and bare seconds of any size.

use std::time::Duration;

use super::Invalid;

/// Whether a zero duration is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zero {
    /// `0` is a valid value (a delay, a wait).
    Allowed,
    /// `0` is refused (a timeout, a period).
    Refused,
}

/// The canonical grammar; None when `text` does not follow it.
fn parse_canonical(text: &str) -> Option<Duration> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (number, None),
    };
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(whole, 6) || fraction.is_some_and(|f| !digits(f, 3)) {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    Some(Duration::from_secs_f64(value * factor))
}

/// A duration from the API: exactly the documented grammar, so the server accepts what
/// the OpenAPI document allows and nothing else.
pub fn parse_wire_duration(field: &str, text: &str, zero: Zero) -> Result<Duration, Invalid> {
    let duration = parse_canonical(text).ok_or_else(|| {
        Invalid::new(
            field,
            format!(
                "{text:?} is not a duration: use seconds or a number with ms, s, m or h (\"30s\", \"5m\")"
            ),
        )
    })?;
    if zero == Zero::Refused && duration.is_zero() {
        return Err(Invalid::new(field, "must be greater than zero"));
    }
    Ok(duration)
}

/// A duration from an operator: the canonical grammar, else a bare non-negative
/// number of seconds or a humantime form ("30s", "5m", "1h30m", "2d").
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Some(d) = parse_canonical(text) {
        return Ok(d);
    }
    if let Ok(secs) = text.parse::<f64>() {
        if (0.0..1e10).contains(&secs) {
            return Ok(Duration::from_secs_f64(secs));
        }
        return Err(format!(
            "invalid duration {text:?}: must be a non-negative number of seconds"
        ));
    }
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// Durations written the way people write them: "30s", "5m", "1h 30m".
pub mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as a humantime string.
    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    /// Accepts "30s"-style strings or a number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Seconds(f64),
        }
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            // The one operator grammar (model::parse_duration), which names the text.
            Some(Raw::Text(t)) => super::parse_duration(&t)
                .map(Some)
                .map_err(serde::de::Error::custom),
            Some(Raw::Seconds(s)) if s.is_finite() && s > 0.0 => {
                Ok(Some(Duration::from_secs_f64(s)))
            }
            Some(Raw::Seconds(_)) => Err(serde::de::Error::custom("duration must be positive")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_grammar_is_the_documented_pattern() {
        let ok = |t: &str| parse_wire_duration("d", t, Zero::Refused).ok();
        assert_eq!(ok("30s"), Some(Duration::from_secs(30)));
        assert_eq!(ok("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(ok("2m"), Some(Duration::from_secs(120)));
        assert_eq!(ok("250ms"), Some(Duration::from_millis(250)));
        assert!(parse_wire_duration("d", "0", Zero::Allowed).is_ok());
        for bad in [
            "0", "", "1d", "1h30m", "-1s", "1e3", "1234567s", "1.2345s", " 1s",
        ] {
            assert!(
                parse_wire_duration("d", bad, Zero::Refused).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn operators_may_also_write_longer_forms() {
        for (text, secs) in [
            ("30s", 30.0),
            ("1.5h", 5400.0),
            ("1h30m", 5400.0),
            ("2d", 172_800.0),
            ("90", 90.0),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs_f64(secs)),
                "{text}"
            );
        }
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
