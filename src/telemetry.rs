//! Log output (pretty lines for people, JSON lines with `LOG_FORMAT=json`) and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, OpenTelemetry trace export over OTLP.
//!
//! Initialised once, by main; library code only emits tracing events and spans. The
//! OTLP pipeline is configured by the standard variables only (`OTEL_EXPORTER_OTLP_*`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`,
//! `OTEL_BSP_*`), so the same settings work for every process of a deployment.
//!
//! A dead or slow collector never slows a job: spans are handed to a bounded queue
//! drained by the SDK's export thread; a span that finds the queue full, or whose batch
//! the collector did not take, is dropped and counted in
//! `ordinaut_otel_spans_dropped_total`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
    SpanProcessor,
};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Spans queued for export at most (the SDK's default, `OTEL_BSP_MAX_QUEUE_SIZE`).
const DEFAULT_QUEUE: usize = 2048;
/// OTLP request timeout unless `OTEL_EXPORTER_OTLP_TIMEOUT` (ms) says otherwise.
const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The running trace pipeline; [`Telemetry::shutdown`] flushes what is queued.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// True when spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the queued spans (bounded by the export timeout) and stops the pipeline.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("ordinaut: flushing traces at exit: {e}");
        }
    }
}

/// Installs the global subscriber, with an OpenTelemetry layer when an OTLP endpoint is
/// configured. `level` is an EnvFilter directive (validated by Config); `service` is
/// the default `service.name` (`ordinaut-<subcommand>`); `runtime` runs the gRPC
/// client. A broken OTLP configuration is reported on
/// stderr and leaves export off: tracing never stops a process from running jobs.
pub fn init(
    level: &str,
    format: LogFormat,
    service: &str,
    runtime: &tokio::runtime::Handle,
) -> Telemetry {
    let mut filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    if !level.contains("sqlx") {
        // Postgres NOTICEs ("schema already exists, skipping") are not news.
        if let Ok(directive) = "sqlx::postgres::notice=warn".parse() {
            filter = filter.add_directive(directive);
        }
        // The pool's own retry loop logs every failed connect and every broken idle
        // connection; during a failover that is a line per attempt. Ordinaut logs those
        // faults itself, once per backoff step (db::fault, db::retarget).
        if let Ok(directive) = "sqlx_core::pool=off".parse() {
            filter = filter.add_directive(directive);
        }
    }
    let provider = match otlp_provider(service, runtime) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ordinaut: OpenTelemetry export is off: {e}");
            None
        }
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("ordinaut"))
            .with_tracked_inactivity(false)
    });
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let installed = match format {
        LogFormat::Json => registry
            .with(
                fmt.json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()
            .is_ok(),
        LogFormat::Pretty => registry.with(fmt.with_ansi(false)).try_init().is_ok(),
    };
    match provider {
        Some(p) if installed => {
            opentelemetry::global::set_tracer_provider(p.clone());
            crate::otel::set_exporting(true);
            Telemetry { provider: Some(p) }
        }
        _ => Telemetry::default(),
    }
}

/// The tracer provider for the configured endpoint, or None when none is set.
fn otlp_provider(
    service: &str,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<Option<SdkTracerProvider>> {
    let set = |v: Result<String, std::env::VarError>| v.is_ok_and(|v| !v.trim().is_empty());
    if !set(std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        && !set(std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    {
        return Ok(None);
    }
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_default();
    let timeout = std::env::var("OTEL_EXPORTER_OTLP_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_EXPORT_TIMEOUT);
    let exporter = match protocol.trim() {
        "" | "http/protobuf" => {
            let client = reqwest::blocking::Client::builder()
                .timeout(timeout)
                .build()?;
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(BlockingHttp(client))
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_timeout(timeout)
                .build()?
        }
        "grpc" => {
            let _runtime = runtime.enter();
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_timeout(timeout)
                .build()?
        }
        other => anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported (use http/protobuf or grpc)"
        ),
    };
    let queue = std::env::var("OTEL_BSP_MAX_QUEUE_SIZE")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_QUEUE);
    let pending = Arc::new(AtomicUsize::new(0));
    let batch = BatchSpanProcessor::builder(CountingExporter {
        inner: exporter,
        pending: pending.clone(),
    })
    .with_batch_config(
        BatchConfigBuilder::default()
            .with_max_queue_size(queue)
            .build(),
    )
    .build();
    let processor = BoundedProcessor {
        inner: batch,
        pending,
        limit: queue,
    };
    Ok(Some(
        SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource(service))
            .build(),
    ))
}

/// `service.name` from OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES, else `service`.
fn resource(service: &str) -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| {
            v.split(',')
                .any(|kv| kv.trim_start().starts_with("service.name="))
        });
    let builder = Resource::builder();
    if named {
        builder.build()
    } else {
        builder.with_service_name(service.to_owned()).build()
    }
}

/// Keeps the export queue bounded by our own count, so that every span the SDK's
/// processor would drop for a full queue is dropped (and counted) here instead.
#[derive(Debug)]
struct BoundedProcessor {
    inner: BatchSpanProcessor,
    /// Spans handed to `inner` and not yet through an export attempt.
    pending: Arc<AtomicUsize>,
    limit: usize,
}

impl SpanProcessor for BoundedProcessor {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let admitted = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            self.inner.on_end(span);
        } else {
            crate::metrics::otel_spans_dropped(1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Counts each batch out of the queue, and its spans as dropped when the collector
/// did not take them (the SDK does not retry a failed export).
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    pending: Arc<AtomicUsize>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        if result.is_err() {
            crate::metrics::otel_spans_dropped(n as u64);
        }
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(n))
            });
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// OTLP/HTTP over the blocking client of the `reqwest` the project already uses (the
/// SDK's export thread is not a Tokio thread, and opentelemetry-http only adapts a
/// newer reqwest, which would bring a second HTTP and TLS stack).
#[derive(Debug)]
struct BlockingHttp(reqwest::blocking::Client);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for BlockingHttp {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body.to_vec())
            .send()?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes()?;
        let mut out = http::Response::builder().status(status).body(body)?;
        *out.headers_mut() = headers;
        Ok(out)
    }
}
