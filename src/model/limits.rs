//! Numeric and length limits on job fields, written once for the API, CLI,
//! configuration and scheduler. The API's OpenAPI annotations repeat the numbers as
//! literals (utoipa takes no constants); `tests` below pins them to these.

use std::ops::RangeInclusive;

use super::Invalid;

/// Attempts a job may be given in all.
pub const MAX_ATTEMPTS: RangeInclusive<i32> = 1..=1000;
/// Longest unique key or concurrency key, in characters (what JSON Schema's
/// `maxLength` counts).
pub const MAX_KEY_CHARS: usize = 512;
/// Lowest (first-served) priority value.
pub const PRIORITY_MIN: i16 = -100;
/// Highest (last-served) priority value.
pub const PRIORITY_MAX: i16 = 100;

/// Checks a max_attempts value.
pub fn check_max_attempts(field: &str, n: i32) -> Result<i32, Invalid> {
    if MAX_ATTEMPTS.contains(&n) {
        Ok(n)
    } else {
        Err(Invalid::new(
            field,
            format!(
                "{n} is out of range {}..={}",
                MAX_ATTEMPTS.start(),
                MAX_ATTEMPTS.end()
            ),
        ))
    }
}

/// Checks a unique key or concurrency key: 1 to [`MAX_KEY_CHARS`] characters.
pub fn check_key(field: &str, key: &str) -> Result<(), Invalid> {
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
        Err(Invalid::new(
            field,
            format!("must be 1 to {MAX_KEY_CHARS} characters"),
        ))
    } else {
        Ok(())
    }
}

/// Checks a priority value.
pub fn validate_priority(p: i32) -> Result<i16, String> {
    if (PRIORITY_MIN as i32..=PRIORITY_MAX as i32).contains(&p) {
        Ok(p as i16)
    } else {
        Err(format!(
            "{p} is out of range {PRIORITY_MIN}..={PRIORITY_MAX}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_counted_in_characters() {
        assert!(check_key("k", &"é".repeat(MAX_KEY_CHARS)).is_ok());
        assert!(check_key("k", &"a".repeat(MAX_KEY_CHARS + 1)).is_err());
        assert!(check_key("k", "").is_err());
    }

    #[test]
    fn max_attempts_range_is_one_to_a_thousand() {
        assert_eq!(check_max_attempts("m", 1), Ok(1));
        assert_eq!(check_max_attempts("m", 1000), Ok(1000));
        let e = check_max_attempts("m", 0).unwrap_err();
        assert_eq!(e.to_string(), "m: 0 is out of range 1..=1000");
    }
}
