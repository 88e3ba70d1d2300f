//! Configuration: built-in defaults < `ordinaut.toml` < environment, merged by figment.
//!
//! This module owns the names operators type (environment variables, file keys) and
//! turns a bad value into a [`ConfigError`] naming the key; it never panics and never
//! reaches the database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

pub use crate::kinds::KindConfig;
use crate::model::schedule::{Origin, ScheduleInput, ScheduleRules, ScheduleSpec};
use crate::model::{Invalid, limits, validate_name, validate_schema};

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

/// Environment variables Ordinaut reads, with the config key each one sets.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("DATABASE_URL", "database_url"),
    ("ORDINAUT_SCHEMA", "schema"),
    ("LOG_LEVEL", "log_level"),
    ("LOG_FORMAT", "log_format"),
    ("TZ", "tz"),
    ("ORDINAUT_MAX_PAYLOAD_BYTES", "max_payload_bytes"),
    ("WORKER_CONCURRENCY", "worker.concurrency"),
    ("WORKER_QUEUES", "worker.queues"),
    ("WORKER_LEASE_SECONDS", "worker.lease_seconds"),
    ("WORKER_POLL_INTERVAL", "worker.poll_interval"),
    ("WORKER_MAX_RETRIES", "worker.max_retries"),
    ("WORKER_BACKOFF_BASE", "worker.backoff_base"),
    ("WORKER_BACKOFF_MAX_DELAY", "worker.backoff_max_delay"),
    ("WORKER_SHUTDOWN_GRACE", "worker.shutdown_grace"),
    ("WORKER_OUTPUT_LIMIT_BYTES", "worker.output_limit_bytes"),
    ("WORKER_PREFETCH", "worker.prefetch"),
    ("WORKER_SNOOZE_MIN", "worker.snooze_min"),
    ("WORKER_MAX_SNOOZES", "worker.max_snoozes"),
    ("WORKER_METRICS_ADDR", "worker.metrics_addr"),
    ("RESCUER_INTERVAL", "maintenance.rescue_interval"),
    (
        "HISTORY_RETENTION_DAYS",
        "maintenance.history_retention_days",
    ),
    (
        "SCHEDULER_MISFIRE_GRACE_TIME",
        "scheduler.misfire_grace_time",
    ),
    ("SCHEDULER_TICK", "scheduler.tick"),
    ("SCHEDULER_HEARTBEAT_FILE", "scheduler.heartbeat_file"),
    ("API_HOST", "api.host"),
    ("API_PORT", "api.port"),
    ("API_TOKENS", "api.tokens"),
    ("API_READONLY_TOKENS", "api.readonly_tokens"),
    ("API_MAX_BODY_BYTES", "api.max_body_bytes"),
    ("API_MAX_BATCH", "api.max_batch"),
    ("API_MAX_WAIT", "api.max_wait"),
    ("API_METRICS_AUTH", "api.metrics_auth"),
    ("API_DB_POOL_SIZE", "api.db_pool_size"),
    (
        "ORDINAUT_CHECK_UNKNOWN_KINDS",
        "registry.check_unknown_kinds",
    ),
    ("ORDINAUT_KINDS_WINDOW", "registry.window"),
];

/// Log output format.
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
    pub schedules: BTreeMap<String, ScheduleConfig>,
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

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            check_unknown_kinds: true,
            window: Duration::from_secs(600),
        }
    }
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

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            misfire_grace_time: 30.0,
            tick: 0.2,
            heartbeat_file: None,
        }
    }
}

/// A schedule declared in ordinaut.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Cron expression (5 or 6 fields, or @daily-style).
    pub cron: String,
    /// IANA timezone (default: TZ).
    pub timezone: Option<String>,
    /// Job queue.
    pub queue: String,
    /// Job kind.
    pub kind: String,
    /// Job payload (a TOML table, sent as JSON).
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
    /// Job priority.
    #[serde(default)]
    pub priority: i32,
    /// Job max attempts.
    pub max_attempts: Option<i32>,
    /// Job timeout.
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Job unique key.
    pub unique_key: Option<String>,
    /// allow (default) or skip.
    pub overlap: Option<String>,
    /// Misfire grace for this schedule.
    #[serde(default, with = "opt_duration")]
    pub misfire_grace: Option<Duration>,
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

// Written by hand so that tokens never reach a log line or an error message.
impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tokens", &format_args!("[{} redacted]", self.tokens.len()))
            .field(
                "readonly_tokens",
                &format_args!("[{} redacted]", self.readonly_tokens.len()),
            )
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_batch", &self.max_batch)
            .field("max_wait", &self.max_wait)
            .field("metrics_auth", &self.metrics_auth)
            .field("db_pool_size", &self.db_pool_size)
            .finish()
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            host: "0.0.0.0".to_owned(),
            port: 8080,
            tokens: Vec::new(),
            readonly_tokens: Vec::new(),
            max_body_bytes: 1024 * 1024,
            max_batch: 1000,
            max_wait: 120.0,
            metrics_auth: false,
            db_pool_size: 10,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: None,
            schema: "public".to_owned(),
            log_level: "info".to_owned(),
            log_format: LogFormat::Pretty,
            tz: "UTC".to_owned(),
            max_payload_bytes: 1024 * 1024,
            worker: WorkerConfig::default(),
            maintenance: MaintenanceConfig::default(),
            api: ApiConfig::default(),
            kinds: BTreeMap::new(),
            registry: RegistryConfig::default(),
            queues: BTreeMap::new(),
            scheduler: SchedulerConfig::default(),
            schedules: BTreeMap::new(),
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 32,
            queues: vec!["default".to_owned()],
            lease_seconds: 60,
            poll_interval: 0.5,
            max_retries: 3,
            backoff_base: 1.0,
            backoff_max_delay: 60.0,
            shutdown_grace: 30.0,
            output_limit_bytes: 64 * 1024,
            prefetch: 4096,
            snooze_min: 1.0,
            max_snoozes: 100,
            metrics_addr: None,
        }
    }
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            rescue_interval: 1.0,
            restart_grace: 10.0,
            history_retention_days: 30,
        }
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
        s: &ScheduleConfig,
    ) -> Result<ScheduleSpec, Invalid> {
        let input = ScheduleInput {
            name: name.to_owned(),
            cron: s.cron.clone(),
            timezone: s.timezone.clone(),
            queue: s.queue.clone(),
            kind: s.kind.clone(),
            payload: s.payload.clone(),
            priority: s.priority,
            max_attempts: s.max_attempts,
            timeout: s.timeout,
            unique_key: s.unique_key.clone(),
            overlap: s.overlap.clone(),
            misfire_grace: s.misfire_grace,
        };
        crate::model::schedule::validate(&input, &self.schedule_rules(), Origin::Declared)
    }

    /// Loads defaults, then the file (if any), then the environment, and validates.
    ///
    /// The file is `path` if given, else `$ORDINAUT_CONFIG`, else `./ordinaut.toml` when
    /// it exists.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let explicit = path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("ORDINAUT_CONFIG").map(PathBuf::from))
            // `ORDINAUT_CONFIG=` (an env file's empty line) means unset, as for every key.
            .filter(|p| !p.as_os_str().is_empty());
        let file = match explicit {
            Some(p) if !p.exists() => {
                return Err(ConfigError::Load(format!(
                    "config file {} does not exist",
                    p.display()
                )));
            }
            Some(p) => Some(p),
            None => Some(PathBuf::from("ordinaut.toml")).filter(|p| p.exists()),
        };
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = &file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(env_provider());
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Load(describe(e)))?;
        // `metrics_addr = ""` in a file means "none", not an address.
        config.worker.metrics_addr = config.worker.metrics_addr.filter(|a| !a.trim().is_empty());
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and cross-field rules that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| ConfigError::Invalid {
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        validate_schema(&self.schema).map_err(|reason| invalid("ORDINAUT_SCHEMA", &reason))?;
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(invalid(
                "LOG_LEVEL",
                "not a valid level or filter directive",
            ));
        }
        if self.tz.parse::<chrono_tz::Tz>().is_err() {
            return Err(invalid(
                "TZ",
                &format!("unknown IANA timezone {:?}", self.tz),
            ));
        }
        if self.max_payload_bytes == 0 {
            return Err(invalid("ORDINAUT_MAX_PAYLOAD_BYTES", "must be positive"));
        }
        let w = &self.worker;
        if w.concurrency == 0 || w.concurrency > 10_000 {
            return Err(invalid("WORKER_CONCURRENCY", "must be between 1 and 10000"));
        }
        if w.queues.is_empty() {
            return Err(invalid("WORKER_QUEUES", "must name at least one queue"));
        }
        for q in &w.queues {
            validate_name(q).map_err(|reason| invalid("WORKER_QUEUES", &reason))?;
        }
        if let Some(addr) = &w.metrics_addr
            && addr.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(invalid(
                "WORKER_METRICS_ADDR",
                &format!("{addr:?} is not an address like 0.0.0.0:9090"),
            ));
        }
        if w.lease_seconds < 2 {
            return Err(invalid("WORKER_LEASE_SECONDS", "must be at least 2"));
        }
        for (key, value) in [
            ("WORKER_POLL_INTERVAL", w.poll_interval),
            ("WORKER_BACKOFF_BASE", w.backoff_base),
            ("WORKER_BACKOFF_MAX_DELAY", w.backoff_max_delay),
            ("SCHEDULER_TICK", self.scheduler.tick),
            ("RESCUER_INTERVAL", self.maintenance.rescue_interval),
        ] {
            if !(value.is_finite() && value > 0.0 && value < 1e7) {
                return Err(invalid(key, "must be a positive number of seconds"));
            }
        }
        if !(w.snooze_min.is_finite() && w.snooze_min >= 0.0 && w.snooze_min <= 86_400.0) {
            return Err(invalid(
                "WORKER_SNOOZE_MIN",
                "must be between 0 and 86400 seconds",
            ));
        }
        if !(w.shutdown_grace.is_finite() && w.shutdown_grace >= 0.0 && w.shutdown_grace < 1e7) {
            return Err(invalid(
                "WORKER_SHUTDOWN_GRACE",
                "must be zero or a positive number of seconds",
            ));
        }
        if !(self.scheduler.misfire_grace_time.is_finite()
            && self.scheduler.misfire_grace_time >= 0.0)
        {
            return Err(invalid(
                "SCHEDULER_MISFIRE_GRACE_TIME",
                "must be zero or a positive number of seconds",
            ));
        }
        if self.maintenance.history_retention_days == 0 {
            return Err(invalid("HISTORY_RETENTION_DAYS", "must be at least 1"));
        }
        for (name, s) in &self.schedules {
            self.declared_schedule(name, s)
                .map_err(|reason| invalid(&format!("schedules.{name}"), &reason.to_string()))?;
        }
        if w.prefetch > 100_000 {
            return Err(invalid("WORKER_PREFETCH", "must be at most 100000"));
        }
        if w.max_retries > 999 {
            return Err(invalid("WORKER_MAX_RETRIES", "must be at most 999"));
        }
        for (name, q) in &self.queues {
            let key = format!("queues.{name}");
            validate_name(name).map_err(|reason| invalid(&key, &reason))?;
            for (field, value) in [
                ("concurrency_limit", q.concurrency_limit),
                ("burst", q.burst),
                ("key_concurrency", q.key_concurrency),
            ] {
                if value.is_some_and(|v| v < 1) {
                    return Err(invalid(&format!("{key}.{field}"), "must be at least 1"));
                }
            }
            if let Some(rate) = &q.rate_limit {
                crate::model::parse_rate(rate)
                    .map_err(|reason| invalid(&format!("{key}.rate_limit"), &reason))?;
            }
            if q.burst.is_some() && q.rate_limit.is_none() {
                return Err(invalid(&format!("{key}.burst"), "needs rate_limit"));
            }
            if q.max_attempts
                .is_some_and(|n| !limits::MAX_ATTEMPTS.contains(&n))
            {
                return Err(invalid(
                    &format!("{key}.max_attempts"),
                    "must be between 1 and 1000",
                ));
            }
        }
        self.validate_api()?;
        for (name, kind) in &self.kinds {
            crate::kinds::validate_kind(name, kind)
                .map_err(|(key, reason)| invalid(&key, &reason))?;
        }
        // Workers re-publish every minute: a shorter window would forget live kinds.
        if self.registry.window < crate::kinds::registry::PUBLISH_INTERVAL * 2 {
            return Err(invalid(
                "ORDINAUT_KINDS_WINDOW",
                "must be at least 2m (workers re-publish their kinds every minute)",
            ));
        }
        Ok(())
    }

    fn validate_api(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| ConfigError::Invalid {
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        let a = &self.api;
        let host_ok = !a.host.is_empty()
            && a.host.len() <= 253
            && a.host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if !host_ok {
            return Err(invalid("API_HOST", "must be an IP address or host name"));
        }
        for (key, tokens) in [
            ("API_TOKENS", &a.tokens),
            ("API_READONLY_TOKENS", &a.readonly_tokens),
        ] {
            for token in tokens {
                // Never echo the token itself: the message may end up in a log.
                if token.is_empty() || token.chars().any(|c| !c.is_ascii_graphic()) {
                    return Err(invalid(
                        key,
                        "each token must be non-empty printable ASCII without spaces",
                    ));
                }
            }
        }
        if a.readonly_tokens.iter().any(|t| a.tokens.contains(t)) {
            return Err(invalid(
                "API_READONLY_TOKENS",
                "a token cannot be both read-only and in API_TOKENS",
            ));
        }
        if !(1..=1024 * 1024 * 1024).contains(&a.max_body_bytes) {
            return Err(invalid(
                "API_MAX_BODY_BYTES",
                "must be between 1 and 1073741824",
            ));
        }
        if !(1..=100_000).contains(&a.max_batch) {
            return Err(invalid("API_MAX_BATCH", "must be between 1 and 100000"));
        }
        if !(a.max_wait.is_finite() && (0.0..=120.0).contains(&a.max_wait)) {
            return Err(invalid("API_MAX_WAIT", "must be between 0 and 120 seconds"));
        }
        // At least the event listener's connection and one for requests.
        if !(2..=1000).contains(&a.db_pool_size) {
            return Err(invalid("API_DB_POOL_SIZE", "must be between 2 and 1000"));
        }
        Ok(())
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

/// Environment variables under their documented names, mapped onto config keys.
///
/// A variable set to the empty string counts as unset: env files (compose, systemd
/// `EnvironmentFile=`, `set -a; . ./.env`) write `KEY=` for "use the default".
fn env_provider() -> Env {
    Env::raw()
        .filter_map(|key| {
            if std::env::var_os(key.as_str()).is_some_and(|v| v.is_empty()) {
                return None;
            }
            let upper = key.as_str().to_ascii_uppercase();
            ENV_KEYS
                .iter()
                .find(|(env, _)| *env == upper)
                .map(|(_, path)| (*path).into())
        })
        .split(".")
}

/// One line naming the key, where it came from, and the problem.
fn describe(error: figment::Error) -> String {
    let mut out = Vec::new();
    for e in error {
        let key = e.path.join(".");
        let env_name = ENV_KEYS
            .iter()
            .find(|(_, path)| *path == key)
            .map(|(env, _)| *env);
        let source = match (&e.metadata, env_name) {
            (Some(m), Some(env)) if m.name.contains("environment") => {
                format!("environment variable {env}")
            }
            (Some(m), _) => match &m.source {
                Some(src) => format!("{key} in {src}"),
                None => format!("{key} in {}", m.name),
            },
            (None, _) if key.is_empty() => "configuration".to_owned(),
            (None, _) => key.clone(),
        };
        out.push(format!("invalid {source}: {}", e.kind));
    }
    out.join("; ")
}

fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
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
mod duration {
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
