//! A table of caller mistakes: each gets the right 4xx with the JSON error shape, and
//! the database is unchanged afterwards.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use super::{App, TOKEN};

const LONG_KEY: &str = concat!(
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
);

enum Auth {
    Good,
    Missing,
    Wrong,
    Basic,
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: String,
    auth: Auth,
    headers: Vec<(&'static str, &'static str)>,
    status: u16,
    code: &'static str,
    /// Text the message must contain (names the field).
    mentions: &'static str,
}

fn case(
    name: &'static str,
    method: &'static str,
    path: impl Into<String>,
    body: Value,
    status: u16,
    code: &'static str,
    mentions: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        content_type: Some("application/json"),
        body: body.to_string(),
        auth: Auth::Good,
        headers: Vec::new(),
        status,
        code,
        mentions,
    }
}

/// A `POST /v1/jobs` with JSON `body`.
fn enqueue(
    name: &'static str,
    body: Value,
    status: u16,
    code: &'static str,
    mentions: &'static str,
) -> Case {
    case(name, "POST", "/v1/jobs", body, status, code, mentions)
}

impl Case {
    /// The same request with `auth` instead of the good token.
    fn auth(self, auth: Auth) -> Case {
        Case { auth, ..self }
    }

    /// The same request with one more header.
    fn header(mut self, name: &'static str, value: &'static str) -> Case {
        self.headers.push((name, value));
        self
    }
}

fn raw(
    name: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: &str,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method: "POST",
        path: path.into(),
        content_type,
        body: body.to_owned(),
        auth: Auth::Good,
        headers: Vec::new(),
        status,
        code,
        mentions: "",
    }
}

fn get(
    name: &'static str,
    path: impl Into<String>,
    status: u16,
    code: &'static str,
    mentions: &'static str,
) -> Case {
    Case {
        name,
        method: "GET",
        path: path.into(),
        content_type: None,
        body: String::new(),
        auth: Auth::Good,
        headers: Vec::new(),
        status,
        code,
        mentions,
    }
}

fn job(extra: Value) -> Value {
    let mut j = json!({"queue": "q", "kind": "k"});
    if let (Some(o), Some(e)) = (j.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    j
}

fn cases(live: &str, unknown: &str) -> Vec<Case> {
    let big_payload = json!({"queue": "q", "kind": "k", "payload": {"x": "y".repeat(17 * 1024)}});
    let huge_body = format!(
        "{{\"queue\":\"q\",\"kind\":\"k\",\"payload\":\"{}\"}}",
        "z".repeat(70 * 1024)
    );
    let eleven: Vec<Value> = (0..11)
        .map(|_| json!({"queue": "q", "kind": "k"}))
        .collect();
    let mut v = vec![
        raw(
            "truncated JSON",
            "/v1/jobs",
            Some("application/json"),
            "{\"queue\":",
            400,
            "malformed_json",
        ),
        raw(
            "not JSON at all",
            "/v1/jobs",
            Some("application/json"),
            "hello",
            400,
            "malformed_json",
        ),
        raw(
            "empty body",
            "/v1/jobs",
            Some("application/json"),
            "",
            400,
            "malformed_json",
        ),
        raw(
            "no content type",
            "/v1/jobs",
            None,
            "{\"queue\":\"q\",\"kind\":\"k\"}",
            415,
            "unsupported_media_type",
        ),
        raw(
            "text/plain body",
            "/v1/jobs",
            Some("text/plain"),
            "{\"queue\":\"q\",\"kind\":\"k\"}",
            415,
            "unsupported_media_type",
        ),
        raw(
            "top-level array",
            "/v1/jobs",
            Some("application/json"),
            "[1,2]",
            400,
            "invalid_field",
        ),
        raw(
            "body over the body limit",
            "/v1/jobs",
            Some("application/json"),
            &huge_body,
            413,
            "payload_too_large",
        ),
        enqueue(
            "queue is a number",
            json!({"queue": 1, "kind": "k"}),
            400,
            "invalid_field",
            "queue",
        ),
        // A missing queue is no mistake: the kind's queue, else `default` (issue 17).
        enqueue(
            "allow_unknown_kind not a boolean",
            json!({"kind": "k", "allow_unknown_kind": "yes"}),
            400,
            "invalid_field",
            "allow_unknown_kind",
        ),
        enqueue(
            "kind missing",
            json!({"queue": "q"}),
            400,
            "invalid_field",
            "kind",
        ),
        enqueue(
            "empty queue",
            job(json!({"queue": ""})),
            400,
            "invalid_field",
            "queue",
        ),
        enqueue(
            "queue with a space",
            job(json!({"queue": "a b"})),
            400,
            "invalid_field",
            "queue",
        ),
        enqueue(
            "queue too long",
            job(json!({"queue": "a".repeat(129)})),
            400,
            "invalid_field",
            "queue",
        ),
        enqueue(
            "queue starts with a dash",
            job(json!({"queue": "-q"})),
            400,
            "invalid_field",
            "queue",
        ),
        enqueue(
            "kind with a slash",
            job(json!({"kind": "a/b"})),
            400,
            "invalid_field",
            "kind",
        ),
        enqueue(
            "priority too high",
            job(json!({"priority": 101})),
            400,
            "invalid_field",
            "priority",
        ),
        enqueue(
            "priority too low",
            job(json!({"priority": -101})),
            400,
            "invalid_field",
            "priority",
        ),
        enqueue(
            "priority is text",
            job(json!({"priority": "high"})),
            400,
            "invalid_field",
            "priority",
        ),
        enqueue(
            "priority is fractional",
            job(json!({"priority": 1.5})),
            400,
            "invalid_field",
            "priority",
        ),
        enqueue(
            "priority overflows",
            job(json!({"priority": 99999999999i64})),
            400,
            "invalid_field",
            "priority",
        ),
        enqueue(
            "run_at is prose",
            job(json!({"run_at": "tomorrow"})),
            400,
            "invalid_field",
            "run_at",
        ),
        enqueue(
            "run_at month 13",
            job(json!({"run_at": "2030-13-01T00:00:00Z"})),
            400,
            "invalid_field",
            "run_at",
        ),
        enqueue(
            "run_at without offset",
            job(json!({"run_at": "2030-01-01T00:00:00"})),
            400,
            "invalid_field",
            "run_at",
        ),
        enqueue(
            "delay is prose",
            job(json!({"delay": "soon"})),
            400,
            "invalid_field",
            "delay",
        ),
        enqueue(
            "delay with two units",
            job(json!({"delay": "1h 30m"})),
            400,
            "invalid_field",
            "delay",
        ),
        enqueue(
            "zero timeout",
            job(json!({"timeout": "0s"})),
            400,
            "invalid_field",
            "timeout",
        ),
        enqueue(
            "max_attempts 0",
            job(json!({"max_attempts": 0})),
            400,
            "invalid_field",
            "max_attempts",
        ),
        enqueue(
            "max_attempts 1001",
            job(json!({"max_attempts": 1001})),
            400,
            "invalid_field",
            "max_attempts",
        ),
        enqueue(
            "empty unique_key",
            job(json!({"unique_key": ""})),
            400,
            "invalid_field",
            "unique_key",
        ),
        enqueue(
            "unknown field",
            job(json!({"queu": "x"})),
            400,
            "invalid_field",
            "queu",
        ),
        enqueue(
            "metadata not an object",
            job(json!({"metadata": [1]})),
            400,
            "invalid_field",
            "metadata",
        ),
        enqueue(
            "payload over the payload limit",
            big_payload,
            413,
            "payload_too_large",
            "payload",
        ),
        case(
            "empty batch",
            "POST",
            "/v1/jobs/batch",
            json!({"jobs": []}),
            400,
            "invalid_field",
            "jobs",
        ),
        case(
            "batch over the limit",
            "POST",
            "/v1/jobs/batch",
            json!({"jobs": eleven}),
            400,
            "invalid_field",
            "batch limit",
        ),
        case(
            "batch with one bad job",
            "POST",
            "/v1/jobs/batch",
            json!({"jobs": [job(json!({})), job(json!({})), job(json!({"priority": 500}))]}),
            400,
            "invalid_field",
            "jobs[2].priority",
        ),
        case(
            "batch with a mistyped job",
            "POST",
            "/v1/jobs/batch",
            json!({"jobs": [job(json!({})), {"queue": true}]}),
            400,
            "invalid_field",
            "jobs[1]",
        ),
        get(
            "job id not a UUID",
            "/v1/jobs/not-a-uuid",
            400,
            "invalid_path",
            "id",
        ),
        get("limit 0", "/v1/jobs?limit=0", 400, "invalid_field", "limit"),
        get(
            "limit not a number",
            "/v1/jobs?limit=abc",
            400,
            "invalid_query",
            "limit",
        ),
        get(
            "unknown state",
            "/v1/jobs?state=done",
            400,
            "invalid_query",
            "state",
        ),
        get(
            "created_after prose",
            "/v1/jobs?created_after=yesterday",
            400,
            "invalid_field",
            "created_after",
        ),
        get(
            "cursor garbage",
            "/v1/jobs?cursor=xyz",
            400,
            "invalid_field",
            "cursor",
        ),
        get(
            "queue filter invalid",
            "/v1/jobs?queue=bad%20name",
            400,
            "invalid_field",
            "queue",
        ),
        get(
            "wait prose",
            format!("/v1/jobs/{live}?wait=forever"),
            400,
            "invalid_field",
            "wait",
        ),
        get(
            "unknown job",
            format!("/v1/jobs/{unknown}"),
            404,
            "not_found",
            "not found",
        ),
        case(
            "cancel unknown job",
            "POST",
            format!("/v1/jobs/{unknown}/cancel"),
            json!({}),
            404,
            "not_found",
            "",
        ),
        case(
            "retry a live job",
            "POST",
            format!("/v1/jobs/{live}/retry"),
            json!({}),
            409,
            "conflict",
            "live",
        ),
        get(
            "events with a bad queue",
            "/v1/events?queue=bad%20q",
            400,
            "invalid_field",
            "queue",
        ),
        get(
            "events with a bad job id",
            "/v1/events?job_id=nope",
            400,
            "invalid_query",
            "job_id",
        ),
        get(
            "queue name invalid",
            "/v1/queues/bad%20name",
            400,
            "invalid_field",
            "name",
        ),
        get(
            "unknown queue",
            "/v1/queues/nothing-here",
            404,
            "not_found",
            "nothing-here",
        ),
        case(
            "pause an invalid queue",
            "POST",
            "/v1/queues/bad%20name/pause",
            json!({}),
            400,
            "invalid_field",
            "name",
        ),
        case(
            "queue max_attempts 0",
            "PATCH",
            "/v1/queues/q",
            json!({"max_attempts": 0}),
            400,
            "invalid_field",
            "max_attempts",
        ),
        case(
            "queue timeout negative",
            "PATCH",
            "/v1/queues/q",
            json!({"timeout": "-1s"}),
            400,
            "invalid_field",
            "timeout",
        ),
        case(
            "queue unknown setting",
            "PATCH",
            "/v1/queues/q",
            json!({"paused": true}),
            400,
            "invalid_field",
            "paused",
        ),
        case(
            "claim with no queues",
            "POST",
            "/v1/pull/claim",
            json!({"queues": []}),
            400,
            "invalid_field",
            "queues",
        ),
        case(
            "claim limit 0",
            "POST",
            "/v1/pull/claim",
            json!({"queues": ["q"], "limit": 0}),
            400,
            "invalid_field",
            "limit",
        ),
        case(
            "claim lease too short",
            "POST",
            "/v1/pull/claim",
            json!({"queues": ["q"], "lease_seconds": 1}),
            400,
            "invalid_field",
            "lease_seconds",
        ),
        case(
            "claim wait is prose",
            "POST",
            "/v1/pull/claim",
            json!({"queues": ["q"], "wait": "soon"}),
            400,
            "invalid_field",
            "wait",
        ),
        case(
            "claim limit fractional",
            "POST",
            "/v1/pull/claim",
            json!({"queues": ["q"], "limit": 1.5}),
            400,
            "invalid_field",
            "limit",
        ),
        case(
            "claim bad queue name",
            "POST",
            "/v1/pull/claim",
            json!({"queues": ["ok", "not ok"]}),
            400,
            "invalid_field",
            "queues[1]",
        ),
        case(
            "heartbeat ids not UUIDs",
            "POST",
            "/v1/pull/heartbeat",
            json!({"lease_owner": unknown, "jobs": [{"id": "x", "attempt": 1}]}),
            400,
            "invalid_field",
            "jobs",
        ),
        case(
            "heartbeat without attempts",
            "POST",
            "/v1/pull/heartbeat",
            json!({"lease_owner": unknown, "jobs": [{"id": unknown}]}),
            400,
            "invalid_field",
            "attempt",
        ),
        case(
            "complete without its attempt",
            "POST",
            format!("/v1/pull/jobs/{live}/complete"),
            json!({"lease_owner": unknown}),
            400,
            "invalid_field",
            "attempt",
        ),
        case(
            "complete unknown job",
            "POST",
            format!("/v1/pull/jobs/{unknown}/complete"),
            json!({"lease_owner": unknown, "attempt": 1}),
            404,
            "not_found",
            "",
        ),
        case(
            "complete a job leased by nobody",
            "POST",
            format!("/v1/pull/jobs/{live}/complete"),
            json!({"lease_owner": unknown, "attempt": 1}),
            409,
            "lease_lost",
            "",
        ),
        case(
            "fail with an empty error",
            "POST",
            format!("/v1/pull/jobs/{live}/fail"),
            json!({"lease_owner": unknown, "attempt": 1, "error": ""}),
            400,
            "invalid_field",
            "error",
        ),
        case(
            "lease_owner not a UUID",
            "POST",
            format!("/v1/pull/jobs/{live}/fail"),
            json!({"lease_owner": 7, "attempt": 1, "error": "x"}),
            400,
            "invalid_field",
            "lease_owner",
        ),
        get("unknown route", "/v1/nope", 404, "not_found", "route"),
        case(
            "wrong method",
            "DELETE",
            "/v1/jobs",
            json!({}),
            405,
            "method_not_allowed",
            "",
        ),
    ];
    v.extend([
        get("missing token", "/v1/jobs", 401, "unauthorized", "token").auth(Auth::Missing),
        get("wrong token", "/v1/queues", 401, "unauthorized", "token").auth(Auth::Wrong),
        get(
            "basic auth scheme",
            "/v1/workers",
            401,
            "unauthorized",
            "token",
        )
        .auth(Auth::Basic),
        enqueue(
            "enqueue without a token",
            job(json!({})),
            401,
            "unauthorized",
            "token",
        )
        .auth(Auth::Missing),
        enqueue(
            "Idempotency-Key too long",
            job(json!({})),
            400,
            "invalid_field",
            "Idempotency-Key",
        )
        .header("idempotency-key", LONG_KEY),
        enqueue(
            "payload holds U+0000",
            job(json!({"payload": {"a": "x\u{0}y"}})),
            400,
            "invalid_field",
            "payload",
        ),
        raw(
            "number beyond Postgres numeric",
            "/v1/jobs",
            Some("application/json"),
            "{\"queue\":\"q\",\"kind\":\"k\",\"payload\":1e1000000}",
            400,
            "invalid_value",
        ),
    ]);
    v
}

#[tokio::test]
async fn every_caller_mistake_gets_a_4xx_json_error_and_changes_nothing() {
    let app = App::new().await;
    let live = app.enqueue(json!({"queue": "q", "kind": "k"})).await;
    assert_eq!(live.status, StatusCode::CREATED);
    let live = live.id();
    let unknown = uuid::Uuid::now_v7().to_string();
    let cases = cases(&live, &unknown);
    assert!(cases.len() >= 30, "the table has {} cases", cases.len());
    let before = app.counts().await;
    let mut failures = Vec::new();
    for c in &cases {
        let mut req = Request::builder().method(c.method).uri(&c.path);
        match c.auth {
            Auth::Good => req = req.header("authorization", format!("Bearer {TOKEN}")),
            Auth::Missing => {}
            Auth::Wrong => req = req.header("authorization", "Bearer not-the-token"),
            Auth::Basic => req = req.header("authorization", format!("Basic {TOKEN}")),
        }
        if let Some(ct) = c.content_type {
            req = req.header("content-type", ct);
        }
        for (k, v) in &c.headers {
            req = req.header(*k, *v);
        }
        let r = app
            .send(req.body(Body::from(c.body.clone())).unwrap())
            .await;
        let code = r.body["error"]["code"].as_str().unwrap_or("<none>");
        let message = r.body["error"]["message"].as_str().unwrap_or("");
        if r.status.as_u16() != c.status
            || code != c.code
            || message.is_empty()
            || !message.contains(c.mentions)
        {
            failures.push(format!(
                "{}: expected {} {} mentioning {:?}, got {} {}",
                c.name, c.status, c.code, c.mentions, r.status, r.text
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(
        app.counts().await,
        before,
        "a refused request changed the database"
    );
}
