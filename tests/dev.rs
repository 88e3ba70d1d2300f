//! A new user on a clean machine. `ordinaut dev`, the README's first command: no
//! DATABASE_URL, a fresh directory, a curl-style enqueue, Ctrl-C, and a second start on
//! the same data; and the same from root's private home directory. Then `.env.example`
//! loaded the three ways operators load it (compose, systemd `EnvironmentFile=`, a shell's
//! `set -a; .`) starting the api, scheduler and worker.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::http::{Http, free_port};
use common::procs::{self, Launch, Proc};
use common::{TestDb, binary, eventually, schedules};
use ordinaut::db::due_work::{self, NewJob};
use serde_json::json;

fn start_dev(dir: &Path, log: &str) -> Proc {
    procs::ordinaut(dir, &["dev"])
        .clean_env()
        .env("API_PORT", "0")
        .env("API_HOST", "127.0.0.1")
        .log_name(log)
        .start()
}

async fn api_port(dir: &Path, log: &str) -> u16 {
    eventually(
        Duration::from_secs(90),
        "dev to print its API address",
        || async {
            let text = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
            let at = text.find("API on http://127.0.0.1:")? + "API on http://127.0.0.1:".len();
            text[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        },
    )
    .await
}

#[tokio::test]
async fn dev_starts_everything_on_its_own_postgres_and_keeps_data_across_restarts() {
    let dir = common::cluster_dir(&format!("dev-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let dev = start_dev(&dir, "first.log");
    let port = api_port(&dir, "first.log").await;
    let api = Http::local(port);
    let job = json!({"queue": "default", "kind": "echo", "payload": {"hello": "world"}});
    let (id, done) = api.enqueue_and_wait(&job).await;
    assert_eq!(done["state"], "completed", "{done}");
    let attempts = api.get_json(&format!("/v1/jobs/{id}/attempts")).await;
    assert!(
        attempts.to_string().contains(r#"{\"hello\":\"world\"}"#),
        "the example echo kind printed the payload: {attempts}"
    );
    // One process, one /metrics: the worker's counters show on the API's endpoint.
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = api.get_text("/metrics").await;
        if metrics.contains(
            r#"ordinaut_jobs_finished_total{queue="default",kind="echo",outcome="completed"} 1"#,
        ) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        metrics.contains(
            r#"ordinaut_jobs_finished_total{queue="default",kind="echo",outcome="completed"} 1"#
        ) && metrics.contains("ordinaut_worker_slots_total"),
        "{metrics}"
    );

    // The dashboard it announced answers (open: no token is configured).
    let log = std::fs::read_to_string(dir.join("first.log")).unwrap_or_default();
    assert!(
        log.contains(&format!("dashboard on http://127.0.0.1:{port}/ui")),
        "{log}"
    );
    let ui = api.client.get(format!("{}/ui", api.base)).send();
    let ui = ui.await.unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("workers alive"));

    // Ctrl-C: everything stops, Postgres included.
    dev.signal(libc::SIGINT);
    let code = tokio::task::spawn_blocking(move || dev.wait(Duration::from_secs(120)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    assert!(
        !dir.join(".ordinaut/pg/data/postmaster.pid").exists(),
        "postgres stopped"
    );

    // A second start reuses the data.
    let _again = start_dev(&dir, "second.log");
    let port = api_port(&dir, "second.log").await;
    let job = Http::local(port).get_json(&format!("/v1/jobs/{id}")).await;
    assert_eq!(job["state"], "completed");
    drop(_again);
    // SIGKILLed above: stop its Postgres by hand before removing the directory.
    if let Ok(pg) =
        ordinaut::pg_local::LocalPg::start(&dir.join(".ordinaut/pg"), &Default::default())
    {
        let _ = pg.stop();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The statements of the backends of `db`'s database that are LISTENing (a listener
/// runs nothing after its LISTEN, so it is the backend's last statement).
async fn listen_sessions(db: &TestDb) -> Vec<String> {
    db.column(
        "SELECT query FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN %'",
    )
    .await
}

#[tokio::test]
async fn dev_listens_for_its_api_and_worker_on_one_connection() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("dev-listen-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let _dev = procs::ordinaut(&dir, &["dev"])
        .clean_env()
        .env("DATABASE_URL", &db.url)
        .env("API_PORT", "0")
        .env("API_HOST", "127.0.0.1")
        .log_name("dev.log")
        .start();
    let port = api_port(&dir, "dev.log").await;
    // A job run and waited for: the worker claims, the API follows events.
    let job = json!({"queue": "default", "kind": "noop", "payload": {}});
    let (_, done) = Http::local(port).enqueue_and_wait(&job).await;
    assert_eq!(done["state"], "completed", "{done}");
    // Until every channel the process needs is heard: events (API), enqueues and
    // cancels (worker).
    let sessions = eventually(
        Duration::from_secs(30),
        "LISTEN on the events, enqueue and cancel channels",
        || async {
            let sessions = listen_sessions(&db).await;
            let all = sessions.join(" ");
            ["ordinaut_events", "ordinaut_enqueued", "ordinaut_cancel"]
                .iter()
                .all(|c| all.contains(&format!("\"{c}\"")))
                .then_some(sessions)
        },
    )
    .await;
    assert_eq!(
        sessions.len(),
        1,
        "one LISTEN connection per process: {sessions:?}"
    );
    drop(_dev);
    let _ = std::fs::remove_dir_all(&dir);
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Where a fresh VM or container puts a clone: root's home, mode 0700. As root the local
/// cluster runs as `nobody`, which cannot enter it; dev must put the data elsewhere, say
/// where, and work.
#[tokio::test]
async fn dev_as_root_works_from_a_private_0700_directory() {
    let home = std::env::temp_dir().join(format!("private-home-{}", uuid::Uuid::now_v7()));
    let repo = home.join("ordinaut");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let dev = start_dev(&repo, "dev.log");
    let port = api_port(&repo, "dev.log").await;
    let job = json!({"queue": "default", "kind": "echo", "payload": {"from": "root"}});
    let (_, done) = Http::local(port).enqueue_and_wait(&job).await;
    assert_eq!(done["state"], "completed", "{done}");
    let log = std::fs::read_to_string(repo.join("dev.log")).unwrap();
    let requested = repo.canonicalize().unwrap().join(".ordinaut/pg");
    let data_home = if is_root() {
        let moved = ordinaut::pg_local::reachable_base(&requested).unwrap();
        assert!(
            log.contains("local postgres data moved") && log.contains(&*moved.to_string_lossy()),
            "dev names where the data went ({}):\n{log}",
            moved.display()
        );
        assert!(
            moved.join("data/PG_VERSION").exists(),
            "cluster under {}",
            moved.display()
        );
        assert!(
            !requested.join("data").exists(),
            "nothing initialised in the private dir"
        );
        moved
    } else {
        // Not root: the cluster runs as us and stays where it was asked to be.
        assert!(!log.contains("local postgres data moved"), "{log}");
        requested
    };
    dev.signal(libc::SIGINT);
    let code = tokio::task::spawn_blocking(move || dev.wait(Duration::from_secs(120)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        !data_home.join("data/postmaster.pid").exists(),
        "postgres stopped"
    );
    let _ = std::fs::remove_dir_all(&data_home);
    let _ = std::fs::remove_dir_all(&home);
}

/// How `.env.example` is turned into an environment.
#[derive(Debug, Clone, Copy)]
enum Loader {
    /// Docker Compose's `env_file:` / `--env-file` (compose-go dotenv rules).
    Compose,
    /// systemd's `EnvironmentFile=` (systemd.exec(5)).
    Systemd,
    /// `set -a; . ./.env; set +a` in bash, for real.
    Shell,
}

fn env_example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".env.example")
}

/// compose-go's dotenv: `#` lines and blank lines skipped, optional `export `, quotes
/// stripped, and for unquoted values a ` #` starts a comment; surrounding blanks trimmed.
fn parse_compose(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = if let Some(rest) = value.strip_prefix('\'') {
            rest.split('\'').next().unwrap_or("").to_owned()
        } else if let Some(rest) = value.strip_prefix('"') {
            rest.split('"').next().unwrap_or("").replace("\\n", "\n")
        } else {
            let cut = value.find(" #").unwrap_or(value.len());
            value[..cut].trim().to_owned()
        };
        out.insert(key.trim().to_owned(), value);
    }
    out
}

/// systemd's `EnvironmentFile=`: lines starting with `#` or `;` and lines without `=` are
/// ignored; leading and trailing blanks dropped; a `#` later in the line is part of the
/// value; quotes are stripped, and an unquoted backslash keeps the next character.
fn parse_systemd(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let raw = raw.trim_matches([' ', '\t', '\r']);
        let value = if raw.len() >= 2 && raw.starts_with('\'') && raw.ends_with('\'') {
            raw[1..raw.len() - 1].to_owned()
        } else if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') {
            raw[1..raw.len() - 1]
                .replace("\\\"", "\"")
                .replace("\\\\", "\\")
        } else {
            let mut v = String::new();
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    v.extend(chars.next());
                } else {
                    v.push(c);
                }
            }
            v
        };
        out.insert(key.trim_end().to_owned(), value);
    }
    out
}

/// What bash exports after `set -a; . FILE`, limited to the keys the file names.
fn parse_shell(path: &Path, keys: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let out = Command::new("bash")
        .args([
            "-c",
            "set -a; . \"$0\"; set +a; env -0",
            &path.to_string_lossy(),
        ])
        .env_clear()
        .output()
        .expect("run bash");
    procs::assert_success(&out);
    String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| keys.contains_key(*k))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Starts `ordinaut <cmd>` with .env.example loaded by `loader`, then the two settings an
/// operator must change for this machine: DATABASE_URL (the file's names the compose
/// host `postgres`) and API_PORT (8080 may be taken here).
fn spawn_with_env_file(loader: Loader, dir: &Path, cmd: &str, url: &str, port: u16) -> Proc {
    let file = env_example();
    let mut command = match loader {
        Loader::Shell => {
            let mut c = Command::new("bash");
            c.args([
                "-c",
                "set -a; . \"$1\"; DATABASE_URL=$OVERRIDE_DATABASE_URL; API_PORT=$OVERRIDE_API_PORT; set +a; exec \"$2\" \"$3\"",
                "sh",
            ])
            .arg(&file)
            .arg(binary())
            .arg(cmd)
            .env_clear()
            .env("OVERRIDE_DATABASE_URL", url)
            .env("OVERRIDE_API_PORT", port.to_string());
            c
        }
        Loader::Compose | Loader::Systemd => {
            let text = std::fs::read_to_string(&file).unwrap();
            let vars = match loader {
                Loader::Compose => parse_compose(&text),
                _ => parse_systemd(&text),
            };
            let mut c = Command::new(binary());
            c.arg(cmd).env_clear().envs(vars);
            c.env("DATABASE_URL", url).env("API_PORT", port.to_string());
            c
        }
    };
    command.env("PATH", std::env::var_os("PATH").unwrap_or_default());
    Launch::command(dir, command)
        .log_name(&format!("{cmd}-{loader:?}.log"))
        .start()
}

/// The api answers /ready, the scheduler fires a per-second schedule and the worker runs
/// a job: each process started from nothing but the env file (and ./ordinaut.toml).
async fn env_file_starts_every_process(loader: Loader) {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("envfile-{loader:?}-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    // ORDINAUT_CONFIG= in the file means "unset": ./ordinaut.toml is read.
    std::fs::write(dir.join("ordinaut.toml"), "[kinds.nap]\ntype = \"noop\"\n").unwrap();
    let port = free_port();
    let input = schedules::schedule("every-second", "* * * * * *", "ticks", "nap");
    schedules::save(&db.pool, &input).await;
    due_work::enqueue_many(&db.pool, &[NewJob::new("default", "nap", json!({}))], 4)
        .await
        .unwrap();

    let _procs: Vec<Proc> = ["api", "scheduler", "worker"]
        .into_iter()
        .map(|cmd| spawn_with_env_file(loader, &dir, cmd, &db.url, port))
        .collect();
    let logs = || {
        ["api", "scheduler", "worker"]
            .iter()
            .map(|c| {
                let log = std::fs::read_to_string(dir.join(format!("{c}-{loader:?}.log")));
                format!("--- {c}:\n{}", log.unwrap_or_default())
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let client = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{port}/ready");
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        eventually(Duration::from_secs(60), "the api to be ready", || async {
            let r = client.get(&ready).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        eventually(Duration::from_secs(60), "the scheduler to fire", || async {
            (db.count("due_work WHERE schedule_id IS NOT NULL").await
                + db.count("job_history WHERE schedule_id IS NOT NULL").await
                > 0)
            .then_some(())
        })
        .await;
        eventually(
            Duration::from_secs(60),
            "the worker to run the job",
            || async {
                (db.count("job_history WHERE queue = 'default' AND state = 'completed'")
                    .await
                    == 1)
                    .then_some(())
            },
        )
        .await;
    })
    .await;
    assert!(
        waited.is_ok(),
        "{loader:?}: processes did not start:\n{}",
        logs()
    );
    drop(_procs);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn env_example_reads_the_same_under_compose_systemd_and_a_shell() {
    let text = std::fs::read_to_string(env_example()).unwrap();
    let compose = parse_compose(&text);
    let systemd = parse_systemd(&text);
    let shell = parse_shell(&env_example(), &compose);
    assert_eq!(
        compose, systemd,
        "compose and systemd read .env.example differently"
    );
    assert_eq!(
        compose, shell,
        "compose and a shell read .env.example differently"
    );
    // Every variable Ordinaut reads is in the file.
    for (env, _) in ordinaut::config::ENV_KEYS {
        assert!(compose.contains_key(*env), ".env.example lacks {env}");
    }
    assert!(compose.contains_key("ORDINAUT_CONFIG"));
}

#[tokio::test]
async fn env_example_loaded_as_compose_env_file_starts_api_scheduler_and_worker() {
    env_file_starts_every_process(Loader::Compose).await;
}

#[tokio::test]
async fn env_example_loaded_as_systemd_environment_file_starts_api_scheduler_and_worker() {
    env_file_starts_every_process(Loader::Systemd).await;
}

#[tokio::test]
async fn env_example_sourced_with_set_a_starts_api_scheduler_and_worker() {
    env_file_starts_every_process(Loader::Shell).await;
}
