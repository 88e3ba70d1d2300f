//! Trace context of jobs: captured at enqueue, stored with the job, continued by its
//! attempts and handed to the program that runs it.
//!
//! A job's context is the W3C `traceparent` (and `tracestate`) of the span that
//! enqueued it, kept in the job's `metadata` under the keys [`TRACEPARENT`] and
//! [`TRACESTATE`] (so it travels to `job_history` with the row and costs no column,
//! index or statement on the hot path). Never baggage: that is unbounded user data.
//!
//! - The first attempt is a child of the enqueuing span; later attempts start a trace
//!   of their own with a link to it (a retry may run hours later).
//! - While spans are exported, the span handed downstream is the attempt's; without an
//!   exporter the stored context is passed through unchanged, so the caller's trace
//!   still reaches the program.
//! - Span names and attributes follow the OpenTelemetry messaging conventions:
//!   `send {queue}` (producer), `process {queue}` (consumer), `settle {queue}` (the
//!   finish write), with `messaging.system = "ordinaut"`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use uuid::Uuid;

/// Metadata key holding a job's W3C `traceparent`.
pub const TRACEPARENT: &str = "traceparent";
/// Metadata key holding a job's W3C `tracestate`, when it had one.
pub const TRACESTATE: &str = "tracestate";
/// Session setting `ordinaut_enqueue` reads when called without `traceparent`.
pub const SESSION_SETTING: &str = "ordinaut.traceparent";
/// `messaging.system` of every Ordinaut span.
pub const SYSTEM: &str = "ordinaut";

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Marks spans as exported (set once by telemetry::init when an OTLP pipeline runs).
pub fn set_exporting(on: bool) {
    EXPORTING.store(on, Ordering::Relaxed);
}

/// True when spans are exported; without it no job span is built at all.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// A W3C trace context as carried by headers, environment variables and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carrier {
    /// `traceparent`, normalised (`00-<trace id>-<span id>-<flags>`).
    pub traceparent: String,
    /// `tracestate`, when there was one.
    pub tracestate: Option<String>,
}

impl Carrier {
    /// Parses a `traceparent` (and its `tracestate`); None when it is not a valid one.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Carrier> {
        let mut map = HashMap::with_capacity(2);
        map.insert(TRACEPARENT.to_owned(), traceparent.trim().to_owned());
        if let Some(state) = tracestate.filter(|s| !s.trim().is_empty()) {
            map.insert(TRACESTATE.to_owned(), state.trim().to_owned());
        }
        let cx = TraceContextPropagator::new().extract(&map);
        Carrier::of_context(&cx)
    }

    /// The context of an OpenTelemetry context's span; None when it has none.
    pub fn of_context(cx: &Context) -> Option<Carrier> {
        if !cx.span().span_context().is_valid() {
            return None;
        }
        let mut map = HashMap::with_capacity(2);
        TraceContextPropagator::new().inject_context(cx, &mut map);
        Some(Carrier {
            traceparent: map.remove(TRACEPARENT)?,
            tracestate: map.remove(TRACESTATE).filter(|s| !s.is_empty()),
        })
    }

    /// The context of a tracing span (None unless spans are exported).
    pub fn of_span(span: &tracing::Span) -> Option<Carrier> {
        if !exporting() {
            return None;
        }
        Carrier::of_context(&span.context())
    }

    /// `TRACEPARENT` / `TRACESTATE` of this process's environment (the convention of
    /// otel-cli and the OpenTelemetry environment-carrier specification).
    pub fn from_env() -> Result<Option<Carrier>, String> {
        let Ok(parent) = std::env::var("TRACEPARENT") else {
            return Ok(None);
        };
        if parent.trim().is_empty() {
            return Ok(None);
        }
        let state = std::env::var("TRACESTATE").ok();
        Carrier::parse(&parent, state.as_deref())
            .map(Some)
            .ok_or_else(|| format!("TRACEPARENT {parent:?} is not a W3C traceparent"))
    }

    /// The context stored in a job's metadata, if any (and valid).
    pub fn from_metadata(metadata: &serde_json::Value) -> Option<Carrier> {
        let parent = metadata.get(TRACEPARENT)?.as_str()?;
        let state = metadata.get(TRACESTATE).and_then(|s| s.as_str());
        Carrier::parse(parent, state)
    }

    /// Stores this context in `metadata` unless the job names one of its own.
    pub fn stamp(&self, metadata: &mut serde_json::Map<String, serde_json::Value>) {
        if metadata.contains_key(TRACEPARENT) {
            return;
        }
        metadata.insert(TRACEPARENT.to_owned(), self.traceparent.clone().into());
        if let Some(state) = &self.tracestate {
            metadata.insert(TRACESTATE.to_owned(), state.clone().into());
        }
    }

    /// This context as an OpenTelemetry parent.
    pub fn context(&self) -> Context {
        let mut map = HashMap::with_capacity(2);
        map.insert(TRACEPARENT.to_owned(), self.traceparent.clone());
        if let Some(state) = &self.tracestate {
            map.insert(TRACESTATE.to_owned(), state.clone());
        }
        TraceContextPropagator::new().extract(&map)
    }

    /// The span this context names.
    pub fn span_context(&self) -> SpanContext {
        self.context().span().span_context().clone()
    }

    /// The trace id, as 32 hex digits.
    pub fn trace_id(&self) -> Option<&str> {
        self.traceparent.split('-').nth(1)
    }
}

/// Checks a caller-set `metadata.traceparent`/`tracestate`: a value that is not a W3C
/// trace context would be dropped by every attempt, so it is refused at enqueue.
pub fn check_metadata(
    metadata: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), &'static str> {
    match metadata.get(TRACEPARENT) {
        None => {
            if metadata.contains_key(TRACESTATE) {
                return Err("tracestate needs a traceparent");
            }
            Ok(())
        }
        Some(serde_json::Value::String(p)) => {
            let state = match metadata.get(TRACESTATE) {
                None => None,
                Some(serde_json::Value::String(s)) => Some(s.as_str()),
                Some(_) => return Err("tracestate must be a string"),
            };
            match Carrier::parse(p, state) {
                Some(_) => Ok(()),
                None => Err("traceparent must be a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)"),
            }
        }
        Some(_) => Err("traceparent must be a string"),
    }
}

/// The W3C context of a request's `traceparent`/`tracestate` headers. A malformed one
/// is ignored, as the W3C specification asks: the request then starts a new trace.
pub fn from_headers(headers: &http::HeaderMap) -> Option<Carrier> {
    let parent = headers.get(TRACEPARENT)?.to_str().ok()?;
    let state = headers.get(TRACESTATE).and_then(|s| s.to_str().ok());
    Carrier::parse(parent, state)
}

/// The API's server span while spans are exported: a child of the request's
/// `traceparent` when it has one, the root of a new trace otherwise.
pub fn server_span<B>(
    request: &http::Request<B>,
    route: Option<&str>,
    request_id: Option<&str>,
) -> tracing::Span {
    let route = route.unwrap_or("unmatched");
    let span = tracing::info_span!(
        "http_request",
        otel.name = %format_args!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = route,
        method = %request.method(),
        matched_path = route,
        request_id = request_id.unwrap_or(""),
    );
    if let Some(parent) = from_headers(request.headers()) {
        let _ = span.set_parent(parent.context());
    }
    span
}

/// Stores `carrier` in each job's metadata (a job that names its own keeps it).
pub fn stamp_jobs(jobs: &mut [crate::db::due_work::NewJob], carrier: Option<&Carrier>) {
    let Some(carrier) = carrier else { return };
    for job in jobs {
        if !job.metadata.is_object() {
            job.metadata = serde_json::Value::Object(Default::default());
        }
        if let serde_json::Value::Object(map) = &mut job.metadata {
            carrier.stamp(map);
        }
    }
}

/// Traces `ordinaut jobs enqueue`: its `send` span is a child of `TRACEPARENT` (a
/// malformed one is ignored with a warning, as the environment-carrier specification
/// asks), and the job stores the span's context, or `TRACEPARENT` itself without an
/// exporter.
pub fn trace_cli_enqueue(job: &mut crate::db::due_work::NewJob) -> tracing::Span {
    let outside = Carrier::from_env().unwrap_or_else(|e| {
        eprintln!("ordinaut: ignoring {e}");
        None
    });
    let span = enqueue_span(
        [job.queue.as_str()],
        &[job.id],
        Parent::Remote(outside.as_ref()),
    );
    let carrier = enqueue_context(&span, outside.as_ref());
    stamp_jobs(std::slice::from_mut(job), carrier.as_ref());
    span
}

/// Where an enqueue span's parent comes from.
pub enum Parent<'a> {
    /// The current span (the API's server span, itself a child of the request's header).
    Current,
    /// A context handed over from outside (the CLI's `TRACEPARENT`).
    Remote(Option<&'a Carrier>),
    /// None: a new trace (a schedule's fire).
    Root,
}

/// The `send {queue}` producer span of an enqueue of `ids` (disabled unless spans
/// are exported). A batch gets one span; its destination is named when it is one queue.
pub fn enqueue_span<'q>(
    queues: impl IntoIterator<Item = &'q str>,
    ids: &[Uuid],
    parent: Parent<'_>,
) -> tracing::Span {
    if !exporting() {
        return tracing::Span::none();
    }
    let mut queues = queues.into_iter();
    let first = queues.next().unwrap_or_default();
    let one_queue = queues.all(|q| q == first);
    let name = if one_queue {
        format!("send {first}")
    } else {
        "send".to_owned()
    };
    // One field list for both spans; `parent: None` must be written in the macro call
    // (a root span), while leaving it out takes the current span as the parent.
    macro_rules! enqueue_span {
        ($($parent:tt)*) => {
            tracing::info_span!($($parent)* "enqueue",
                otel.name = %name, otel.kind = "producer",
                messaging.system = SYSTEM, messaging.operation.name = "send",
                messaging.operation.type = "send",
                messaging.destination.name = tracing::field::Empty,
                messaging.message.id = tracing::field::Empty,
                messaging.batch.message_count = tracing::field::Empty)
        };
    }
    let span = match parent {
        Parent::Root => enqueue_span!(parent: None,),
        _ => enqueue_span!(),
    };
    if let Parent::Remote(Some(carrier)) = parent {
        let _ = span.set_parent(carrier.context());
    }
    if one_queue {
        span.record("messaging.destination.name", first);
    }
    match ids {
        [id] => {
            span.record("messaging.message.id", tracing::field::display(id));
        }
        _ => {
            span.record("messaging.batch.message_count", ids.len());
        }
    }
    span
}

/// The context every job of an enqueue stores: the enqueue span's while spans are
/// exported, else the one handed over from outside (passed through unchanged).
pub fn enqueue_context(span: &tracing::Span, outside: Option<&Carrier>) -> Option<Carrier> {
    Carrier::of_span(span).or_else(|| outside.cloned())
}

/// Gives an attempt span its place: the first attempt is a child of the enqueuing
/// span; a later one starts a new trace linked to it.
pub fn place_attempt(span: &tracing::Span, attempt: i32, stored: Option<&Carrier>) {
    match stored {
        Some(c) if attempt <= 1 => {
            let _ = span.set_parent(c.context());
        }
        Some(c) => {
            let _ = span.set_parent(Context::new());
            span.add_link_with_attributes(
                c.span_context(),
                vec![KeyValue::new("ordinaut.link", "enqueue")],
            );
        }
        None => {
            let _ = span.set_parent(Context::new());
        }
    }
}

/// The span context of a tracing span, for the finish write's span.
pub fn span_context(span: &tracing::Span) -> Option<SpanContext> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// `settle {queue}` spans of one finish write, children of their attempts' spans.
pub struct SettleSpans {
    spans: Vec<(usize, opentelemetry::global::BoxedSpan)>,
}

impl SettleSpans {
    /// Starts one span per attempt that has a span context (index into the batch).
    pub fn start<'a>(
        attempts: impl IntoIterator<Item = (usize, &'a SpanContext, &'a str, Uuid, i32)>,
    ) -> SettleSpans {
        use opentelemetry::trace::{SpanKind, Tracer as _};
        let tracer = opentelemetry::global::tracer("ordinaut");
        let spans = attempts
            .into_iter()
            .map(|(i, parent, queue, id, attempt)| {
                let cx = Context::new().with_remote_span_context(parent.clone());
                let span = tracer
                    .span_builder(format!("settle {queue}"))
                    .with_kind(SpanKind::Client)
                    .with_attributes([
                        KeyValue::new("messaging.system", SYSTEM),
                        KeyValue::new("messaging.operation.name", "settle"),
                        KeyValue::new("messaging.operation.type", "settle"),
                        KeyValue::new("messaging.destination.name", queue.to_owned()),
                        KeyValue::new("messaging.message.id", id.to_string()),
                        KeyValue::new("ordinaut.attempt", i64::from(attempt)),
                    ])
                    .start_with_context(&tracer, &cx);
                (i, span)
            })
            .collect();
        SettleSpans { spans }
    }

    /// Ends every span with the outcome stored for its attempt (`refused` when the
    /// fence refused it, `abandoned` when it was never written).
    pub fn end(self, outcome: impl Fn(usize) -> &'static str) {
        use opentelemetry::trace::Span as _;
        for (i, mut span) in self.spans {
            let outcome = outcome(i);
            span.set_attribute(KeyValue::new("ordinaut.outcome", outcome));
            if matches!(outcome, "refused" | "abandoned") {
                span.set_status(opentelemetry::trace::Status::error(outcome));
            }
            span.end();
        }
    }
}
