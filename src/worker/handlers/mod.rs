//! Handlers: what running a job of a kind means. `http` and `command` kinds come from
//! ordinaut.toml; Rust programs register async closures for their own kinds.
//!
//! A handler returns an [`Outcome`]; it never decides about retries or backoff (the
//! executor does) and never touches the database.

pub mod command;
pub mod http;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{Config, KindConfig};
use crate::db::kinds::{Published, PublishedKind};
use crate::model::{ClaimedJob, Outcome};
pub use crate::worker::progress::ProgressSink;

/// Everything a handler gets for one attempt.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The claimed job.
    pub job: ClaimedJob,
    /// Worker running it.
    pub worker_id: Uuid,
    /// Cancelled when the attempt must stop (timeout, operator cancel, shutdown). A
    /// handler that owns resources (a child process) stops them and returns promptly;
    /// one that does not may ignore it (its future is dropped soon after).
    pub stop: CancellationToken,
    /// Bytes of output to keep.
    pub output_limit: usize,
    /// Trace context to hand to the program (`traceparent` header, `TRACEPARENT`
    /// variable): the attempt's span while spans are exported, else the enqueuer's.
    pub trace: Option<crate::otel::Carrier>,
    /// Where the attempt reports progress (stored at most once per second per job).
    pub progress: ProgressSink,
}

impl JobContext {
    /// Reports progress: a percentage (0..=100) and a short message. Cheap; the
    /// worker keeps only the latest and stores it at most once per second.
    pub fn report_progress(&self, percent: Option<f64>, message: Option<&str>) {
        self.progress
            .report(self.job.id, self.job.attempt, percent, message);
    }
}

/// A boxed handler future.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Outcome> + Send + 'static>>;

/// Runs one attempt of a job.
pub trait Handler: Send + Sync + 'static {
    /// Runs the attempt to an outcome.
    fn run(&self, ctx: JobContext) -> HandlerFuture;
    /// Timeout configured for the kind, if any.
    fn timeout(&self) -> Option<Duration> {
        None
    }
    /// How long the handler needs after `stop` fires to end its work and return
    /// (a command's SIGTERM-to-SIGKILL grace); the executor waits that long, plus a
    /// little, for its outcome.
    fn stop_grace(&self) -> Duration {
        Duration::ZERO
    }
    /// What the worker publishes about the kind in the registry (type `custom`
    /// without defaults unless the handler says more).
    fn describe(&self) -> KindSpec {
        KindSpec {
            kind_type: "custom".to_owned(),
            ..KindSpec::default()
        }
    }
}

/// A kind as published in the registry.
#[derive(Debug, Clone, Default)]
pub struct KindSpec {
    /// http, command, noop or custom.
    pub kind_type: String,
    /// Enqueue defaults.
    pub defaults: crate::kinds::KindDefaults,
    /// Per-attempt timeout.
    pub timeout: Option<Duration>,
    /// SIGTERM-to-SIGKILL grace.
    pub kill_grace: Option<Duration>,
    /// Payload schema.
    pub payload_schema: Option<serde_json::Value>,
}

impl KindSpec {
    /// The spec of a configured kind.
    pub fn of(kind: &KindConfig) -> KindSpec {
        KindSpec {
            kind_type: kind.type_name().to_owned(),
            defaults: kind.defaults(),
            timeout: kind.timeout(),
            kill_grace: kind.kill_grace(),
            payload_schema: kind.payload_schema().cloned(),
        }
    }
}

struct FnHandler<F>(F);

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin((self.0)(ctx))
    }
}

/// The built-in `noop` type: completes at once, or after `payload.sleep_ms`.
struct NoopHandler {
    config: KindConfig,
}

impl Handler for NoopHandler {
    fn run(&self, ctx: JobContext) -> HandlerFuture {
        let sleep_ms = ctx
            .job
            .payload
            .get("sleep_ms")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        Box::pin(async move {
            if sleep_ms > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {}
                    _ = ctx.stop.cancelled() => return Outcome::Failed { error: "stopped".to_owned(), log: None },
                }
            }
            Outcome::Succeeded {
                output: None,
                log: None,
            }
        })
    }

    fn timeout(&self) -> Option<Duration> {
        self.config.timeout()
    }

    fn describe(&self) -> KindSpec {
        KindSpec::of(&self.config)
    }
}

/// Kind name to handler.
#[derive(Clone, Default)]
pub struct Handlers {
    map: HashMap<String, Arc<dyn Handler>>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.map.keys()).finish()
    }
}

impl Handlers {
    /// The kinds declared in the configuration. Fails (naming the key) when an http
    /// kind's header or signing secret cannot be read from the environment or its file.
    pub fn from_config(config: &Config) -> Result<Handlers, crate::config::ConfigError> {
        let mut handlers = Handlers::default();
        let invalid = |(key, reason)| crate::config::ConfigError::Invalid { key, reason };
        for (name, kind) in &config.kinds {
            let handler: Arc<dyn Handler> = match kind {
                KindConfig::Http(k) => {
                    Arc::new(http::HttpHandler::new(name, k.clone()).map_err(invalid)?)
                }
                KindConfig::Command(k) => {
                    Arc::new(command::CommandHandler::new(name, k.clone()).map_err(invalid)?)
                }
                KindConfig::Noop(_) => Arc::new(NoopHandler {
                    config: kind.clone(),
                }),
            };
            handlers.map.insert(name.clone(), handler);
        }
        Ok(handlers)
    }

    /// What the worker publishes in the registry, one row per kind.
    pub fn published(&self, worker_id: Uuid, hostname: &str) -> Vec<Published> {
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis().min(i64::MAX as u128) as i64);
        let mut rows: Vec<Published> = self
            .map
            .iter()
            .map(|(name, h)| {
                let spec = h.describe();
                Published {
                    kind: PublishedKind {
                        name: name.clone(),
                        kind_type: spec.kind_type,
                        queue: spec.defaults.queue,
                        priority: spec.defaults.priority,
                        max_attempts: spec.defaults.max_attempts,
                        timeout_ms: ms(spec.timeout.or_else(|| h.timeout())),
                        kill_grace_ms: ms(spec.kill_grace),
                        payload_schema: spec.payload_schema,
                    },
                    worker_id,
                    hostname: hostname.to_owned(),
                    published_at: chrono::Utc::now(),
                    worker_alive: true,
                }
            })
            .collect();
        rows.sort_by(|a, b| a.kind.name.cmp(&b.kind.name));
        rows
    }

    /// Registers an async function as the handler of `kind` (replacing any other).
    pub fn register<F, Fut>(&mut self, kind: impl Into<String>, f: F) -> &mut Self
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        self.map.insert(kind.into(), Arc::new(FnHandler(f)));
        self
    }

    /// Registers a handler object for `kind`.
    pub fn register_handler(
        &mut self,
        kind: impl Into<String>,
        handler: Arc<dyn Handler>,
    ) -> &mut Self {
        self.map.insert(kind.into(), handler);
        self
    }

    /// The handler of `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Handler>> {
        self.map.get(kind)
    }

    /// Registered kind names.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }
}
