//! A Rust handler runs inside its attempt's span: its own tracing spans nest under it.
//!
//! A test binary of its own, because it installs the process-wide subscriber with the
//! OTLP pipeline (the `it` binary's tests expect tracing to be off).

#[path = "common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestDb;
use common::jobs::wait_finished;
use common::otlp::{receiver, span_where};
use ordinaut::config::Config;
use ordinaut::model::Outcome;
use ordinaut::otel::Carrier;
use ordinaut::worker::{Handlers, Worker, WorkerOptions};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[test]
fn rust_handler_spans_nest_under_the_attempt_span() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (collector, spans) = runtime.block_on(receiver());
    // SAFETY: set before any other thread of this test binary reads the environment
    // (this is its only test; the runtime's threads do not read it).
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &collector);
        std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
    }
    let telemetry = ordinaut::telemetry::init(
        "info",
        ordinaut::config::LogFormat::Pretty,
        "handler-test",
        runtime.handle(),
    );
    assert!(telemetry.exporting());
    runtime.block_on(async {
        let db = TestDb::new().await;
        let seen: Arc<Mutex<Option<Carrier>>> = Arc::default();
        let sink = seen.clone();
        let mut handlers = Handlers::default();
        handlers.register("traced", move |ctx| {
            let sink = sink.clone();
            async move {
                let inner = tracing::info_span!("resize", otel.name = "resize image");
                let _g = inner.enter();
                *sink.lock().unwrap() = ctx.trace.clone();
                Outcome::Succeeded {
                    output: None,
                    log: None,
                }
            }
        });
        let parent = "00-5bf92f3577b34da6a3ce929d0e0e4736-10f067aa0ba902b7-01";
        let id: Uuid =
            sqlx::query_scalar("SELECT ordinaut_enqueue('q', 'traced', traceparent => $1)")
                .bind(parent)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        let mut o = WorkerOptions::from_config(&Config::default());
        o.queues = vec!["q".into()];
        o.poll_interval = Duration::from_millis(200);
        let stop = CancellationToken::new();
        let worker = Worker::new(o, db.db_config(), db.pool.clone(), handlers);
        let token = stop.clone();
        let running = tokio::spawn(async move { worker.run(token).await });
        wait_finished(&db.pool, id, Duration::from_secs(30)).await;
        let attempt = span_where(&spans, "attempt span", |g| g.span.name == "process q").await;
        assert_eq!(attempt.trace(), "5bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(attempt.parent(), "10f067aa0ba902b7");
        let inner = span_where(&spans, "handler span", |g| g.span.name == "resize image").await;
        assert_eq!(inner.trace(), attempt.trace());
        assert_eq!(
            inner.parent(),
            attempt.id(),
            "the handler's span is the attempt's child"
        );
        let handed = seen
            .lock()
            .unwrap()
            .clone()
            .expect("the handler got a context");
        assert_eq!(
            handed.traceparent,
            format!("00-{}-{}-01", attempt.trace(), attempt.id())
        );
        stop.cancel();
        let _ = running.await;
    });
    telemetry.shutdown();
}
