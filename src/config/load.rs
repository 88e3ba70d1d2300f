//! Merging defaults < file < environment, and the names of the environment variables;
//! a value of the wrong type becomes a [`ConfigError::Load`] naming the key and its source.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use super::{Config, ConfigError};

/// Environment variables Ordinaut reads, with the config key each one sets.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("DATABASE_URL", "database_url"),
    ("ORDINAUT_SCHEMA", "schema"),
    ("LOG_LEVEL", "log_level"),
    ("LOG_FORMAT", "log_format"),
    ("TZ", "tz"),
    ("ORDINAUT_MAX_PAYLOAD_BYTES", "max_payload_bytes"),
    ("ORDINAUT_TRACE_URL", "trace_url"),
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

impl Config {
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
