//! Domain vocabulary shared by every layer: job states, outcomes, names, limits,
//! durations, schedules, backoff. The rules for a caller's values are written here once;
//! the API, CLI, configuration, worker and scheduler convert into these types and report
//! [`Invalid`].
//!
//! Nothing here touches the database or the network.

pub mod cron;
mod duration;
pub mod flat_schema;
mod invalid;
pub mod limits;
mod names;
pub mod schedule;
mod settle;

pub use duration::{Zero, opt_duration, parse_duration, parse_wire_duration};
pub use invalid::Invalid;
pub use limits::{PRIORITY_MAX, PRIORITY_MIN, validate_priority};
pub use names::{MAX_NAME_LEN, NAME_PATTERN, check_name, validate_name, validate_schema};
pub use settle::{MAX_DELAY, Settled, delayed, settle};

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a job is in its life. `Scheduled`, `Available` and `Running` rows live in
/// `due_work`; `Completed`, `Failed` and `Cancelled` in `job_history`; a `Waiting` job is
/// a workflow step whose dependencies have not all ended (a `workflow_steps` row only:
/// visible, never claimable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = StateName, description = "A job's state.")]
pub enum JobState {
    /// A workflow step waiting for its dependencies; not claimable.
    Waiting,
    /// Waiting for its run_at.
    Scheduled,
    /// Due, waiting for a worker.
    Available,
    /// Leased by a worker.
    Running,
    /// Finished successfully.
    Completed,
    /// Out of attempts, or failed permanently.
    Failed,
    /// Cancelled by an operator.
    Cancelled,
}

impl JobState {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Scheduled => "scheduled",
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// True for states kept in job_history.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: column widths (`{:<10}`) apply to it like to a `&str`.
        f.pad(self.as_str())
    }
}

/// A stored state name, as read from a row.
impl TryFrom<String> for JobState {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "waiting" => JobState::Waiting,
            "scheduled" => JobState::Scheduled,
            "available" => JobState::Available,
            "running" => JobState::Running,
            "completed" => JobState::Completed,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            other => {
                return Err(format!(
                    "unknown state {other:?}; expected waiting, scheduled, available, running, completed, failed or cancelled"
                ));
            }
        })
    }
}

/// What one attempt of a job came to. Never a Rust `Err`: a failing job is a result.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done; output kept in history.
    Succeeded {
        output: Option<serde_json::Value>,
        log: Option<String>,
    },
    /// Failed; retried with backoff while attempts remain.
    Retry { error: String, log: Option<String> },
    /// Failed for good, whatever attempts remain.
    Failed { error: String, log: Option<String> },
    /// Not done yet; run again after `after` (at least the worker's `snooze_min`, at most
    /// a year) without spending an attempt, up to the worker's `max_snoozes` per job;
    /// later snoozes count as failed attempts.
    Snoozed {
        after: Duration,
        reason: String,
        log: Option<String>,
    },
    /// Stopped by an operator's cancel.
    Cancelled { log: Option<String> },
    /// Stopped because the worker is shutting down; handed back without spending an attempt.
    Interrupted,
}

// One type for what a worker runs and what `POST /v1/pull/claim` answers: its doc
// comments are the OpenAPI document's `ClaimedJob`. On the wire the timeout is in ms and
// the schedule is left out.
/// A claimed job.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClaimedJob {
    /// Job id.
    pub id: Uuid,
    /// Queue.
    pub queue: String,
    /// Kind.
    pub kind: String,
    /// Payload.
    pub payload: serde_json::Value,
    /// This attempt's number, from 1. Send it back with heartbeats, completes and
    /// fails: an outcome for any other attempt is refused (409 `stale_attempt`).
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Per-attempt timeout in ms set at enqueue.
    #[serde(rename = "timeout_ms", serialize_with = "millis")]
    #[schema(value_type = Option<i64>)]
    pub timeout: Option<Duration>,
    /// Metadata set at enqueue.
    pub metadata: serde_json::Value,
    /// Schedule that created it.
    #[serde(skip)]
    pub schedule_id: Option<Uuid>,
    /// When the job was due.
    pub run_at: DateTime<Utc>,
    /// When this attempt started.
    pub attempted_at: DateTime<Utc>,
}

/// Serialises a timeout as whole milliseconds.
fn millis<S: serde::Serializer>(timeout: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    timeout.map(|t| t.as_millis() as i64).serialize(s)
}

/// `base` scaled by a random factor in [0.8, 1.2], so replicas do not poll in lockstep.
pub fn jittered(base: Duration) -> Duration {
    base.mul_f64(rand::rng().random_range(0.8..1.2))
}

/// Exponential backoff with jitter: `min(base * 2^(attempt-1), max)`, then scaled by a
/// random factor in [0.75, 1.25] (never above `max`).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay after the first failed attempt.
    pub base: Duration,
    /// Upper bound.
    pub max: Duration,
}

impl Backoff {
    /// The nominal delay after `attempt` (1-based), before jitter.
    pub fn nominal(&self, attempt: i32) -> Duration {
        let exp = attempt.saturating_sub(1).clamp(0, 30) as u32;
        let raw = self.base.as_secs_f64() * f64::from(2u32.pow(exp));
        Duration::from_secs_f64(raw.min(self.max.as_secs_f64()))
    }

    /// The delay after `attempt` with ±25% jitter, capped at `max`.
    pub fn delay(&self, attempt: i32) -> Duration {
        let nominal = self.nominal(attempt).as_secs_f64();
        let factor: f64 = rand::rng().random_range(0.75..=1.25);
        Duration::from_secs_f64((nominal * factor).min(self.max.as_secs_f64()))
    }
}

/// Parses a rate: `10/s`, `100/m`, `5/h`, `1/d` or `20/10s` (count per duration).
pub fn parse_rate(text: &str) -> Result<(i32, Duration), String> {
    let (count, per) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not of the form N/period (e.g. 10/s)"))?;
    let count: i32 = count
        .trim()
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("{text:?}: count must be a positive integer"))?;
    let period = match per.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86_400),
        other => humantime::parse_duration(other)
            .map_err(|e| format!("{text:?}: bad period {other:?}: {e}"))?,
    };
    if period < Duration::from_millis(1) {
        return Err(format!("{text:?}: period must be at least 1ms"));
    }
    Ok((count, period))
}

/// Cuts `text` to at most `limit` bytes on a char boundary, marking the cut.
pub fn truncate_output(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[... {} bytes truncated]",
        &text[..end],
        text.len() - end
    )
}

/// Longest error text kept per attempt (handler errors, pull-model `fail` errors).
pub const MAX_ERROR_BYTES: usize = 16 * 1024;
/// Longest number text kept as a JSON number; longer ones are stored as strings.
const MAX_NUMBER_CHARS: usize = 1000;

/// Text as Postgres `text` can store it, cut to at most `limit` bytes (marked): U+0000,
/// which `text` refuses (SQLSTATE 22021), becomes U+FFFD. Rust strings are valid UTF-8
/// already; handlers decode raw bytes lossily.
pub fn storable_text(text: String, limit: usize) -> String {
    let text = if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    };
    if text.len() <= limit {
        text
    } else {
        truncate_output(&text, limit)
    }
}

/// A JSON value as `jsonb` can store it, bounded by `limit` bytes of JSON text:
/// U+0000 in strings and keys (refused with 22P05) becomes U+FFFD; numbers outside
/// what `numeric` holds (`1e999999`, refused with 22003; serde_json's
/// arbitrary_precision accepts them) and absurdly long ones become strings of their
/// text; a value whose JSON is longer than `limit` is replaced by a string holding its
/// first `limit` bytes, marked as cut.
pub fn storable_json(value: serde_json::Value, limit: usize) -> serde_json::Value {
    let value = clean_json(value);
    // Serialising a Value cannot fail: keys are strings and numbers are checked above.
    let text = serde_json::to_string(&value).unwrap_or_default();
    if text.len() <= limit {
        value
    } else {
        serde_json::Value::String(truncate_output(&text, limit))
    }
}

fn clean_json(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => Value::String(s.replace('\0', "\u{FFFD}")),
        Value::Number(n) if !storable_number(&n) => Value::String(n.to_string()),
        Value::Array(items) => Value::Array(items.into_iter().map(clean_json).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let k = if k.contains('\0') {
                        k.replace('\0', "\u{FFFD}")
                    } else {
                        k
                    };
                    (k, clean_json(v))
                })
                .collect(),
        ),
        other => other,
    }
}

/// True when Postgres `numeric` (inside jsonb) accepts the number as written. Checked
/// conservatively through f64: finite, not a vanishing exponent form, not huge text.
fn storable_number(n: &serde_json::Number) -> bool {
    let text = n.to_string();
    if text.len() > MAX_NUMBER_CHARS {
        return false;
    }
    let Some(v) = n.as_f64().filter(|v| v.is_finite()) else {
        return false;
    };
    if v == 0.0 {
        // Plain "0", "-0.000"; an exponent form may hide an out-of-range scale.
        !text.contains(['e', 'E'])
    } else {
        v.abs() >= 1e-300
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        assert_eq!(b.nominal(1), Duration::from_secs(1));
        assert_eq!(b.nominal(3), Duration::from_secs(4));
        assert_eq!(b.nominal(20), Duration::from_secs(60));
        for attempt in 1..10 {
            let d = b.delay(attempt).as_secs_f64();
            let n = b.nominal(attempt).as_secs_f64();
            assert!(
                d >= n * 0.75 - 1e-9 && d <= (n * 1.25).min(60.0) + 1e-9,
                "attempt {attempt}: {d} vs {n}"
            );
        }
    }

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("10/s"), Ok((10, Duration::from_secs(1))));
        assert_eq!(parse_rate("20/10s"), Ok((20, Duration::from_secs(10))));
        assert_eq!(parse_rate("5/h"), Ok((5, Duration::from_secs(3600))));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("ten/s").is_err());
        assert!(parse_rate("10").is_err());
    }

    #[test]
    fn storable_json_replaces_nul_and_out_of_range_numbers() {
        let raw: serde_json::Value =
            serde_json::from_str(r#"{"s":"a\u0000b","k\u0000":1,"n":1e999999,"m":-1e-999999,"ok":[1.5,0,12345678901234567890]}"#)
                .expect("valid JSON");
        let v = storable_json(raw, 1 << 20);
        assert_eq!(v["s"], "a\u{FFFD}b");
        assert_eq!(v["k\u{FFFD}"], 1);
        assert_eq!(v["n"], "1e+999999");
        assert_eq!(v["m"], "-1e-999999");
        assert_eq!(v["ok"].to_string(), "[1.5,0,12345678901234567890]");
        let big = storable_json(serde_json::json!({"x": "y".repeat(5000)}), 100);
        assert!(
            big.as_str().is_some_and(|s| s.contains("truncated")),
            "{big}"
        );
    }

    #[test]
    fn output_is_truncated_on_char_boundary() {
        let t = truncate_output("héllo", 2);
        assert!(t.starts_with('h'));
        assert!(t.contains("truncated"));
    }
}
