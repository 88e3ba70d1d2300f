//! The rules serde cannot express: ranges and cross-field checks, each failure a
//! [`ConfigError::Invalid`] naming the variable or file key.

use super::{Config, ConfigError};
use crate::model::{limits, validate_name, validate_schema};

impl Config {
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
        if let Some(url) = &self.trace_url
            && (!url.contains("{trace_id}")
                || !(url.starts_with("https://") || url.starts_with("http://")))
        {
            return Err(invalid(
                "ORDINAUT_TRACE_URL",
                "must be an http(s) URL containing {trace_id}",
            ));
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
            super::kinds::validate_kind(name, kind)
                .map_err(|(key, reason)| invalid(&key, &reason))?;
        }
        // Workers re-publish every minute: a shorter window would forget live kinds.
        if self.registry.window < super::kinds::PUBLISH_INTERVAL * 2 {
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
}
