//! How values are written in the file and the environment: durations ("30s", or a
//! number of seconds) and lists (a TOML array, or a comma-separated string).

use serde::{Deserialize, Deserializer};

/// A list given as a TOML array or as one comma-separated string (the environment's form).
pub(super) fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
        // figment reads an all-digit environment value as a number.
        Number(u64),
    }
    Ok(match Either::deserialize(d)? {
        Either::Number(n) => vec![n.to_string()],
        Either::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Either::Many(v) => v,
    })
}

/// A required duration: "30s"-style strings or a number of seconds.
pub(super) mod duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        super::opt_duration::serialize(&Some(*value), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::opt_duration::deserialize(d)?
            .ok_or_else(|| serde::de::Error::custom("a duration is required"))
    }
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
            Some(Raw::Text(t)) => crate::model::parse_duration(&t)
                .map(Some)
                .map_err(serde::de::Error::custom),
            Some(Raw::Seconds(s)) if s.is_finite() && s > 0.0 => {
                Ok(Some(Duration::from_secs_f64(s)))
            }
            Some(Raw::Seconds(_)) => Err(serde::de::Error::custom("duration must be positive")),
        }
    }
}
