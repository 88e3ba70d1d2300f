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
use crate::model::{ClaimedJob, Outcome};

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
    timeout: Option<Duration>,
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
        self.timeout
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
    /// The `http` and `command` kinds declared in the configuration.
    pub fn from_config(config: &Config) -> Handlers {
        let mut handlers = Handlers::default();
        for (name, kind) in &config.kinds {
            let handler: Arc<dyn Handler> = match kind {
                KindConfig::Http { .. } => Arc::new(http::HttpHandler::new(kind.clone())),
                KindConfig::Command { .. } => Arc::new(command::CommandHandler::new(kind.clone())),
                KindConfig::Noop { timeout } => Arc::new(NoopHandler { timeout: *timeout }),
            };
            handlers.map.insert(name.clone(), handler);
        }
        handlers
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
