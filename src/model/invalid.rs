//! The one validation error: which field, and what is wrong with it.

use std::fmt;

/// A caller's value that breaks a rule. Every entry point (API, CLI, configuration,
/// scheduler) reports it with its own field spelling (`jobs[2].queue`, `--queue`,
/// `queues.scans.max_attempts`) and the same reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field as the caller named it.
    pub field: String,
    /// What is wrong, without the field name.
    pub reason: String,
}

impl Invalid {
    /// `field` breaks a rule for `reason`.
    pub fn new(field: impl Into<String>, reason: impl fmt::Display) -> Invalid {
        Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    /// The same problem with `prefix` put before the field name (`jobs[0].`).
    pub fn within(self, prefix: &str) -> Invalid {
        Invalid {
            field: format!("{prefix}{}", self.field),
            reason: self.reason,
        }
    }

    /// The same problem reported under another field name (`--max-attempts`).
    pub fn named(self, field: impl Into<String>) -> Invalid {
        Invalid {
            field: field.into(),
            reason: self.reason,
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for Invalid {}
