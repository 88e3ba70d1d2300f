//! The built-in values: the lowest layer of the merge, below the file and the environment.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{
    ApiConfig, Config, LogFormat, MaintenanceConfig, RegistryConfig, SchedulerConfig, WorkerConfig,
};

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            check_unknown_kinds: true,
            window: Duration::from_secs(600),
        }
    }
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
            trace_url: None,
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
