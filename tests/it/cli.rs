//! The CLI as users run it: the built binary, its messages and exit codes.

use std::process::{Command, Output};

use crate::common::procs::workdir;
use crate::common::{TestDb, binary};

fn run(db: Option<&TestDb>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = std::env::temp_dir();
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    if let Some(db) = db {
        cmd.env("DATABASE_URL", &db.url);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run ordinaut")
}

/// `ordinaut` on `db` with `line` split at spaces (none of its arguments holds one).
fn ordinaut(db: &TestDb, line: &str) -> Output {
    let args: Vec<&str> = line.split_whitespace().collect();
    run(Some(db), &args, &[])
}

/// Asserts the command failed with `message` in its stderr.
fn fails_with(o: &Output, message: &str) {
    assert!(!o.status.success(), "succeeded: {}", stdout(o));
    assert!(stderr(o).contains(message), "{}", stderr(o));
}

/// Starts a worker on `db` with `toml` as its configuration file, which it must refuse:
/// its stderr.
fn refused_config(db: &TestDb, toml: &str) -> String {
    let file = workdir("cfg", toml).join("ordinaut.toml");
    let file = file.to_str().expect("a UTF-8 path");
    let out = run(Some(db), &["--config", file, "worker"], &[]);
    assert!(!out.status.success(), "{toml} accepted");
    stderr(&out)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn enqueue_list_show_cancel_and_retry() {
    let db = TestDb::new().await;
    let out = ordinaut(
        &db,
        r#"jobs enqueue --queue scans --kind slither --payload {"repo":"x"} --priority -5 --delay 1h --unique-key repo-x"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    assert_eq!(id.len(), 36);
    let again = ordinaut(
        &db,
        "jobs enqueue --queue scans --kind slither --unique-key repo-x",
    );
    assert_eq!(
        stdout(&again).trim(),
        id,
        "duplicate unique key returns the live job"
    );
    let list = ordinaut(&db, "jobs list --queue scans --state scheduled");
    assert!(stdout(&list).contains(&id), "{}", stdout(&list));
    let queues = ordinaut(&db, "queues");
    assert!(
        stdout(&queues)
            .lines()
            .any(|l| l.starts_with("scans") && l.contains(" 1 ")),
        "{}",
        stdout(&queues)
    );
    let cancel = ordinaut(&db, &format!("jobs cancel {id}"));
    assert!(cancel.status.success(), "{}", stderr(&cancel));
    let show = ordinaut(&db, &format!("jobs show {id}"));
    let job: serde_json::Value = serde_json::from_slice(&show.stdout).expect("show prints JSON");
    assert_eq!(job["state"], "cancelled");
    assert_eq!(job["priority"], -5);
    assert!(job["attempts"].is_array());
    let retry = ordinaut(&db, &format!("jobs retry {id}"));
    assert!(retry.status.success(), "{}", stderr(&retry));
    db.assert_rows("due_work WHERE state = 'available'", 1)
        .await;
    let pause = ordinaut(&db, "queues pause scans");
    assert!(pause.status.success());
    db.assert_rows("queues WHERE paused", 1).await;
    let set = ordinaut(&db, "queues set scans --max-attempts 7 --timeout 10m");
    assert!(set.status.success(), "{}", stderr(&set));
    db.assert_rows("queues WHERE max_attempts = 7 AND timeout_ms = 600000", 1)
        .await;
}

/// `ordinaut workflows submit/show/list/cancel/retry`, and a waiting step through
/// `jobs show`, `jobs list --state waiting` and `jobs cancel`.
#[tokio::test]
async fn workflows_and_their_waiting_steps_from_the_command_line() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("ordinaut-cli-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("scan.json");
    std::fs::write(
        &file,
        r#"{"name": "scan", "jobs": [
            {"name": "clone", "queue": "scans", "kind": "git_clone", "timeout": "5m"},
            {"name": "semgrep", "queue": "scans", "kind": "semgrep", "depends_on": ["clone"]},
            {"name": "report", "queue": "scans", "kind": "merge", "depends_on": ["semgrep"]}]}"#,
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let submit = run(Some(&db), &["workflows", "submit", file], &[]);
    assert!(submit.status.success(), "{}", stderr(&submit));
    let wf = stdout(&submit).trim().to_owned();
    let show = ordinaut(&db, &format!("workflows show {wf}"));
    let w: serde_json::Value = serde_json::from_slice(&show.stdout).expect("show prints JSON");
    assert_eq!(w["state"], "running");
    assert_eq!(w["jobs"][1]["state"], "waiting");
    let semgrep = w["jobs"][1]["job_id"].as_str().unwrap().to_owned();
    let list = ordinaut(&db, "workflows list --state running");
    assert!(stdout(&list).contains(&wf), "{}", stdout(&list));

    let job = ordinaut(&db, &format!("jobs show {semgrep}"));
    assert!(job.status.success(), "{}", stderr(&job));
    let job: serde_json::Value = serde_json::from_slice(&job.stdout).expect("show prints JSON");
    assert_eq!(job["state"], "waiting");
    assert_eq!(job["workflow_id"], wf.as_str());
    assert_eq!(job["workflow_step"]["depends_on"][0]["name"], "clone");
    let waiting = ordinaut(&db, "jobs list --state waiting");
    assert!(waiting.status.success(), "{}", stderr(&waiting));
    assert_eq!(stdout(&waiting).lines().count(), 3, "{}", stdout(&waiting));
    assert!(stdout(&waiting).contains(&semgrep));

    // Cancelling the waiting step cancels its dependent (a cancel edge); with clone
    // cancelled too the workflow ends cancelled, and its retry brings all three back.
    let cancel = ordinaut(&db, &format!("jobs cancel {semgrep}"));
    assert!(cancel.status.success(), "{}", stderr(&cancel));
    assert_eq!(stdout(&cancel).trim(), format!("cancelled {semgrep}"));
    let again = ordinaut(&db, &format!("jobs cancel {semgrep}"));
    fails_with(&again, "already finished (cancelled)");
    let retry = ordinaut(&db, &format!("jobs retry {semgrep}"));
    fails_with(&retry, "retry the workflow");
    let cancel = ordinaut(&db, &format!("workflows cancel {wf}"));
    assert!(cancel.status.success(), "{}", stderr(&cancel));
    let show = ordinaut(&db, &format!("workflows show {wf}"));
    let w: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(w["state"], "cancelled");
    let retry = ordinaut(&db, &format!("workflows retry {wf}"));
    assert!(retry.status.success(), "{}", stderr(&retry));
    assert_eq!(stdout(&retry).trim(), "retried 1 job(s)");
    let waiting = ordinaut(&db, "jobs list --state waiting");
    assert_eq!(stdout(&waiting).lines().count(), 3, "{}", stdout(&waiting));

    // `-` reads the workflow from stdin.
    let mut child = Command::new(binary())
        .args(["workflows", "submit", "-"])
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ordinaut");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(br#"{"name": "from-stdin", "group": [{"queue": "q", "kind": "k"}], "callback": {"queue": "q", "kind": "k"}}"#)
            .unwrap();
    }
    let piped = child.wait_with_output().unwrap();
    assert!(piped.status.success(), "{}", stderr(&piped));
    let show = run(
        Some(&db),
        &["workflows", "show", stdout(&piped).trim()],
        &[],
    );
    let w: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(w["name"], "from-stdin");
    assert_eq!(w["jobs"][1]["name"], "callback");

    let bad = ordinaut(&db, "workflows list --state done");
    fails_with(&bad, "invalid --state");
    std::fs::write(dir.join("bad.json"), r#"{"name": "w", "jobs": [{"name": "a", "queue": "q", "kind": "k", "depends_on": ["zz"]}]}"#).unwrap();
    let bad = run(
        Some(&db),
        &[
            "workflows",
            "submit",
            dir.join("bad.json").to_str().unwrap(),
        ],
        &[],
    );
    fails_with(&bad, "jobs[0].depends_on: no step named zz");
    assert_eq!(stderr(&bad).lines().count(), 1, "{}", stderr(&bad));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn bad_enqueue_arguments_fail_clearly_and_change_nothing() {
    let db = TestDb::new().await;
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(2000));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--payload", "{not json"],
            "invalid --payload: not valid JSON",
        ),
        (vec!["--payload", &big], "exceeds the limit"),
        (vec!["--priority", "500"], "invalid --priority"),
        (vec!["--run-at", "tomorrow"], "invalid --run-at"),
        (vec!["--delay", "soon"], "invalid --delay"),
        (vec!["--max-attempts", "0"], "invalid --max-attempts"),
        (vec!["--timeout", "0s"], "invalid --timeout"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["jobs", "enqueue", "--queue", "q", "--kind", "k"];
        args.extend(extra);
        let out = run(Some(&db), &args, &[("ORDINAUT_MAX_PAYLOAD_BYTES", "1000")]);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    let bad_queue = run(
        Some(&db),
        &["jobs", "enqueue", "--queue", "bad queue", "--kind", "k"],
        &[],
    );
    assert!(stderr(&bad_queue).contains("invalid --queue"));
    let unknown = ordinaut(&db, "jobs show 0195f3a0-0000-7000-8000-000000000000");
    assert!(stderr(&unknown).contains("not found"));
    let not_uuid = ordinaut(&db, "jobs cancel nope");
    assert!(!not_uuid.status.success());
    assert_eq!(db.live_jobs().await, 0);
}

#[tokio::test]
async fn bad_configuration_stops_the_process_naming_the_key() {
    let db = TestDb::new().await;
    let lease = run(Some(&db), &["worker"], &[("WORKER_LEASE_SECONDS", "abc")]);
    fails_with(&lease, "WORKER_LEASE_SECONDS");
    assert_eq!(
        stderr(&lease).trim().lines().count(),
        1,
        "{}",
        stderr(&lease)
    );

    let tz = run(Some(&db), &["worker"], &[("TZ", "Mars/Olympus")]);
    assert!(stderr(&tz).contains("TZ"), "{}", stderr(&tz));

    let wait = run(Some(&db), &["api"], &[("API_MAX_WAIT", "500")]);
    fails_with(&wait, "API_MAX_WAIT");

    let snooze = run(Some(&db), &["worker"], &[("WORKER_SNOOZE_MIN", "-1")]);
    fails_with(&snooze, "WORKER_SNOOZE_MIN");

    let pool = run(Some(&db), &["api"], &[("API_DB_POOL_SIZE", "1")]);
    assert!(!pool.status.success());
    assert!(
        stderr(&pool).contains("API_DB_POOL_SIZE") && stderr(&pool).trim().lines().count() == 1,
        "{}",
        stderr(&pool)
    );

    let err = refused_config(&db, "[kinds.x]\ntype = \"ftp\"\n");
    assert!(err.contains("kinds.x") && err.contains("ftp"), "{err}");

    let unreachable = run(
        None,
        &["worker"],
        &[("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")],
    );
    assert!(!unreachable.status.success());
    let err = stderr(&unreachable);
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let missing = run(None, &["worker"], &[]);
    assert!(stderr(&missing).contains("DATABASE_URL is not set"));
}

#[tokio::test]
async fn command_kind_environment_settings_are_validated() {
    let db = TestDb::new().await;
    for (toml, names) in [
        (
            "[kinds.x]\ntype = \"command\"\nprogram = \"env\"\nenv = { \"A=B\" = \"1\" }\n",
            "kinds.x.env",
        ),
        (
            "[kinds.x]\ntype = \"command\"\nprogram = \"env\"\ninherit_env = \"yes\"\n",
            "expected a boolean",
        ),
        (
            "[kinds.x]\ntype = \"http\"\nurl = \"http://h/\"\ninherit_env = true\n",
            "inherit_env",
        ),
    ] {
        let err = refused_config(&db, toml);
        assert!(err.contains(names), "{toml}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn env_example_lists_every_variable_the_code_reads() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    let listed: Vec<&str> = example
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split('=').next())
        .collect();
    let mut read: Vec<String> = ordinaut::config::ENV_KEYS
        .iter()
        .map(|(env, _)| env.to_string())
        .collect();
    read.push("ORDINAUT_CONFIG".into());
    // Any direct env::var read in the source must be listed too.
    for entry in walk(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))) {
        let text = std::fs::read_to_string(&entry).unwrap();
        for (i, _) in text.match_indices("env::var") {
            // Only a literal name right in the call (`env::var("X")`, `env::var_os("X")`):
            // `env::vars_os()` reads no particular variable.
            let rest = &text[i + "env::var".len()..];
            let rest = rest.strip_prefix("_os").unwrap_or(rest);
            if let Some(quoted) = rest.strip_prefix("(\"") {
                let name: String = quoted.chars().take_while(|c| *c != '"').collect();
                if name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                    && !name.is_empty()
                    && name != "PATH"
                    && name != "HOSTNAME"
                    // Set by systemd for Type=notify units, not by operators.
                    && name != "NOTIFY_SOCKET"
                {
                    read.push(name);
                }
            }
        }
    }
    for name in read {
        assert!(
            listed.contains(&name.as_str()),
            "{name} is read by the code but missing from .env.example"
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn queue_limits_are_set_shown_and_cleared() {
    let db = TestDb::new().await;
    let set = ordinaut(
        &db,
        "queues set scans --concurrency-limit 7 --rate-limit 10/s --burst 20 --key-concurrency 1",
    );
    assert!(set.status.success(), "{}", stderr(&set));
    db.assert_rows("queues WHERE concurrency_limit = 7 AND rate_limit = 10 AND rate_period_ms = 1000 AND rate_burst = 20 AND key_concurrency = 1", 1).await;
    ordinaut(
        &db,
        "jobs enqueue --queue scans --kind k --concurrency-key example.org",
    );
    let list = stdout(&ordinaut(&db, "queues"));
    assert!(
        list.contains("0/7")
            && list.contains("concurrency=7")
            && list.contains("rate=10/1s burst=20 tokens=20.0")
            && list.contains("per-key=1"),
        "{list}"
    );
    let clear = ordinaut(
        &db,
        "queues set scans --rate-limit none --concurrency-limit none",
    );
    assert!(clear.status.success());
    assert_eq!(
        db.count(
            "queues WHERE concurrency_limit IS NULL AND rate_limit IS NULL AND key_concurrency = 1"
        )
        .await,
        1
    );
    for (flag, value) in [
        ("--rate-limit", "fast"),
        ("--concurrency-limit", "0"),
        ("--key-concurrency", "-1"),
    ] {
        let arg = format!("{flag}={value}");
        let out = ordinaut(&db, &format!("queues set scans {arg}"));
        fails_with(&out, flag);
    }
}

#[tokio::test]
async fn queues_declared_in_the_file_are_applied_and_limits_follow_the_file() {
    use std::collections::BTreeMap;
    let db = TestDb::new().await;
    let mut declared = BTreeMap::new();
    declared.insert(
        "scans".to_owned(),
        ordinaut::config::QueueConfig {
            concurrency_limit: Some(3),
            rate_limit: Some("5/m".into()),
            ..Default::default()
        },
    );
    ordinaut::db::queues::apply_declared(&db.pool, &declared)
        .await
        .unwrap();
    assert_eq!(
        db.count(
            "queues WHERE concurrency_limit = 3 AND rate_limit = 5 AND rate_period_ms = 60000"
        )
        .await,
        1
    );
    declared.get_mut("scans").unwrap().rate_limit = None;
    ordinaut::db::queues::apply_declared(&db.pool, &declared)
        .await
        .unwrap();
    db.assert_rows(
        "queues WHERE concurrency_limit = 3 AND rate_limit IS NULL",
        1,
    )
    .await;
}
