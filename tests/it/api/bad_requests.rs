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

/// A request of the table; what it must get (`expect`, `invalid`, `unauthorized`) makes
/// it a [`Case`].
struct Call {
    name: &'static str,
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: String,
    auth: Auth,
    headers: Vec<(&'static str, &'static str)>,
}

struct Case {
    call: Call,
    status: u16,
    code: &'static str,
    /// Text the message must contain (names the field).
    mentions: &'static str,
}

/// A `POST /v1/jobs` of `body` sent as `content_type` (if any), with the good token.
fn raw(name: &'static str, content_type: Option<&'static str>, body: &str) -> Call {
    Call {
        name,
        method: "POST",
        path: "/v1/jobs".into(),
        content_type,
        body: body.to_owned(),
        auth: Auth::Good,
        headers: Vec::new(),
    }
}

/// A `method` request with JSON `body`.
fn case(name: &'static str, method: &'static str, path: impl Into<String>, body: Value) -> Call {
    Call {
        method,
        path: path.into(),
        ..raw(name, Some("application/json"), &body.to_string())
    }
}

/// A `POST` with JSON `body`.
fn post(name: &'static str, path: impl Into<String>, body: Value) -> Call {
    case(name, "POST", path, body)
}

/// A `POST /v1/jobs` with JSON `body`.
fn enqueue(name: &'static str, body: Value) -> Call {
    post(name, "/v1/jobs", body)
}

/// A `GET`, with no body.
fn get(name: &'static str, path: impl Into<String>) -> Call {
    Call {
        method: "GET",
        path: path.into(),
        ..raw(name, None, "")
    }
}

impl Call {
    /// The same request with `auth` instead of the good token.
    fn auth(self, auth: Auth) -> Call {
        Call { auth, ..self }
    }

    /// The same request with one more header.
    fn header(mut self, name: &'static str, value: &'static str) -> Call {
        self.headers.push((name, value));
        self
    }

    /// Refused with `status` and `code`, in a message that mentions `mentions`.
    fn expect(self, status: u16, code: &'static str, mentions: &'static str) -> Case {
        Case {
            call: self,
            status,
            code,
            mentions,
        }
    }

    /// Refused 400 `invalid_field`, naming `field`.
    fn invalid(self, field: &'static str) -> Case {
        self.expect(400, "invalid_field", field)
    }

    /// Sent with `auth` instead of the good token: refused 401, naming the token.
    fn unauthorized(self, auth: Auth) -> Case {
        self.auth(auth).expect(401, "unauthorized", "token")
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
        raw("truncated JSON", Some("application/json"), "{\"queue\":").expect(
            400,
            "malformed_json",
            "",
        ),
        raw("not JSON at all", Some("application/json"), "hello").expect(400, "malformed_json", ""),
        raw("empty body", Some("application/json"), "").expect(400, "malformed_json", ""),
        raw("no content type", None, "{\"queue\":\"q\",\"kind\":\"k\"}").expect(
            415,
            "unsupported_media_type",
            "",
        ),
        raw(
            "text/plain body",
            Some("text/plain"),
            "{\"queue\":\"q\",\"kind\":\"k\"}",
        )
        .expect(415, "unsupported_media_type", ""),
        raw("top-level array", Some("application/json"), "[1,2]").expect(400, "invalid_field", ""),
        raw(
            "body over the body limit",
            Some("application/json"),
            &huge_body,
        )
        .expect(413, "payload_too_large", ""),
        enqueue("queue is a number", json!({"queue": 1, "kind": "k"})).invalid("queue"),
        // A missing queue is no mistake: the kind's queue, else `default` (issue 17).
        enqueue(
            "allow_unknown_kind not a boolean",
            json!({"kind": "k", "allow_unknown_kind": "yes"}),
        )
        .invalid("allow_unknown_kind"),
        enqueue("kind missing", json!({"queue": "q"})).invalid("kind"),
        enqueue("empty queue", job(json!({"queue": ""}))).invalid("queue"),
        enqueue("queue with a space", job(json!({"queue": "a b"}))).invalid("queue"),
        enqueue("queue too long", job(json!({"queue": "a".repeat(129)}))).invalid("queue"),
        enqueue("queue starts with a dash", job(json!({"queue": "-q"}))).invalid("queue"),
        enqueue("kind with a slash", job(json!({"kind": "a/b"}))).invalid("kind"),
        enqueue("priority too high", job(json!({"priority": 101}))).invalid("priority"),
        enqueue("priority too low", job(json!({"priority": -101}))).invalid("priority"),
        enqueue("priority is text", job(json!({"priority": "high"}))).invalid("priority"),
        enqueue("priority is fractional", job(json!({"priority": 1.5}))).invalid("priority"),
        enqueue(
            "priority overflows",
            job(json!({"priority": 99999999999i64})),
        )
        .invalid("priority"),
        enqueue("run_at is prose", job(json!({"run_at": "tomorrow"}))).invalid("run_at"),
        enqueue(
            "run_at month 13",
            job(json!({"run_at": "2030-13-01T00:00:00Z"})),
        )
        .invalid("run_at"),
        enqueue(
            "run_at without offset",
            job(json!({"run_at": "2030-01-01T00:00:00"})),
        )
        .invalid("run_at"),
        enqueue("delay is prose", job(json!({"delay": "soon"}))).invalid("delay"),
        enqueue("delay with two units", job(json!({"delay": "1h 30m"}))).invalid("delay"),
        enqueue("zero timeout", job(json!({"timeout": "0s"}))).invalid("timeout"),
        enqueue("max_attempts 0", job(json!({"max_attempts": 0}))).invalid("max_attempts"),
        enqueue("max_attempts 1001", job(json!({"max_attempts": 1001}))).invalid("max_attempts"),
        enqueue("empty unique_key", job(json!({"unique_key": ""}))).invalid("unique_key"),
        enqueue("unknown field", job(json!({"queu": "x"}))).invalid("queu"),
        enqueue("metadata not an object", job(json!({"metadata": [1]}))).invalid("metadata"),
        enqueue("payload over the payload limit", big_payload).expect(
            413,
            "payload_too_large",
            "payload",
        ),
        post("empty batch", "/v1/jobs/batch", json!({"jobs": []})).invalid("jobs"),
        post(
            "batch over the limit",
            "/v1/jobs/batch",
            json!({"jobs": eleven}),
        )
        .invalid("batch limit"),
        post(
            "batch with one bad job",
            "/v1/jobs/batch",
            json!({"jobs": [job(json!({})), job(json!({})), job(json!({"priority": 500}))]}),
        )
        .invalid("jobs[2].priority"),
        post(
            "batch with a mistyped job",
            "/v1/jobs/batch",
            json!({"jobs": [job(json!({})), {"queue": true}]}),
        )
        .invalid("jobs[1]"),
        get("job id not a UUID", "/v1/jobs/not-a-uuid").expect(400, "invalid_path", "id"),
        get("limit 0", "/v1/jobs?limit=0").invalid("limit"),
        get("limit not a number", "/v1/jobs?limit=abc").expect(400, "invalid_query", "limit"),
        get("unknown state", "/v1/jobs?state=done").expect(400, "invalid_query", "state"),
        get("created_after prose", "/v1/jobs?created_after=yesterday").invalid("created_after"),
        get("cursor garbage", "/v1/jobs?cursor=xyz").invalid("cursor"),
        get("queue filter invalid", "/v1/jobs?queue=bad%20name").invalid("queue"),
        get("wait prose", format!("/v1/jobs/{live}?wait=forever")).invalid("wait"),
        get("unknown job", format!("/v1/jobs/{unknown}")).expect(404, "not_found", "not found"),
        post(
            "cancel unknown job",
            format!("/v1/jobs/{unknown}/cancel"),
            json!({}),
        )
        .expect(404, "not_found", ""),
        post(
            "retry a live job",
            format!("/v1/jobs/{live}/retry"),
            json!({}),
        )
        .expect(409, "conflict", "live"),
        get("events with a bad queue", "/v1/events?queue=bad%20q").invalid("queue"),
        get("events with a bad job id", "/v1/events?job_id=nope").expect(
            400,
            "invalid_query",
            "job_id",
        ),
        get("queue name invalid", "/v1/queues/bad%20name").invalid("name"),
        get("unknown queue", "/v1/queues/nothing-here").expect(404, "not_found", "nothing-here"),
        post(
            "pause an invalid queue",
            "/v1/queues/bad%20name/pause",
            json!({}),
        )
        .invalid("name"),
        case(
            "queue max_attempts 0",
            "PATCH",
            "/v1/queues/q",
            json!({"max_attempts": 0}),
        )
        .invalid("max_attempts"),
        case(
            "queue timeout negative",
            "PATCH",
            "/v1/queues/q",
            json!({"timeout": "-1s"}),
        )
        .invalid("timeout"),
        case(
            "queue unknown setting",
            "PATCH",
            "/v1/queues/q",
            json!({"paused": true}),
        )
        .invalid("paused"),
        case(
            "settings of an invalid queue",
            "PATCH",
            "/v1/queues/bad%20name",
            json!({}),
        )
        .invalid("name"),
        // A route with a body reads it before its key: both wrong, the body is named.
        case(
            "unknown setting of an invalid queue",
            "PATCH",
            "/v1/queues/bad%20name",
            json!({"paused": true}),
        )
        .invalid("paused"),
        post(
            "claim with no queues",
            "/v1/pull/claim",
            json!({"queues": []}),
        )
        .invalid("queues"),
        post(
            "claim limit 0",
            "/v1/pull/claim",
            json!({"queues": ["q"], "limit": 0}),
        )
        .invalid("limit"),
        post(
            "claim lease too short",
            "/v1/pull/claim",
            json!({"queues": ["q"], "lease_seconds": 1}),
        )
        .invalid("lease_seconds"),
        post(
            "claim wait is prose",
            "/v1/pull/claim",
            json!({"queues": ["q"], "wait": "soon"}),
        )
        .invalid("wait"),
        post(
            "claim limit fractional",
            "/v1/pull/claim",
            json!({"queues": ["q"], "limit": 1.5}),
        )
        .invalid("limit"),
        post(
            "claim bad queue name",
            "/v1/pull/claim",
            json!({"queues": ["ok", "not ok"]}),
        )
        .invalid("queues[1]"),
        post(
            "heartbeat ids not UUIDs",
            "/v1/pull/heartbeat",
            json!({"lease_owner": unknown, "jobs": [{"id": "x", "attempt": 1}]}),
        )
        .invalid("jobs"),
        post(
            "heartbeat without attempts",
            "/v1/pull/heartbeat",
            json!({"lease_owner": unknown, "jobs": [{"id": unknown}]}),
        )
        .invalid("attempt"),
        post(
            "complete without its attempt",
            format!("/v1/pull/jobs/{live}/complete"),
            json!({"lease_owner": unknown}),
        )
        .invalid("attempt"),
        post(
            "complete unknown job",
            format!("/v1/pull/jobs/{unknown}/complete"),
            json!({"lease_owner": unknown, "attempt": 1}),
        )
        .expect(404, "not_found", ""),
        post(
            "complete a job leased by nobody",
            format!("/v1/pull/jobs/{live}/complete"),
            json!({"lease_owner": unknown, "attempt": 1}),
        )
        .expect(409, "lease_lost", ""),
        post(
            "fail with an empty error",
            format!("/v1/pull/jobs/{live}/fail"),
            json!({"lease_owner": unknown, "attempt": 1, "error": ""}),
        )
        .invalid("error"),
        post(
            "complete a job whose id is not a UUID",
            "/v1/pull/jobs/not-a-uuid/complete",
            json!({"lease_owner": unknown, "attempt": 1}),
        )
        .expect(400, "invalid_path", "id"),
        post(
            "complete without its attempt a job whose id is not a UUID",
            "/v1/pull/jobs/not-a-uuid/complete",
            json!({"lease_owner": unknown}),
        )
        .invalid("attempt"),
        post(
            "lease_owner not a UUID",
            format!("/v1/pull/jobs/{live}/fail"),
            json!({"lease_owner": 7, "attempt": 1, "error": "x"}),
        )
        .invalid("lease_owner"),
        get("unknown route", "/v1/nope").expect(404, "not_found", "route"),
        case("wrong method", "DELETE", "/v1/jobs", json!({})).expect(405, "method_not_allowed", ""),
    ];
    v.extend([
        get("missing token", "/v1/jobs").unauthorized(Auth::Missing),
        get("wrong token", "/v1/queues").unauthorized(Auth::Wrong),
        get("basic auth scheme", "/v1/workers").unauthorized(Auth::Basic),
        enqueue("enqueue without a token", job(json!({}))).unauthorized(Auth::Missing),
        enqueue("Idempotency-Key too long", job(json!({})))
            .header("idempotency-key", LONG_KEY)
            .invalid("Idempotency-Key"),
        enqueue(
            "payload holds U+0000",
            job(json!({"payload": {"a": "x\u{0}y"}})),
        )
        .invalid("payload"),
        raw(
            "number beyond Postgres numeric",
            Some("application/json"),
            "{\"queue\":\"q\",\"kind\":\"k\",\"payload\":1e1000000}",
        )
        .expect(400, "invalid_value", ""),
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
        let mut req = Request::builder().method(c.call.method).uri(&c.call.path);
        match c.call.auth {
            Auth::Good => req = req.header("authorization", format!("Bearer {TOKEN}")),
            Auth::Missing => {}
            Auth::Wrong => req = req.header("authorization", "Bearer not-the-token"),
            Auth::Basic => req = req.header("authorization", format!("Basic {TOKEN}")),
        }
        if let Some(ct) = c.call.content_type {
            req = req.header("content-type", ct);
        }
        for (k, v) in &c.call.headers {
            req = req.header(*k, *v);
        }
        let r = app
            .send(req.body(Body::from(c.call.body.clone())).unwrap())
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
                c.call.name, c.status, c.code, c.mentions, r.status, r.text
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
