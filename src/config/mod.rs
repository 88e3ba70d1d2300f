//! Configuration: built-in defaults < `ordinaut.toml` < environment, merged by figment.
//!
//! This module owns the names operators type (environment variables, file keys) and
//! turns a bad value into a [`ConfigError`] naming the key; it never panics and never
//! reaches the database.
//!
//! Files by concern: this one holds the settings types and what is derived from them;
//! `defaults` the built-in values, `load` the merge of file and environment (and the
//! variable names), `validate` the range and cross-field rules, and `values` how
//! durations and lists are written.

mod defaults;
pub mod kinds;
mod load;
mod validate;
mod values;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::Invalid;
pub use crate::model::opt_duration;
use crate::model::schedule::{ScheduleInput, ScheduleRules, ScheduleSpec};
pub use kinds::KindConfig;
pub use load::ENV_KEYS;
use values::{duration, string_or_list};

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or environment could not be read or a value has the wrong type.
    #[error("{0}")]
    Load(String),
    /// A value parsed but is out of range or inconsistent.
    #[error("invalid {key}: {reason}")]
    Invalid { key: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, colourless lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// The whole configuration shared by every subcommand.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Postgres connection string; `None` lets `ordinaut dev` start a local cluster.
    pub database_url: Option<String>,
    /// Schema holding Ordinaut's tables.
    pub schema: String,
    /// tracing EnvFilter directive (`info`, `ordinaut=debug`, ...).
    pub log_level: String,
    /// Log output format.
    pub log_format: LogFormat,
    /// Default IANA timezone for schedules.
    pub tz: String,
    /// Largest accepted job payload, in bytes of JSON text.
    pub max_payload_bytes: usize,
    /// Trace UI link for a job's trace id in the dashboard, with `{trace_id}` in it
    /// (`https://jaeger.example/trace/{trace_id}`).
    pub trace_url: Option<String>,
    /// Worker settings.
    pub worker: WorkerConfig,
    /// Lease rescue and other maintenance.
    pub maintenance: MaintenanceConfig,
    /// Settings of `ordinaut api`.
    pub api: ApiConfig,
    /// Job kinds and how to run them.
    pub kinds: BTreeMap<String, KindConfig>,
    /// The kinds registry: which kinds enqueues may name.
    pub registry: RegistryConfig,
    /// Queue settings declared in the file, applied at start by every long-running process.
    pub queues: BTreeMap<String, QueueConfig>,
    /// Scheduler settings.
    pub scheduler: SchedulerConfig,
    /// Schedules declared in the file, synced by `ordinaut scheduler` at start.
    pub schedules: BTreeMap<String, ScheduleInput>,
}

/// The kinds registry (see [`crate::kinds::registry`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Refuse enqueues (API and CLI) of a kind no worker published within `window`,
    /// once any worker has published at all.
    pub check_unknown_kinds: bool,
    /// How long a kind stays known after its last publish.
    #[serde(with = "duration")]
    pub window: Duration,
}

/// Settings of `ordinaut scheduler`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Seconds a fire may be late and still run; later ones are skipped and recorded.
    pub misfire_grace_time: f64,
    /// Seconds between checks for due schedules.
    pub tick: f64,
    /// File `ordinaut scheduler` rewrites after every tick for `healthcheck --scheduler`
    /// (default: `$TMPDIR/ordinaut-scheduler.heartbeat`).
    #[serde(default)]
    pub heartbeat_file: Option<PathBuf>,
}

/// A queue declared in ordinaut.toml. Its limits are exactly what the file says (a
/// limit removed from the file is removed from the queue); other unset fields keep
/// their current values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Most jobs of the queue running at once across the cluster.
    pub concurrency_limit: Option<i32>,
    /// Job starts per period, e.g. "10/s".
    pub rate_limit: Option<String>,
    /// Starts allowed at once (default: the rate).
    pub burst: Option<i32>,
    /// Most running jobs per concurrency key.
    pub key_concurrency: Option<i32>,
    /// Default attempts for jobs that set none.
    pub max_attempts: Option<i32>,
    /// Default per-attempt timeout.
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Keep completed jobs in history.
    pub keep_completed: Option<bool>,
}

/// Settings of `ordinaut worker`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Jobs run at once by one worker process.
    pub concurrency: usize,
    /// Queues this worker claims from.
    #[serde(deserialize_with = "string_or_list")]
    pub queues: Vec<String>,
    /// Lease length; a heartbeat extends it while the job runs.
    pub lease_seconds: u64,
    /// Fallback poll interval in seconds when no NOTIFY arrives.
    pub poll_interval: f64,
    /// Retries after the first attempt when a job sets no max_attempts.
    pub max_retries: u32,
    /// First retry delay in seconds; doubles per attempt.
    pub backoff_base: f64,
    /// Longest retry delay in seconds.
    pub backoff_max_delay: f64,
    /// Seconds running jobs get to finish after SIGTERM before they are handed back.
    pub shutdown_grace: f64,
    /// Bytes of handler output (response body, stdout+stderr) kept per attempt.
    pub output_limit_bytes: usize,
    /// Jobs claimed beyond the free slots while jobs are fast (under 5 ms on average).
    pub prefetch: usize,
    /// Shortest snooze in seconds: a shorter requested delay (`Retry-After: 0`) waits this.
    pub snooze_min: f64,
    /// Snoozes per job that give their attempt back; each later one counts as a failed
    /// attempt, so a target that always says "later" is not called forever.
    pub max_snoozes: u32,
    /// `host:port` where a worker serves `/metrics` and `/health`; unset serves nothing.
    #[serde(default)]
    pub metrics_addr: Option<String>,
}

/// Maintenance settings (rescuer).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Seconds between rescue passes (dead workers, expired leases).
    pub rescue_interval: f64,
    /// Seconds after a Postgres restart during which workers get to re-take their
    /// locks before their jobs are handed back.
    pub restart_grace: f64,
    /// Days of finished jobs and attempt records kept (whole daily partitions dropped).
    pub history_retention_days: u32,
}

/// Settings of `ordinaut api`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to bind.
    pub host: String,
    /// Port to bind (0 picks a free one).
    pub port: u16,
    /// Bearer tokens accepted on `/v1`; empty leaves `/v1` open (a warning is logged).
    #[serde(deserialize_with = "string_or_list")]
    pub tokens: Vec<String>,
    /// Bearer tokens that may read `/v1` and the dashboard but change nothing (403).
    #[serde(deserialize_with = "string_or_list")]
    pub readonly_tokens: Vec<String>,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Most jobs in one batch enqueue.
    pub max_batch: usize,
    /// Longest, in seconds, a `?wait=` (at most 120) or a pull claim's `wait` (at most
    /// 60) holds its request: keep it under a load balancer's idle timeout.
    pub max_wait: f64,
    /// Require a token on `/metrics` too.
    pub metrics_auth: bool,
    /// Database connections of the API process (one is the event listener's).
    pub db_pool_size: u32,
}

/// Tokens as a log line or an error message may show them: how many, never their text.
pub struct Redacted<'a>(pub &'a [String]);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} redacted]", self.0.len())
    }
}

// Written by hand so that tokens never reach a log line or an error message.
impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tokens", &Redacted(&self.tokens))
            .field("readonly_tokens", &Redacted(&self.readonly_tokens))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_batch", &self.max_batch)
            .field("max_wait", &self.max_wait)
            .field("metrics_auth", &self.metrics_auth)
            .field("db_pool_size", &self.db_pool_size)
            .finish()
    }
}

impl Config {
    /// What schedules are checked against: TZ and the payload limit.
    pub fn schedule_rules(&self) -> ScheduleRules {
        ScheduleRules {
            default_timezone: self.tz.clone(),
            max_payload_bytes: self.max_payload_bytes,
        }
    }

    /// The schedule `name` declared in the file, validated.
    pub fn declared_schedule(
        &self,
        name: &str,
        s: &ScheduleInput,
    ) -> Result<ScheduleSpec, Invalid> {
        let input = ScheduleInput {
            name: name.to_owned(),
            ..s.clone()
        };
        crate::model::schedule::validate(&input, &self.schedule_rules())
    }

    /// The lease length as a Duration.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.worker.lease_seconds)
    }

    /// max_attempts for jobs that name none: the first try plus the retries.
    pub fn default_max_attempts(&self) -> i32 {
        self.worker.max_retries as i32 + 1
    }
}
