//! What ops/ relies on: `ordinaut healthcheck` as Docker and Kubernetes run it (the built
//! binary, its exit code and its one line), and the example ordinaut.toml files it mounts.

use std::process::{Command, Output};
use std::time::Duration;

use crate::api::Server;
use crate::common::http::free_port;
use crate::common::{TestDb, binary, schedules};

fn healthcheck(args: &[&str], env: &[(&str, &str)]) -> Output {
    cli(&[&["healthcheck"], args].concat(), env)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

// Multi-threaded: the server must answer while this thread waits for the child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_check_passes_on_ready_and_fails_once_the_api_is_gone() {
    let server = Server::start().await;
    let url = server.url("/ready");
    let ok = healthcheck(&["--url", &url], &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let line = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains("200"), "{line}");
    server.stop().await;

    let gone = healthcheck(&["--url", &url, "--timeout", "2s"], &[]);
    assert_eq!(gone.status.code(), Some(1), "{}", text(&gone));
    let line = String::from_utf8_lossy(&gone.stderr).into_owned();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains("unhealthy"), "{line}");
}

// Multi-threaded: the server must answer while this thread waits for the child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_check_fails_on_a_non_2xx_answer_and_repeats_its_message() {
    let server = Server::start().await;
    // /v1 without a token answers 401 with our error body.
    let out = healthcheck(&["--url", &server.url("/v1/queues")], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let line = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(line.contains("401"), "{line}");
    assert_eq!(line.lines().count(), 1, "{line}");
    server.stop().await;
}

#[tokio::test]
async fn db_check_passes_on_a_migrated_schema_and_fails_on_a_missing_one() {
    let db = TestDb::new().await;
    let ok = healthcheck(&["--db"], &[("DATABASE_URL", &db.url)]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let line = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(
        !line.contains(&password(&db.url)),
        "password printed: {line}"
    );

    let empty = healthcheck(
        &["--db"],
        &[
            ("DATABASE_URL", &db.url),
            ("ORDINAUT_SCHEMA", "nothing_here"),
        ],
    );
    assert_eq!(empty.status.code(), Some(1), "{}", text(&empty));
    assert!(text(&empty).contains("not migrated"), "{}", text(&empty));
}

#[test]
fn db_check_fails_when_postgres_is_unreachable_or_unset() {
    let down = healthcheck(
        &["--db", "--timeout", "2s"],
        &[("DATABASE_URL", "postgres://nobody:secret@127.0.0.1:1/none")],
    );
    assert_eq!(down.status.code(), Some(1), "{}", text(&down));
    assert!(!text(&down).contains("secret"), "{}", text(&down));

    let unset = healthcheck(&["--db"], &[]);
    assert_eq!(unset.status.code(), Some(1), "{}", text(&unset));
    assert!(text(&unset).contains("DATABASE_URL"), "{}", text(&unset));
}

#[test]
fn a_bad_configuration_is_unhealthy_not_docker_reserved_exit_2() {
    let out = healthcheck(&[], &[("ORDINAUT_CONFIG", "/nonexistent/ordinaut.toml")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

fn password(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
        .unwrap_or_else(|| "\u{0}no password\u{0}".to_owned())
}

#[test]
fn the_ordinaut_toml_files_under_ops_load_and_validate() {
    for file in ["ops/ordinaut.toml", "ops/k8s/base/ordinaut.toml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let config =
            ordinaut::config::Config::load(Some(&path)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let kinds: Vec<&str> = config.kinds.keys().map(String::as_str).collect();
        assert_eq!(kinds, ["echo", "notify"], "{file}");
    }
}

/// Every variable Ordinaut reads set to the empty string, as an env file's `KEY=` lines
/// do, plus `ORDINAUT_CONFIG=`: each means "unset", so the defaults apply and nothing fails.
fn all_empty() -> Vec<(&'static str, &'static str)> {
    let mut env: Vec<(&str, &str)> = ordinaut::config::ENV_KEYS
        .iter()
        .map(|(k, _)| (*k, ""))
        .collect();
    env.push(("ORDINAUT_CONFIG", ""));
    env
}

fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .current_dir(std::env::temp_dir())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run ordinaut")
}

#[tokio::test]
async fn an_empty_variable_means_unset_for_every_setting() {
    let db = TestDb::new().await;
    let mut env = all_empty();
    env.retain(|(k, _)| *k != "DATABASE_URL");
    env.push(("DATABASE_URL", &db.url));
    let listed = cli(&["jobs", "list"], &env);
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed));
    let probe = cli(&["healthcheck", "--db"], &env);
    assert_eq!(probe.status.code(), Some(0), "{}", text(&probe));

    // DATABASE_URL= too: unset, so the command says so (not "invalid URL ''").
    let unset = cli(&["jobs", "list"], &all_empty());
    assert_eq!(unset.status.code(), Some(1), "{}", text(&unset));
    assert!(
        text(&unset).contains("DATABASE_URL is not set"),
        "{}",
        text(&unset)
    );
}

#[tokio::test]
async fn metrics_report_how_far_the_most_overdue_schedule_lags() {
    let app = crate::api::App::new().await;
    let input = schedules::schedule("nightly", "0 3 * * *", "q", "k");
    schedules::save(&app.db.pool, &input).await;
    // No scheduler runs here: a fire two minutes overdue is two minutes of lag.
    app.db
        .exec("UPDATE schedules SET next_run_at = now() - interval '120 seconds'")
        .await;
    // The gauge is process-wide: another test's scrape may set it between ours, so
    // scrape until ours shows.
    let lag = crate::common::eventually(
        std::time::Duration::from_secs(30),
        "the schedule lag gauge",
        || async {
            // What the API's background refresher does every few seconds.
            app.state.refresh_once().await;
            let text = app.get("/metrics").await.text;
            text.lines()
                .find_map(|l| l.strip_prefix("ordinaut_schedule_lag_seconds "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| *v >= 120.0)
        },
    )
    .await;
    assert!(lag < 600.0, "{lag}");
}

/// Syscalls that create, change or remove a file by name.
const WRITE_CALLS: &[&str] = &[
    "mkdir",
    "mkdirat",
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
    "rmdir",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "truncate",
    "chmod",
    "fchmodat",
    "chown",
    "lchown",
    "fchownat",
    "mknod",
    "mknodat",
    "utimes",
    "utimensat",
    "creat",
];

/// Paths a process may write in an image with a read-only root: /tmp (a tmpfs there)
/// and the device files every process uses.
fn writable(path: &str) -> bool {
    path.starts_with("/tmp/")
        || ["/dev/null", "/dev/tty", "/dev/stdout", "/dev/stderr"].contains(&path)
        || path.starts_with("/dev/pts/")
        || path.starts_with("/proc/self/")
        || path.starts_with("/proc/thread-self/")
}

/// Every path an strace log shows a process opening for writing, creating, renaming or
/// removing, whether the call succeeded or not.
fn written_paths(log: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in log.lines() {
        // "<pid> name(args) = result"
        let call = line.split_whitespace().nth(1).unwrap_or("");
        let Some((name, args)) = call.split_once('(') else {
            continue;
        };
        let args = &line[line.find(args).unwrap_or(0)..];
        let opens = matches!(name, "open" | "openat" | "openat2");
        let intent = WRITE_CALLS.contains(&name)
            || (opens
                && ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"]
                    .iter()
                    .any(|f| args.contains(f)));
        if !intent {
            continue;
        }
        // Quoted arguments are the paths (strace prints them first).
        for (i, part) in args.split('"').enumerate() {
            if i % 2 == 1 && !writable(part) {
                out.push(format!("{name}: {part}"));
            }
        }
    }
    out
}

/// The image runs with a read-only root and a tmpfs on /tmp (compose `read_only`,
/// Kubernetes `readOnlyRootFilesystem`): api, scheduler and worker, each doing its work
/// (answering, firing a schedule, running `command` jobs), must write nothing elsewhere.
/// Run by ops/validate.sh as well as by `cargo test`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_write_nowhere_but_tmp() {
    let strace = Command::new("strace").arg("-V").output();
    assert!(
        strace.is_ok_and(|o| o.status.success()),
        "strace is needed for this test (Debian: apt-get install strace)"
    );
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("rofs-{}", uuid::Uuid::now_v7()));
    // Outside /tmp would be truer, but the test may not own any other writable place;
    // the config dir is the process's working directory and is checked like any path.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ordinaut.toml"),
        "[kinds.echo]\ntype = \"command\"\nprogram = \"cat\"\n",
    )
    .unwrap();
    let input = schedules::schedule("tick", "* * * * * *", "rofs", "echo");
    schedules::save(&db.pool, &input).await;
    let port = free_port();
    let mut children = Vec::new();
    for cmd in ["api", "scheduler", "worker"] {
        let trace = dir.join(format!("{cmd}.strace"));
        let child = Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=%file", "-o"])
            .arg(&trace)
            .arg(binary())
            .arg(cmd)
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", &db.url)
            .env("TMPDIR", "/tmp")
            .env("API_HOST", "127.0.0.1")
            .env("API_PORT", port.to_string())
            .env("WORKER_QUEUES", "rofs")
            .env("WORKER_POLL_INTERVAL", "0.2")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn strace");
        children.push((cmd, trace, child));
    }
    let http = reqwest::Client::new();
    crate::common::eventually(Duration::from_secs(60), "the api to answer", || async {
        let r = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    crate::common::eventually(
        Duration::from_secs(60),
        "scheduled command jobs to complete",
        || async {
            (db.count("job_history WHERE queue = 'rofs' AND state = 'completed'")
                .await
                >= 3)
                .then_some(())
        },
    )
    .await;
    let mut found = Vec::new();
    for (cmd, trace, mut child) in children {
        // SIGTERM to ordinaut itself (the first pid strace logged); strace exits with it.
        let log = std::fs::read_to_string(&trace).unwrap();
        let pid: i32 = log
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{cmd}: no pid in the strace log"));
        // SAFETY: kill(2) on our own grandchild.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let _ = child.wait();
        let log = std::fs::read_to_string(&trace).unwrap();
        assert!(log.contains("execve("), "{cmd}: strace recorded nothing");
        found.extend(
            written_paths(&log)
                .into_iter()
                .map(|p| format!("{cmd} {p}")),
        );
    }
    found.sort();
    found.dedup();
    assert!(
        found.is_empty(),
        "written outside /tmp:\n{}",
        found.join("\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
