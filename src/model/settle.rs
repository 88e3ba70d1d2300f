//! The retry-or-fail decision for a failed attempt, shared by the built-in worker's
//! executor and the pull API's `fail`, so a job fails the same way whoever ran it.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Longest delay a retry or snooze is put off by: a year.
pub const MAX_DELAY: Duration = Duration::from_secs(365 * 86_400);

/// What becomes of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Run again (after a delay), spending this attempt.
    Retry,
    /// Failed for good: to history.
    Failed,
}

/// A failure the handler (or pull client) calls retryable is retried while attempts
/// remain; a permanent one, or one on the last attempt, fails the job.
pub fn settle(retryable: bool, attempt: i32, max_attempts: i32) -> Settled {
    if retryable && attempt < max_attempts {
        Settled::Retry
    } else {
        Settled::Failed
    }
}

/// `now + delay`, with the delay clamped to [`MAX_DELAY`].
pub fn delayed(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    let delay = chrono::Duration::from_std(delay.min(MAX_DELAY))
        .expect("MAX_DELAY fits in a chrono::Duration");
    now.checked_add_signed(delay).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_failures_retry_until_the_last_attempt() {
        assert_eq!(settle(true, 1, 3), Settled::Retry);
        assert_eq!(settle(true, 2, 3), Settled::Retry);
        assert_eq!(settle(true, 3, 3), Settled::Failed);
        assert_eq!(settle(false, 1, 3), Settled::Failed);
    }

    #[test]
    fn delays_are_capped_at_a_year() {
        let now = Utc::now();
        assert_eq!(
            delayed(now, Duration::from_secs(u64::MAX / 4)),
            delayed(now, MAX_DELAY)
        );
    }
}
