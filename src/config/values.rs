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
        crate::model::opt_duration::serialize(&Some(*value), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        crate::model::opt_duration::deserialize(d)?
            .ok_or_else(|| serde::de::Error::custom("a duration is required"))
    }
}
