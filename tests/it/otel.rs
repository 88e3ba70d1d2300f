//! OpenTelemetry: one trace from the enqueuing request to the program that ran the job.
//!
//! Real `ordinaut api`, `worker` and `jobs enqueue` processes export over OTLP/HTTP to a
//! receiver in this test (decoded with opentelemetry-proto); an http kind calls a test
//! server and a command kind writes its TRACEPARENT to a file.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::json;
use uuid::Uuid;

use crate::api::App;
use crate::common::http::{Http, free_port};
use crate::common::jobs;
use crate::common::otlp::{Got, hex, receiver, span_where};
use crate::common::procs::{Proc, spawn, workdir};
use crate::common::{TestDb, eventually};

/// (job id, traceparent) of each call the webhook target got.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// Records a call's job id and traceparent; fails the first call of each job.
async fn record_call(State(seen): State<Seen>, headers: HeaderMap) -> StatusCode {
    let job = header(&headers, "ordinaut-job-id");
    let parent = header(&headers, "traceparent");
    let mut seen = seen.lock().unwrap();
    let first = !seen.iter().any(|(j, _)| *j == job);
    seen.push((job, parent));
    if first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// The webhook target: fails the first call of each job, records every traceparent.
async fn hook() -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/hook", post(record_call))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), seen)
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The state job `id` ended in, waiting up to a minute for it to end.
async fn finished(db: &TestDb, id: Uuid) -> &'static str {
    let done = jobs::wait_finished(&db.pool, id, Duration::from_secs(60)).await;
    done.state.as_str()
}

/// Asserts each `(key, value)` attribute of `span`.
fn assert_attrs(span: &Got, expected: &[(&str, &str)]) {
    for (key, value) in expected {
        let got = span.attr(key);
        assert_eq!(got.as_deref(), Some(*value), "{}: {key}", span.span.name);
    }
}

fn is_process(g: &Got, job: Uuid, attempt: i32) -> bool {
    g.span.name == "process q"
        && g.attr("messaging.message.id").as_deref() == Some(&job.to_string())
        && g.attr("ordinaut.attempt").as_deref() == Some(&attempt.to_string())
}

const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn one_trace_from_the_enqueuer_to_the_program() {
    let db = TestDb::new().await;
    let (collector, spans) = receiver().await;
    let (hook_url, hook_seen) = hook().await;
    let dir = workdir(
        "otel",
        &format!(
            "[kinds.hook]\ntype = \"http\"\nurl = \"{hook_url}\"\n\n\
             [kinds.cmd]\ntype = \"command\"\nprogram = \"sh\"\n\
             args = [\"-c\", \"echo \\\"$ORDINAUT_JOB_ID $TRACEPARENT\\\" >> tp\"]\n"
        ),
    );
    let otel_env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("WORKER_BACKOFF_BASE", "0.05"),
    ];
    let port = free_port().to_string();
    let mut api_env = otel_env.to_vec();
    api_env.extend([("API_PORT", port.as_str()), ("API_HOST", "127.0.0.1")]);
    let _api: Proc = spawn(&dir, &db.url, &["api"], &api_env);
    let _worker: Proc = spawn(&dir, &db.url, &["worker"], &otel_env);
    let api = Http::local(port.parse().expect("a port"));
    api.wait_healthy(Duration::from_secs(30)).await;
    let (http, base) = (&api.client, &api.base);

    // HTTP, with a traceparent: an http kind whose first attempt fails.
    let incoming = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");
    let r = http
        .post(format!("{base}/v1/jobs"))
        .header("traceparent", &incoming)
        .header("tracestate", "vendor=1")
        .json(&json!({"queue": "q", "kind": "hook"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: serde_json::Value = r.json().await.unwrap();
    let hook_job: Uuid = body["id"].as_str().unwrap().parse().unwrap();

    // CLI, with TRACEPARENT: a command kind.
    let cli_trace = "0af7651916cd43dd8448eb211c80319c";
    let cli_parent = format!("00-{cli_trace}-b7ad6b7169203331-01");
    let out = std::process::Command::new(crate::common::binary())
        .args(["jobs", "enqueue", "--queue", "q", "--kind", "cmd"])
        .current_dir(&dir)
        .env("DATABASE_URL", &db.url)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector)
        .env("TRACEPARENT", &cli_parent)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let cli_job: Uuid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();

    // SQL, with the argument and with the session setting.
    let sql_trace = "11111111111111111111111111111111";
    let sql_parent = format!("00-{sql_trace}-2222222222222222-01");
    let sql_job: Uuid =
        sqlx::query_scalar("SELECT ordinaut_enqueue('q', 'cmd', traceparent => $1)")
            .bind(&sql_parent)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let session_trace = "33333333333333333333333333333333";
    let session_parent = format!("00-{session_trace}-4444444444444444-01");
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('ordinaut.traceparent', $1, true)")
        .bind(&session_parent)
        .execute(&mut *tx)
        .await
        .unwrap();
    let session_job: Uuid = sqlx::query_scalar("SELECT ordinaut_enqueue('q', 'cmd')")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let bad = sqlx::query("SELECT ordinaut_enqueue('q', 'cmd', traceparent => 'nonsense')")
        .execute(&db.pool)
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("W3C traceparent"), "{bad}");

    for id in [hook_job, cli_job, sql_job, session_job] {
        assert_eq!(finished(&db, id).await, "completed", "job {id}");
    }

    // HTTP: server span under the caller's, send span under it, first attempt under that.
    let server = span_where(&spans, "api server span", |g| {
        g.span.name == "POST /v1/jobs" && g.trace() == PARENT_TRACE
    })
    .await;
    assert_eq!(server.service, "ordinaut-api");
    assert_eq!(server.parent(), PARENT_SPAN);
    assert_eq!(server.span.kind, SpanKind::Server as i32);
    let send = span_where(&spans, "api send span", |g| {
        g.span.name == "send q" && g.trace() == PARENT_TRACE
    })
    .await;
    assert_eq!(send.parent(), server.id());
    assert_eq!(send.span.kind, SpanKind::Producer as i32);
    assert_attrs(
        &send,
        &[
            ("messaging.system", "ordinaut"),
            ("messaging.destination.name", "q"),
            ("messaging.operation.name", "send"),
        ],
    );
    assert_eq!(
        send.attr("messaging.message.id"),
        Some(hook_job.to_string())
    );
    let stored = jobs::finished(&db.pool, hook_job)
        .await
        .expect("ended")
        .metadata;
    let stored = stored.expect("metadata");
    assert_eq!(
        stored["traceparent"],
        format!("00-{PARENT_TRACE}-{}-01", send.id())
    );
    assert_eq!(stored["tracestate"], "vendor=1");

    let first = span_where(&spans, "first attempt", |g| is_process(g, hook_job, 1)).await;
    assert_eq!(first.service, "ordinaut-worker");
    assert_eq!(
        first.trace(),
        PARENT_TRACE,
        "first attempt is in the caller's trace"
    );
    assert_eq!(
        first.parent(),
        send.id(),
        "first attempt is a child of the send span"
    );
    assert_eq!(first.span.kind, SpanKind::Consumer as i32);
    assert_attrs(
        &first,
        &[
            ("messaging.system", "ordinaut"),
            ("messaging.operation.type", "process"),
            ("messaging.destination.name", "q"),
            ("ordinaut.kind", "hook"),
            ("ordinaut.outcome", "retry"),
        ],
    );
    assert!(first.attr("ordinaut.queue_wait_ms").is_some());
    assert!(first.span.links.is_empty());

    let second = span_where(&spans, "second attempt", |g| is_process(g, hook_job, 2)).await;
    assert_ne!(
        second.trace(),
        PARENT_TRACE,
        "a retry starts a trace of its own"
    );
    assert!(second.span.parent_span_id.is_empty(), "a retry is a root");
    assert_eq!(second.span.links.len(), 1, "{:?}", second.span.links);
    assert_eq!(hex(&second.span.links[0].trace_id), PARENT_TRACE);
    assert_eq!(hex(&second.span.links[0].span_id), send.id());
    assert_eq!(
        second.attr("ordinaut.outcome").as_deref(),
        Some("completed")
    );

    // The webhook got each attempt's span as its parent.
    let seen: HashMap<String, String> = hook_seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, p)| (p.split('-').nth(2).unwrap_or("").to_owned(), p.clone()))
        .collect();
    let at_first = &seen[&first.id()];
    assert!(
        at_first.starts_with(&format!("00-{PARENT_TRACE}-")),
        "{at_first}"
    );
    let at_second = &seen[&second.id()];
    assert!(
        at_second.starts_with(&format!("00-{}-", second.trace())),
        "{at_second}"
    );

    // The finish write: a settle span under each attempt.
    let settle = span_where(&spans, "settle span", |g| {
        g.span.name == "settle q" && g.parent() == second.id()
    })
    .await;
    assert_eq!(settle.trace(), second.trace());
    assert_eq!(
        settle.attr("ordinaut.outcome").as_deref(),
        Some("completed")
    );

    // CLI: its send span under TRACEPARENT, the attempt under it, the program got it.
    let cli_send = span_where(&spans, "cli send span", |g| {
        g.span.name == "send q" && g.trace() == cli_trace
    })
    .await;
    assert_eq!(cli_send.service, "ordinaut-jobs");
    assert_eq!(cli_send.parent(), "b7ad6b7169203331");
    let cli_attempt = span_where(&spans, "cli job attempt", |g| is_process(g, cli_job, 1)).await;
    assert_eq!(cli_attempt.trace(), cli_trace);
    assert_eq!(cli_attempt.parent(), cli_send.id());
    let tp = std::fs::read_to_string(dir.join("tp")).unwrap();
    let env_of = |job: Uuid| -> String {
        tp.lines()
            .find_map(|l| l.strip_prefix(&format!("{job} ")))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        env_of(cli_job),
        format!("00-{cli_trace}-{}-01", cli_attempt.id())
    );

    // SQL: no span of its own; the attempt is a child of the caller's span.
    let sql_attempt = span_where(&spans, "sql job attempt", |g| is_process(g, sql_job, 1)).await;
    assert_eq!(sql_attempt.trace(), sql_trace);
    assert_eq!(sql_attempt.parent(), "2222222222222222");
    assert_eq!(
        env_of(sql_job),
        format!("00-{sql_trace}-{}-01", sql_attempt.id())
    );
    let session_attempt = span_where(&spans, "session job attempt", |g| {
        is_process(g, session_job, 1)
    })
    .await;
    assert_eq!(session_attempt.trace(), session_trace);
    assert_eq!(session_attempt.parent(), "4444444444444444");
}

#[tokio::test]
async fn without_an_exporter_the_callers_context_is_stored_and_checked() {
    let app = App::new().await;
    let parent = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");
    let r = app
        .send(
            axum::http::Request::post("/v1/jobs/batch")
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {}", crate::api::TOKEN))
                .header("traceparent", &parent)
                .body(axum::body::Body::from(
                    json!({"jobs": [{"queue": "q", "kind": "k"},
                                    {"queue": "q", "kind": "k",
                                     "metadata": {"traceparent": format!("00-{PARENT_TRACE}-1111111111111111-00")}}]})
                    .to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let stored: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT metadata->'traceparent' FROM due_work ORDER BY id")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(
        stored,
        vec![
            json!(parent),
            json!(format!("00-{PARENT_TRACE}-1111111111111111-00"))
        ],
        "the request's context, unless a job names its own"
    );
    let bad = app
        .enqueue(json!({"queue": "q", "kind": "k", "metadata": {"traceparent": "00-zz"}}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    assert!(
        bad.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("metadata: traceparent"),
        "{}",
        bad.text
    );
}

#[tokio::test]
async fn a_dead_collector_drops_spans_and_counts_them() {
    let db = TestDb::new().await;
    let dir = workdir("otel-dead", "[kinds.nap]\ntype = \"noop\"\n");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let _worker = spawn(
        &dir,
        &db.url,
        &["worker"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", dead.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("WORKER_METRICS_ADDR", metrics.as_str()),
        ],
    );
    let ids: Vec<Uuid> = {
        let mut ids = Vec::new();
        for _ in 0..20 {
            ids.push(
                sqlx::query_scalar("SELECT ordinaut_enqueue('q', 'nap')")
                    .fetch_one(&db.pool)
                    .await
                    .unwrap(),
            );
        }
        ids
    };
    for id in ids {
        assert_eq!(finished(&db, id).await, "completed");
    }
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(30), "dropped spans counted", || {
        let http = http.clone();
        let url = format!("http://{metrics}/metrics");
        async move {
            let text = http.get(url).send().await.ok()?.text().await.ok()?;
            let n: f64 = text
                .lines()
                .find(|l| l.starts_with("ordinaut_otel_spans_dropped_total"))?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()?;
            (n > 0.0).then_some(())
        }
    })
    .await;
}
