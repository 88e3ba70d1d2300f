//! Job kinds fit for real tools (issue 17): placeholders, exit-code lists, output
//! modes, soft timeouts, progress, http templates and signatures, the kinds registry,
//! kind defaults and payload schemas, and the example `scan` kind end to end.

use std::collections::BTreeMap;
use std::time::Duration;

use ordinaut::config::{Config, KindConfig};
use ordinaut::db::due_work::NewJob;
use ordinaut::kinds::{CommandKind, CommandOutput, HttpKind, HttpOutput};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api::{App, settings};
use crate::common::{TestDb, eventually};
use crate::worker::{enqueue, options, start};

fn sh(script: &str, extra: &[&str]) -> CommandKind {
    let mut args = vec!["-c".to_owned(), script.to_owned(), "sh".to_owned()];
    args.extend(extra.iter().map(|s| s.to_string()));
    CommandKind {
        program: "sh".into(),
        args,
        ..Default::default()
    }
}

fn config_with(kinds: Vec<(&str, KindConfig)>) -> Config {
    let mut config = Config::default();
    for (name, kind) in kinds {
        config.kinds.insert(name.to_owned(), kind);
    }
    config.validate().expect("valid test config");
    config
}

fn handlers(config: &Config) -> ordinaut::worker::Handlers {
    ordinaut::worker::Handlers::from_config(config).expect("handlers build")
}

/// (state, attempt, last_error, output) once the job is in history.
async fn finished(db: &TestDb, id: Uuid) -> (String, i32, Option<String>, Option<Value>) {
    eventually(Duration::from_secs(30), "job to finish", || {
        let pool = db.pool.clone();
        async move {
            sqlx::query_as::<_, (String, i32, Option<String>, Option<Value>)>(
                "SELECT state, attempt, last_error, output FROM job_history WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&pool)
            .await
            .unwrap()
        }
    })
    .await
}

#[tokio::test]
async fn hostile_payload_values_reach_the_program_as_one_literal_argument_each() {
    let db = TestDb::new().await;
    let marker = std::env::temp_dir().join(format!("ordinaut-pwned-{}", Uuid::now_v7()));
    let mut kind = sh(
        r#"printf '%s|' "$#" "$@""#,
        &[
            "{{payload.a}}",
            "x{{payload.b}}y",
            "{{job.queue}}:{{job.attempt}}",
        ],
    );
    kind.output = CommandOutput::StdoutText;
    let config = config_with(vec![("argv", KindConfig::Command(kind))]);
    let w = start(&db, handlers(&config), options());
    let hostile = format!(
        "; rm -rf / ; touch {} $(touch {}) `id`\nline2",
        marker.display(),
        marker.display()
    );
    let id = enqueue(
        &db,
        NewJob::new(
            "q",
            "argv",
            json!({"a": hostile, "b": "{{job.id}} \"'$HOME"}),
        ),
    )
    .await;
    let (state, _, error, output) = finished(&db, id).await;
    w.shutdown().await;
    assert_eq!(state, "completed", "{error:?}");
    assert_eq!(
        output,
        Some(json!(format!("3|{hostile}|x{{{{job.id}}}} \"'$HOMEy|q:1|")))
    );
    assert!(!marker.exists(), "nothing in the payload was run");
}

#[tokio::test]
async fn a_placeholder_that_cannot_be_filled_fails_without_running() {
    let db = TestDb::new().await;
    let marker = std::env::temp_dir().join(format!("ordinaut-ran-{}", Uuid::now_v7()));
    let script = format!("touch {}", marker.display());
    let config = config_with(vec![(
        "touch",
        KindConfig::Command(sh(&script, &["{{payload.options}}"])),
    )]);
    let w = start(&db, handlers(&config), options());
    let object = enqueue(
        &db,
        NewJob::new("q", "touch", json!({"options": {"depth": 3}})),
    )
    .await;
    let missing = enqueue(&db, NewJob::new("q", "touch", json!({"other": 1}))).await;
    let (s1, a1, e1, _) = finished(&db, object).await;
    let (s2, a2, e2, _) = finished(&db, missing).await;
    w.shutdown().await;
    assert_eq!((s1.as_str(), a1), ("failed", 1), "fails for good at once");
    assert_eq!(
        e1.as_deref(),
        Some("not run: payload.options is an object, not a string, number or boolean")
    );
    assert_eq!((s2.as_str(), a2), ("failed", 1));
    assert_eq!(e2.as_deref(), Some("not run: payload.options is missing"));
    assert!(!marker.exists(), "the program never ran");
}

#[tokio::test]
async fn exit_statuses_follow_success_retry_and_fail_codes() {
    let db = TestDb::new().await;
    let mut listed = sh("exit \"$1\"", &["{{payload.code}}"]);
    listed.success_codes = Some(vec![0, 1]);
    listed.retry_codes = Some(vec![3]);
    listed.fail_codes = Some(vec![2]);
    let mut tempfail = sh("exit 75", &[]);
    tempfail.fail_codes = Some(vec![75]);
    let config = config_with(vec![
        ("listed", KindConfig::Command(listed)),
        (
            "default_codes",
            KindConfig::Command(sh("exit \"$1\"", &["{{payload.code}}"])),
        ),
        ("tempfail_listed", KindConfig::Command(tempfail)),
    ]);
    let w = start(&db, handlers(&config), options());
    let job = |kind: &str, code: i32| {
        let mut j = NewJob::new("q", kind, json!({ "code": code }));
        j.max_attempts = Some(2);
        j
    };
    let ok1 = enqueue(&db, job("listed", 1)).await;
    let fail2 = enqueue(&db, job("listed", 2)).await;
    let retry3 = enqueue(&db, job("listed", 3)).await;
    let unlisted4 = enqueue(&db, job("listed", 4)).await;
    let default1 = enqueue(&db, job("default_codes", 1)).await;
    let snooze = enqueue(&db, job("default_codes", 75)).await;
    let tempfail = enqueue(&db, job("tempfail_listed", 0)).await;
    assert_eq!(&finished(&db, ok1).await.0, "completed");
    let (s, a, e, _) = finished(&db, fail2).await;
    assert_eq!((s.as_str(), a), ("failed", 1), "fail_codes: no retry");
    assert!(e.unwrap().contains("fail_codes"));
    let (s, a, _, _) = finished(&db, retry3).await;
    assert_eq!((s.as_str(), a), ("failed", 2), "retry_codes: retried");
    let (s, a, _, _) = finished(&db, unlisted4).await;
    assert_eq!(
        (s.as_str(), a),
        ("failed", 1),
        "with retry_codes set, a status in no list fails for good"
    );
    let (s, a, _, _) = finished(&db, default1).await;
    assert_eq!(
        (s.as_str(), a),
        ("failed", 2),
        "default: any non-zero retried"
    );
    let (s, a, _, _) = finished(&db, tempfail).await;
    assert_eq!(
        (s.as_str(), a),
        ("failed", 1),
        "75 in fail_codes is no snooze"
    );
    let snoozed = eventually(Duration::from_secs(20), "exit 75 to snooze", || {
        let pool = db.pool.clone();
        async move {
            sqlx::query_as::<_, (String, i32)>(
                "SELECT w.state, w.attempt FROM due_work w
                 WHERE w.id = $1 AND EXISTS (SELECT 1 FROM job_attempts a
                                             WHERE a.job_id = w.id AND a.outcome = 'snoozed')",
            )
            .bind(snooze)
            .fetch_optional(&pool)
            .await
            .unwrap()
        }
    })
    .await;
    w.shutdown().await;
    assert_eq!(snoozed.0, "scheduled", "exit 75 keeps its snooze meaning");
}

#[tokio::test]
async fn output_modes_store_stdout_json_text_or_the_output_file() {
    let db = TestDb::new().await;
    let kind = |script: &str, output| {
        let mut k = sh(script, &[]);
        k.output = output;
        KindConfig::Command(k)
    };
    let config = config_with(vec![
        (
            "json",
            kind(r#"echo '{"a": [1, 2]}'"#, CommandOutput::StdoutJson),
        ),
        ("notjson", kind("echo not json", CommandOutput::StdoutJson)),
        (
            "text",
            kind("printf 'two\\nlines'", CommandOutput::StdoutText),
        ),
        (
            "file",
            kind(
                r#"echo noise; echo '{"report": true}' > "$ORDINAUT_OUTPUT_FILE""#,
                CommandOutput::File,
            ),
        ),
        ("nofile", kind("echo noise", CommandOutput::File)),
        ("none", kind("echo '{}'", CommandOutput::None)),
    ]);
    let w = start(&db, handlers(&config), options());
    let mut ids = BTreeMap::new();
    for kind in ["json", "notjson", "text", "file", "nofile", "none"] {
        let mut j = NewJob::new("q", kind, json!({}));
        j.max_attempts = Some(1);
        ids.insert(kind, enqueue(&db, j).await);
    }
    let mut got = BTreeMap::new();
    for (kind, id) in &ids {
        got.insert(*kind, finished(&db, *id).await);
    }
    w.shutdown().await;
    assert_eq!(got["json"].3, Some(json!({"a": [1, 2]})));
    assert_eq!(got["text"].3, Some(json!("two\nlines")));
    assert_eq!(got["file"].3, Some(json!({"report": true})));
    assert_eq!(got["none"].3, None);
    assert_eq!(got["notjson"].0, "failed");
    assert!(
        got["notjson"]
            .2
            .as_deref()
            .unwrap()
            .contains("stdout is not JSON"),
        "{:?}",
        got["notjson"].2
    );
    assert!(
        got["nofile"]
            .2
            .as_deref()
            .unwrap()
            .contains("wrote no $ORDINAUT_OUTPUT_FILE")
    );
}

#[tokio::test]
async fn timeout_sends_sigterm_then_sigkill_after_kill_grace() {
    let db = TestDb::new().await;
    let mut polite = sh(r#"trap 'echo partial; exit 0' TERM; sleep 30 & wait"#, &[]);
    polite.timeout = Some(Duration::from_millis(500));
    polite.kill_grace = Some(Duration::from_secs(20));
    let mut stubborn = sh(r#"trap '' TERM; echo started; sleep 30"#, &[]);
    stubborn.timeout = Some(Duration::from_millis(500));
    stubborn.kill_grace = Some(Duration::from_millis(500));
    let config = config_with(vec![
        ("polite", KindConfig::Command(polite)),
        ("stubborn", KindConfig::Command(stubborn)),
    ]);
    let w = start(&db, handlers(&config), options());
    let one = |kind: &str| {
        let mut j = NewJob::new("q", kind, json!({}));
        j.max_attempts = Some(1);
        j
    };
    let p = enqueue(&db, one("polite")).await;
    let s = enqueue(&db, one("stubborn")).await;
    let (ps, _, pe, _) = finished(&db, p).await;
    let (ss, _, se, _) = finished(&db, s).await;
    let log: String = sqlx::query_scalar("SELECT log FROM job_attempts WHERE job_id = $1")
        .bind(p)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    w.shutdown().await;
    assert_eq!(ps, "failed");
    assert_eq!(
        pe.as_deref(),
        Some("timed out after 500ms; terminated by SIGTERM")
    );
    assert!(
        log.contains("partial"),
        "output written after SIGTERM is kept: {log}"
    );
    assert_eq!(ss, "failed");
    assert_eq!(
        se.as_deref(),
        Some(
            "timed out after 500ms; killed with SIGKILL: still running 500ms after SIGTERM (kill_grace)"
        )
    );
}

#[tokio::test]
async fn progress_lines_faster_than_the_rate_limit_store_the_latest_at_most_once_a_second() {
    let db = TestDb::new().await;
    let script = r#"
        i=0
        while [ $i -lt 3000 ]; do echo "$((i / 30)) step $i" >&3; i=$((i + 1)); done
        echo '{"percent": 100, "message": "done"}' >&3
        sleep 3
    "#;
    let config = config_with(vec![("prog", KindConfig::Command(sh(script, &[])))]);
    let mut listener = sqlx::postgres::PgListener::connect_with(&db.pool)
        .await
        .unwrap();
    listener.listen("ordinaut_events").await.unwrap();
    let w = start(&db, handlers(&config), options());
    let id = enqueue(&db, NewJob::new("q", "prog", json!({}))).await;
    let latest = eventually(Duration::from_secs(30), "the last report stored", || {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, Value>(
                "SELECT progress FROM due_work WHERE id = $1 AND progress->>'message' = 'done'",
            )
            .bind(id)
            .fetch_optional(&pool)
            .await
            .unwrap()
        }
    })
    .await;
    assert_eq!(latest["percent"], json!(100.0));
    assert_eq!(latest["attempt"], json!(1));
    finished(&db, id).await;
    let (started, ended): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT attempted_at, finished_at FROM job_history WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    w.shutdown().await;
    let mut reports = 0;
    while let Ok(Ok(Some(n))) =
        tokio::time::timeout(Duration::from_millis(200), listener.try_recv()).await
    {
        let events = ordinaut::db::events::parse_payload(n.payload()).unwrap_or_default();
        reports += events
            .iter()
            .filter(|e| e.id == id && e.progress.is_some())
            .count();
    }
    let seconds = (ended - started).num_milliseconds() as f64 / 1000.0;
    assert!(reports >= 1, "progress reached the event stream");
    assert!(
        (reports as f64) <= seconds.ceil() + 1.0,
        "{reports} stored reports in {seconds} s of running: more than one a second"
    );
}

/// A server recording what http kinds send it.
async fn recorder() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<(String, axum::http::HeaderMap, String)>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((uri.to_string(), headers, body));
                "plain text reply"
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, rx)
}

#[tokio::test]
async fn http_kinds_fill_placeholders_add_secret_headers_and_sign_the_body() {
    let db = TestDb::new().await;
    let (addr, mut rx) = recorder().await;
    let dir = std::env::temp_dir().join(format!("ordinaut-http-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("key"), "file-secret\n").unwrap();
    std::fs::write(dir.join("signing"), "s3cret\n").unwrap();
    let var = format!("ORDINAUT_TEST_AUTH_{}", std::process::id());
    // SAFETY: a variable no other test reads, set before the handlers read it.
    unsafe { std::env::set_var(&var, "Bearer from-env") };
    let kind = HttpKind {
        url: format!("http://{addr}/repos/{{{{payload.repo}}}}/scan?job={{{{job.id}}}}"),
        headers: [("X-Depth".to_owned(), "{{payload.options.depth}}".to_owned())].into(),
        headers_from_env: [("Authorization".to_owned(), var.clone())].into(),
        headers_from_file: [("X-Api-Key".to_owned(), dir.join("key"))].into(),
        body: Some(json!({"repo": "{{payload.repo}}", "all": "{{payload.options}}", "n": 1})),
        signing_secret_file: Some(dir.join("signing")),
        output: HttpOutput::Text,
        ..Default::default()
    };
    let config = config_with(vec![("hook", KindConfig::Http(kind))]);
    let w = start(&db, handlers(&config), options());
    let id = enqueue(
        &db,
        NewJob::new(
            "q",
            "hook",
            json!({"repo": "a b/../c?d", "options": {"depth": 2}}),
        ),
    )
    .await;
    let mut injected = NewJob::new(
        "q",
        "hook",
        json!({"repo": "r", "options": {"depth": "1\r\nX-Evil: 1"}}),
    );
    injected.max_attempts = Some(1);
    let injected = enqueue(&db, injected).await;
    let (state, _, error, output) = finished(&db, id).await;
    let (istate, _, ierror, _) = finished(&db, injected).await;
    w.shutdown().await;
    assert_eq!(state, "completed", "{error:?}");
    assert_eq!(output, Some(json!("plain text reply")), "output = text");
    let (uri, headers, body) = rx.recv().await.unwrap();
    assert_eq!(uri, format!("/repos/a%20b%2F..%2Fc%3Fd/scan?job={id}"));
    assert_eq!(headers["x-depth"], "2");
    assert_eq!(headers["authorization"], "Bearer from-env");
    assert_eq!(headers["x-api-key"], "file-secret");
    let body_json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body_json,
        json!({"repo": "a b/../c?d", "all": {"depth": 2}, "n": 1})
    );
    // Verify as a receiver would: HMAC-SHA256 over "t.body" with the shared secret.
    let sig = headers["ordinaut-signature"].to_str().unwrap();
    let (t, v1) = sig
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
        .expect("t=...,v1=...");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret");
    let tag: Vec<u8> = (0..v1.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&v1[i..i + 2], 16).unwrap())
        .collect();
    ring::hmac::verify(&key, format!("{t}.{body}").as_bytes(), &tag).expect("signature verifies");
    assert_eq!(istate, "failed");
    assert!(ierror.unwrap().contains("not sent: header x-depth"));
    assert!(
        rx.try_recv().is_err(),
        "the injected request was never sent"
    );
}

#[tokio::test]
async fn a_missing_secret_header_source_stops_the_worker_start_naming_the_key() {
    let kind = HttpKind {
        url: "http://127.0.0.1:9/".into(),
        headers_from_env: [(
            "Authorization".to_owned(),
            "ORDINAUT_TEST_SURELY_UNSET".to_owned(),
        )]
        .into(),
        ..Default::default()
    };
    let config = config_with(vec![("hook", KindConfig::Http(kind))]);
    let err = ordinaut::worker::Handlers::from_config(&config).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid kinds.hook.headers_from_env.Authorization: environment variable ORDINAUT_TEST_SURELY_UNSET is not set"
    );
}

fn api_with(config: Config) -> ordinaut::api::ApiSettings {
    let mut s = settings();
    s.config = std::sync::Arc::new(config);
    s
}

#[tokio::test]
async fn the_scan_example_runs_from_an_enqueue_naming_only_the_kind_and_returns_its_report() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/ordinaut.example.toml");
    let config = Config::load(Some(std::path::Path::new(path))).expect("example loads");
    let app = App::with(api_with(config.clone()))
        .await
        .with_listener()
        .await;
    let mut o = options();
    o.queues = vec!["scans".into()];
    let w = start(&app.db, handlers(&config), o);
    let repo = std::env::temp_dir().join(format!("ordinaut-repo-{}", Uuid::now_v7()));
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(
        repo.join("src/Vault.sol"),
        "function kill() { selfdestruct(owner); }",
    )
    .unwrap();
    std::fs::write(repo.join("README"), "fine").unwrap();
    let r = app
        .enqueue(json!({"kind": "scan", "payload": {"repo": repo}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.id();
    let done = app.get(&format!("/v1/jobs/{id}?wait=60")).await;
    assert_eq!(done.body["state"], "completed", "{}", done.text);
    assert_eq!(done.body["queue"], "scans", "the kind's queue");
    assert_eq!(done.body["max_attempts"], 2, "the kind's max_attempts");
    assert_eq!(
        done.body["output"],
        json!({"repository": repo, "findings": 1}),
        "exit 1 (findings) is a success with the report as output"
    );
    // The schema is checked at enqueue, naming the field.
    let bad = app
        .enqueue(json!({"kind": "scan", "payload": {"repo": 5}}))
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(bad.text.contains("payload.repo"), "{}", bad.text);
    w.shutdown().await;
}

#[tokio::test]
async fn the_registry_lists_served_kinds_and_refuses_unknown_ones_once_any_is_served() {
    let config = config_with(vec![
        ("alpha", KindConfig::Noop(Default::default())),
        (
            "beta",
            KindConfig::Noop(ordinaut::kinds::NoopKind {
                queue: Some("betas".into()),
                priority: Some(-3),
                ..Default::default()
            }),
        ),
    ]);
    let app = App::with(api_with(Config::default())).await;
    // Nothing published yet: a fresh install takes any kind.
    let r = app.enqueue(json!({"queue": "q", "kind": "early"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let w = start(&app.db, handlers(&config), options());
    let listed = eventually(Duration::from_secs(10), "kinds published", || async {
        let r = app.get("/v1/kinds").await;
        (r.body["kinds"].as_array().map(|k| k.len()) == Some(2)).then_some(r.body)
    })
    .await;
    assert_eq!(listed["kinds"][0]["name"], "alpha");
    assert_eq!(listed["kinds"][1]["name"], "beta");
    assert_eq!(listed["kinds"][1]["type"], "noop");
    assert_eq!(listed["kinds"][1]["queue"], "betas");
    assert_eq!(listed["kinds"][1]["workers"][0]["alive"], true);
    let r = app.enqueue(json!({"kind": "gamma"})).await;
    assert_eq!(r.status, 400);
    assert!(
        r.text
            .contains("unknown kind 'gamma': no worker serves it; known: alpha, beta"),
        "{}",
        r.text
    );
    let r = app
        .enqueue_batch(json!({"jobs": [{"kind": "alpha"}, {"kind": "gamma"}]}))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("jobs[1].kind"), "{}", r.text);
    let r = app
        .enqueue(json!({"kind": "gamma", "allow_unknown_kind": true}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app.enqueue(json!({"kind": "beta"})).await;
    assert_eq!(r.status, 201);
    let job = app
        .get(&format!("/v1/jobs/{}", r.body["id"].as_str().unwrap()))
        .await;
    assert_eq!(job.body["queue"], "betas");
    assert_eq!(job.body["priority"], -3);
    // The operator can turn the check off.
    let mut off = Config::default();
    off.registry.check_unknown_kinds = false;
    let open = App::with(api_with(off)).await;
    let w2 = start(&open.db, handlers(&config), options());
    eventually(Duration::from_secs(10), "kinds published", || async {
        (open.db.count("kinds").await == 2).then_some(())
    })
    .await;
    let r = open.enqueue(json!({"kind": "gamma"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    w2.shutdown().await;
    // After the worker is gone (exited, or judged dead by the rescuer, whose removal
    // of its row is what this does) its kinds stay known for the window, shown as gone.
    w.shutdown().await;
    app.db.exec("DELETE FROM workers").await;
    let after = app.get("/v1/kinds").await;
    assert_eq!(after.body["kinds"][0]["workers"][0]["alive"], false);
    let r = app.enqueue(json!({"kind": "alpha"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

fn cli(db: &TestDb, args: &[&str]) -> std::process::Output {
    std::process::Command::new(crate::common::binary())
        .args(args)
        .current_dir(std::env::temp_dir())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run ordinaut")
}

#[tokio::test]
async fn the_cli_lists_kinds_and_refuses_unknown_kinds_and_bad_payloads() {
    let schema = json!({"type": "object", "required": ["repo"]});
    let config = config_with(vec![(
        "scan",
        KindConfig::Noop(ordinaut::kinds::NoopKind {
            queue: Some("scans".into()),
            payload_schema: Some(schema),
            ..Default::default()
        }),
    )]);
    let db = TestDb::new().await;
    let w = start(&db, handlers(&config), options());
    eventually(Duration::from_secs(10), "kinds published", || async {
        (db.count("kinds").await == 1).then_some(())
    })
    .await;
    let out = cli(&db, &["kinds"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("scan") && text.contains("scans") && text.contains("yes"),
        "{text}"
    );
    let out = cli(&db, &["jobs", "enqueue", "--kind", "scna"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "ordinaut: invalid --kind: unknown kind 'scna': no worker serves it; known: scan"
    );
    let out = cli(
        &db,
        &["jobs", "enqueue", "--kind", "scan", "--payload", "{}"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("ordinaut: invalid --payload: payload "),
        "{err}"
    );
    assert!(err.contains("repo"), "{err}");
    let out = cli(
        &db,
        &[
            "jobs",
            "enqueue",
            "--kind",
            "scan",
            "--payload",
            r#"{"repo": "r"}"#,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(
        &db,
        &["jobs", "enqueue", "--kind", "scna", "--allow-unknown-kind"],
    );
    assert!(out.status.success());
    w.shutdown().await;
    assert_eq!(
        db.count("due_work WHERE kind = 'scan' AND queue = 'scans'")
            .await,
        1,
        "the kind's queue"
    );
}
