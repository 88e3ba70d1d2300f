//! Real processes: the built binary is spawned, killed with SIGKILL, stopped with
//! SIGTERM, and Postgres itself is restarted underneath it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{Durability, PrivateCluster};
use common::http::{Http, free_port};
use common::jobs::{attempts, completed_at_least, jobs, wait_finished, wait_running};
use common::procs::{Proc, spawn};
use common::{TestDb, binary, eventually};
use ordinaut::db::due_work::{self, NewJob};
use ordinaut::model::JobState;
use serde_json::json;
use uuid::Uuid;

const CONFIG: &str = r#"
[kinds.nap]
type = "noop"
"#;

fn workdir() -> PathBuf {
    common::procs::workdir("crash", CONFIG)
}

async fn enqueue_naps(db: &TestDb, n: usize, sleep_ms: u64) {
    jobs("q", "nap")
        .payload(json!({ "sleep_ms": sleep_ms }))
        .enqueue_n(&db.pool, n)
        .await;
}

async fn wait_drained(db: &TestDb, n: i64, limit: Duration) {
    completed_at_least(&db.pool, n, limit).await;
}

#[tokio::test]
async fn three_worker_processes_drain_10000_jobs_exactly_once() {
    let db = TestDb::new().await;
    let dir = workdir();
    enqueue_naps(&db, 10_000, 0).await;
    let workers: Vec<Proc> = (0..3)
        .map(|_| spawn(&dir, &db.url, &["worker"], &[("WORKER_CONCURRENCY", "16")]))
        .collect();
    wait_drained(&db, 10_000, Duration::from_secs(120)).await;
    for w in &workers {
        w.signal(libc::SIGTERM);
    }
    for w in workers {
        assert_eq!(w.wait(Duration::from_secs(30)), Some(0));
    }
    assert_eq!(db.live_jobs().await, 0);
    assert_eq!(
        db.scalar_i64("SELECT count(DISTINCT id) FROM job_history WHERE state = 'completed'")
            .await,
        10_000
    );
    assert_eq!(db.ended_jobs().await, 10_000);
    // Exactly once: one attempt per job, all completed.
    assert_eq!(db.all_attempts().await, 10_000);
    assert_eq!(
        db.scalar_i64("SELECT count(DISTINCT worker_id) FROM all_attempts")
            .await,
        3,
        "all three took part"
    );
    assert_eq!(db.workers().await, 0);
}

#[tokio::test]
async fn killed_worker_jobs_are_handed_back_within_seconds_and_complete_elsewhere() {
    let db = TestDb::new().await;
    let dir = workdir();
    enqueue_naps(&db, 5, 3000).await;
    let victim = spawn(&dir, &db.url, &["worker"], &[("WORKER_CONCURRENCY", "5")]);
    wait_running(&db.pool, 5, Duration::from_secs(20)).await;
    victim.signal(libc::SIGKILL);
    victim.wait(Duration::from_secs(10));
    let killed_at = Instant::now();
    let _rescuer = spawn(&dir, &db.url, &["worker"], &[("WORKER_CONCURRENCY", "5")]);
    // Leases are 60 s; the rescue must come from the advisory lock, not expiry.
    eventually(Duration::from_secs(10), "jobs handed back", || async {
        (db.count("all_attempts WHERE outcome = 'lost' AND error LIKE 'worker died%'")
            .await
            == 5)
            .then_some(())
    })
    .await;
    assert!(killed_at.elapsed() < Duration::from_secs(10));
    wait_drained(&db, 5, Duration::from_secs(30)).await;
    db.assert_rows("job_history WHERE attempt = 2", 5).await;
    assert_eq!(db.workers().await, 1, "the dead worker's row is gone");
}

/// One nap job of `nap_ms` running on a worker that waits `grace` seconds for running
/// jobs when told to stop: the database, the work dir and that worker.
async fn nap_running_on_worker_with_grace(nap_ms: u64, grace: &str) -> (TestDb, PathBuf, Proc) {
    let db = TestDb::new().await;
    let dir = workdir();
    enqueue_naps(&db, 1, nap_ms).await;
    let worker = spawn(
        &dir,
        &db.url,
        &["worker"],
        &[("WORKER_SHUTDOWN_GRACE", grace)],
    );
    wait_running(&db.pool, 1, Duration::from_secs(20)).await;
    (db, dir, worker)
}

#[tokio::test]
async fn sigterm_lets_the_running_job_finish_within_the_grace_period() {
    let (db, _dir, w) = nap_running_on_worker_with_grace(1500, "20").await;
    w.terminate("worker", Duration::from_secs(20));
    assert_eq!(db.ended_in("completed").await, 1);
    assert_eq!(db.workers().await, 0);
}

#[tokio::test]
async fn sigterm_past_the_grace_hands_the_job_to_another_worker_at_once() {
    let (db, dir, first) = nap_running_on_worker_with_grace(4000, "0.5").await;
    let second = spawn(&dir, &db.url, &["worker"], &[]);
    first.terminate("worker", Duration::from_secs(20));
    wait_drained(&db, 1, Duration::from_secs(20)).await;
    let outcomes: Vec<String> =
        sqlx::query_scalar("SELECT outcome FROM all_attempts ORDER BY finished_at")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(outcomes, vec!["interrupted", "completed"]);
    assert_eq!(
        db.scalar_i64("SELECT count(DISTINCT worker_id) FROM all_attempts")
            .await,
        2
    );
    drop(second);
}

/// Kinds for the command-environment and escaped-descendant tests.
const COMMAND_KINDS: &str = r#"
[kinds.show_env]
type = "command"
program = "env"
env = { DECLARED = "from-the-kind" }

[kinds.show_all_env]
type = "command"
program = "env"
inherit_env = true

# Leaves a daemon holding stdout/stderr open, then exits 0 (see DAEMONIZE).
[kinds.daemonize]
type = "command"
program = "sh"
args = ["daemonize.sh"]

[kinds.daemonize_with_timeout]
type = "command"
program = "sh"
args = ["daemonize.sh"]
timeout = "60s"

# Writes its pid to <job id>.pid, then sleeps (for the worker killed under it).
[kinds.sleeper]
type = "command"
program = "sh"
args = ["-c", "echo $$ > \"$ORDINAUT_JOB_ID.pid.tmp\" && mv \"$ORDINAUT_JOB_ID.pid.tmp\" \"$ORDINAUT_JOB_ID.pid\" && exec sleep 300"]
"#;

/// Starts a daemon in its own session (so outside the job's process group) that holds
/// the job's stdout and stderr and writes to stdout every 0.2 s; once nobody reads
/// that pipe any more its write fails and it leaves `<job id>.closed` and exits.
/// Prints "done" and exits 0 at once.
const DAEMONIZE: &str = r#"
setsid sh -c ': > "$1.started"; trap "" PIPE; while sleep 0.2; do echo tick || { : > "$1.closed"; exit 0; }; done' daemon "$ORDINAUT_JOB_ID" &
echo $! > "$ORDINAUT_JOB_ID.pid"
# Exit only once the daemon has left the process group, or the group kill gets it.
while [ ! -e "$ORDINAUT_JOB_ID.started" ]; do sleep 0.05; done
echo done
"#;

/// A work directory whose ordinaut.toml declares [`COMMAND_KINDS`].
fn command_workdir() -> PathBuf {
    let dir = workdir();
    std::fs::write(dir.join("ordinaut.toml"), COMMAND_KINDS).unwrap();
    std::fs::write(dir.join("daemonize.sh"), DAEMONIZE).unwrap();
    dir
}

/// The scene of a command-kind test: a database holding one job of each of `kinds` (their
/// ids, in order) and a workdir whose configuration declares those kinds.
async fn command_jobs<const N: usize>(kinds: [&str; N]) -> (TestDb, PathBuf, [Uuid; N]) {
    let db = TestDb::new().await;
    let mut ids = [Uuid::nil(); N];
    for (id, kind) in ids.iter_mut().zip(kinds) {
        *id = jobs("q", kind).enqueue(&db.pool).await;
    }
    (db, command_workdir(), ids)
}

/// Waits for job `id` to end; returns (state, last_error, its attempts' logs).
async fn finished(db: &TestDb, id: Uuid, limit: Duration) -> (JobState, Option<String>, String) {
    let job = wait_finished(&db.pool, id, limit).await;
    let logs: Vec<String> = attempts(&db.pool, id)
        .await
        .into_iter()
        .filter_map(|a| a.log)
        .collect();
    (job.state, job.last_error, logs.join("\n"))
}

#[tokio::test]
async fn command_environment_is_clean_unless_the_kind_inherits_it() {
    let (db, dir, [clean, inherited]) = command_jobs(["show_env", "show_all_env"]).await;
    let worker = spawn(
        &dir,
        &db.url,
        &["worker"],
        &[
            ("API_TOKENS", "secret-token-0123456789"),
            ("HOME", "/home/ordinaut-test"),
            ("LANG", "C.UTF-8"),
            ("LC_TIME", "C"),
            ("TZ", "Europe/Paris"),
            ("SOME_OTHER_SETTING", "worker-only"),
        ],
    );
    let (state, _, env) = finished(&db, clean, Duration::from_secs(30)).await;
    assert_eq!(state, JobState::Completed, "{env}");
    for wanted in [
        "PATH=",
        "HOME=/home/ordinaut-test",
        "LANG=C.UTF-8",
        "LC_TIME=C",
        "TZ=Europe/Paris",
        "DECLARED=from-the-kind",
        &format!("ORDINAUT_JOB_ID={clean}"),
        "ORDINAUT_ATTEMPT=1",
        "ORDINAUT_QUEUE=q",
        "ORDINAUT_KIND=show_env",
        "ORDINAUT_WORKER_ID=",
    ] {
        assert!(
            env.lines().any(|l| l.starts_with(wanted)),
            "{wanted} missing from:\n{env}"
        );
    }
    for secret in [
        "DATABASE_URL",
        "API_TOKENS",
        "SOME_OTHER_SETTING",
        "WORKER_QUEUES",
    ] {
        assert!(
            !env.contains(secret),
            "{secret} leaked to the command:\n{env}"
        );
    }
    let (state, _, env) = finished(&db, inherited, Duration::from_secs(30)).await;
    assert_eq!(state, JobState::Completed, "{env}");
    for wanted in [
        &format!("DATABASE_URL={}", db.url),
        "API_TOKENS=secret-token-0123456789",
        "SOME_OTHER_SETTING=worker-only",
        &format!("ORDINAUT_JOB_ID={inherited}"),
    ] {
        assert!(
            env.lines().any(|l| l == wanted),
            "{wanted} missing with inherit_env:\n{env}"
        );
    }
    drop(worker);
}

/// Kills, when dropped (so also when the test fails), the daemons `daemonize` jobs left
/// behind (each wrote its pid to `<job id>.pid`).
struct Escaped<'a>(&'a Path, Vec<Uuid>);

impl Drop for Escaped<'_> {
    fn drop(&mut self) {
        for id in &self.1 {
            let pid = std::fs::read_to_string(self.0.join(format!("{id}.pid"))).unwrap_or_default();
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: kill(2) on the test's own escaped `sleep`.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

#[tokio::test]
async fn command_that_leaves_a_daemon_holding_its_pipes_completes_once() {
    let (db, dir, [plain, timed]) = command_jobs(["daemonize", "daemonize_with_timeout"]).await;
    let _daemons = Escaped(&dir, vec![plain, timed]);
    let worker = spawn(&dir, &db.url, &["worker"], &[]);
    // The daemon never closes the pipes and the timeout is 60 s: finishing well before
    // means the worker stopped waiting for the pipes once the shell exited.
    let results = [
        finished(&db, plain, Duration::from_secs(30)).await,
        finished(&db, timed, Duration::from_secs(30)).await,
    ];
    // And it let go of them: nothing of the job still reads what the daemon writes.
    for id in [plain, timed] {
        let closed = dir.join(format!("{id}.closed"));
        eventually(
            Duration::from_secs(20),
            "pipe closed by the worker",
            || async { closed.exists().then_some(()) },
        )
        .await;
    }
    for (state, error, log) in results {
        assert_eq!(state, JobState::Completed, "error {error:?}, log {log}");
        assert_eq!(error, None);
        assert!(log.contains("done"), "output kept: {log}");
    }
    assert_eq!(db.all_attempts().await, 2, "each ran once");
    db.assert_rows("all_attempts WHERE outcome <> 'completed'", 0)
        .await;
    worker.terminate("worker", Duration::from_secs(20));
}

/// Whether process `pid` still runs (a zombie, exited but not yet reaped, does not).
fn running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which ends with the last ')'.
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
}

/// A worker killed with SIGKILL runs no destructor: its program must still die (the
/// parent-death signal), or the job's next run would overlap it. Counted from outside.
#[tokio::test]
async fn command_dies_with_its_worker_killed_with_sigkill() {
    let (db, dir, [id]) = command_jobs(["sleeper"]).await;
    let _left = Escaped(&dir, vec![id]);
    let worker = spawn(&dir, &db.url, &["worker"], &[]);
    let pid_file = dir.join(format!("{id}.pid"));
    let pid: i32 = eventually(Duration::from_secs(20), "the program's pid", || async {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    })
    .await;
    assert!(running(pid), "the program runs before the kill");
    worker.signal(libc::SIGKILL);
    worker.wait(Duration::from_secs(10));
    eventually(Duration::from_secs(5), "the program gone", || async {
        (!running(pid)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn postgres_restart_while_draining_loses_and_repeats_nothing() {
    let cluster = PrivateCluster::start("restart-pg", Durability::Durable).await;
    let pg = cluster.pg.clone();
    let url = cluster.url();
    let db_cfg = cluster.db_config(4);
    let pool = cluster.migrated_pool(4).await;
    jobs("q", "nap")
        .payload(json!({ "sleep_ms": 20 }))
        .enqueue_n(&pool, 3000)
        .await;
    pool.close().await;
    let dir = workdir();
    let workers: Vec<Proc> = (0..2)
        .map(|_| spawn(&dir, &url, &["worker"], &[("WORKER_CONCURRENCY", "10")]))
        .collect();
    eventually(Duration::from_secs(30), "draining under way", || {
        let url = url.clone();
        async move {
            let pool = ordinaut::db::DbConfig {
                url,
                schema: "public".into(),
                max_connections: 1,
                hot_path: false,
            }
            .connect()
            .await
            .ok()?;
            let done: i64 = sqlx::query_scalar("SELECT count(*) FROM job_history")
                .fetch_one(&pool)
                .await
                .ok()?;
            pool.close().await;
            (done > 0).then_some(())
        }
    })
    .await;
    let restarted = pg.clone();
    tokio::task::spawn_blocking(move || restarted.restart())
        .await
        .unwrap()
        .expect("pg_ctl restart");
    let pool = db_cfg.connect().await.unwrap();
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM due_work")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(before > 0, "the restart happened mid-drain");
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let started = Instant::now();
    loop {
        if count("SELECT count(*) FROM job_history").await >= 3000 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not drained after restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for w in &workers {
        w.signal(libc::SIGTERM);
    }
    for w in workers {
        assert_eq!(w.wait(Duration::from_secs(40)), Some(0));
    }
    assert_eq!(count("SELECT count(*) FROM due_work").await, 0);
    assert_eq!(
        count("SELECT count(DISTINCT id) FROM job_history WHERE state = 'completed'").await,
        3000
    );
    assert_eq!(
        count("SELECT count(*) FROM job_history").await,
        3000,
        "no job finished twice"
    );
    assert_eq!(
        count("SELECT count(*) FROM all_attempts WHERE outcome = 'completed'").await,
        3000
    );
    pool.close().await;
    drop(pg);
    let _ = tokio::task::spawn_blocking(move || drop(cluster)).await;
}

#[tokio::test]
async fn processes_starting_at_once_on_an_empty_database_all_migrate() {
    let db = TestDb::new().await;
    // An empty schema in the same database: nothing migrated yet.
    let dir = workdir();
    let procs: Vec<Proc> = (0..4)
        .map(|_| spawn(&dir, &db.url, &["migrate"], &[("ORDINAUT_SCHEMA", "fresh")]))
        .collect();
    for p in procs {
        assert_eq!(p.wait(Duration::from_secs(60)), Some(0));
    }
    assert_eq!(
        db.count("fresh._sqlx_migrations WHERE success").await,
        ordinaut::db::MIGRATOR.iter().count() as i64
    );
}

#[tokio::test]
async fn bench_scenarios_complete_with_every_job_run_once() {
    let db = TestDb::new().await;
    for args in [
        vec!["bench", "burn-down", "--jobs", "2000", "--json"],
        vec![
            "bench",
            "burn-down",
            "--jobs",
            "500",
            "--history",
            "3000",
            "--json",
        ],
        vec![
            "bench",
            "burn-down",
            "--jobs",
            "2000",
            "--workers",
            "2",
            "--concurrency",
            "8",
            "--json",
        ],
        vec![
            "bench", "latency", "--count", "20", "--rate", "100", "--json",
        ],
        vec!["bench", "command", "--jobs", "50", "--json"],
    ] {
        let result = bench_json(&db, &args);
        let expected: u64 = args[args
            .iter()
            .position(|a| *a == "--jobs" || *a == "--count")
            .unwrap()
            + 1]
        .parse()
        .unwrap();
        assert_eq!(result["jobs"], expected, "{args:?}");
    }
}

/// Runs `ordinaut bench ...` with `args`, asserts it succeeded, returns its JSON result.
fn bench_json(db: &TestDb, args: &[&str]) -> serde_json::Value {
    let out = Command::new(binary())
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("LOG_LEVEL", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bench prints JSON")
}

#[tokio::test]
async fn one_ctrl_c_stops_the_worker_gracefully() {
    let db = TestDb::new().await;
    let dir = workdir();
    enqueue_naps(&db, 1, 1000).await;
    let w = spawn(&dir, &db.url, &["worker"], &[]);
    wait_running(&db.pool, 1, Duration::from_secs(20)).await;
    w.signal(libc::SIGINT);
    assert_eq!(
        w.wait(Duration::from_secs(20)),
        Some(0),
        "a single SIGINT is a graceful stop, not the forced exit"
    );
    assert_eq!(db.ended_in("completed").await, 1);
}

#[tokio::test]
async fn bench_sustained_and_bloat_run_their_load_and_report_phases_and_dead_tuples() {
    let db = TestDb::new().await;
    for args in [
        vec![
            "bench",
            "sustained",
            "--seconds",
            "3",
            "--target-rate",
            "200",
            "--json",
        ],
        vec![
            "bench",
            "bloat",
            "--seconds",
            "3",
            "--target-rate",
            "200",
            "--history",
            "2000",
            "--json",
        ],
    ] {
        let result = bench_json(&db, &args);
        assert!(result["jobs"].as_u64().unwrap() >= 500, "{result}");
        assert!(
            result["phases"].as_array().is_some_and(|p| !p.is_empty()),
            "{result}"
        );
        assert!(result["dead_tuples"].is_number());
    }
}

#[tokio::test]
async fn worker_process_survives_commands_printing_nul_bytes() {
    let db = TestDb::new().await;
    let dir = workdir();
    std::fs::write(
        dir.join("ordinaut.toml"),
        format!("{CONFIG}\n[kinds.nul]\ntype = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", \"printf 'a\\\\0b'\"]\n"),
    )
    .unwrap();
    let nul: Vec<NewJob> = (0..2).map(|_| NewJob::new("q", "nul", json!({}))).collect();
    due_work::enqueue_many(&db.pool, &nul, 4).await.unwrap();
    let w = spawn(&dir, &db.url, &["worker"], &[("WORKER_CONCURRENCY", "4")]);
    // Before outcomes were sanitized, these two wedged the completer for good.
    wait_drained(&db, 2, Duration::from_secs(30)).await;
    enqueue_naps(&db, 20, 0).await;
    wait_drained(&db, 22, Duration::from_secs(30)).await;
    w.terminate("worker", Duration::from_secs(30));
    db.assert_rows(
        "job_history WHERE kind = 'nul' AND log LIKE '%a' || chr(65533) || 'b%'",
        2,
    )
    .await;
    assert_eq!(db.live_jobs().await, 0);
}

/// A work dir whose ordinaut.toml is `config` (crash.rs's [`workdir`] writes [`CONFIG`]).
fn workdir_with(config: &str) -> PathBuf {
    let dir = workdir();
    std::fs::write(dir.join("ordinaut.toml"), config).unwrap();
    dir
}

#[tokio::test]
async fn restarting_a_worker_does_not_refill_a_declared_rate_limit() {
    let db = TestDb::new().await;
    let dir = workdir_with(&format!("{CONFIG}\n[queues.q]\nrate_limit = \"1/h\"\n"));
    enqueue_naps(&db, 5, 0).await;
    let completed = "SELECT count(*) FROM job_history WHERE state = 'completed'";
    let first = spawn(&dir, &db.url, &["worker"], &[]);
    wait_drained(&db, 1, Duration::from_secs(30)).await;
    first.terminate("worker", Duration::from_secs(20));
    for restart in 0..2 {
        let started: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        let w = spawn(&dir, &db.url, &["worker"], &[]);
        // Every claim of a limited queue writes the bucket back, even an empty one: once
        // it has been written after this start, the worker has had its chance to claim.
        eventually(
            Duration::from_secs(30),
            "the restarted worker to try a claim",
            || async {
                let at: Option<chrono::DateTime<chrono::Utc>> =
                    sqlx::query_scalar("SELECT rate_updated_at FROM queues WHERE name = 'q'")
                        .fetch_one(&db.pool)
                        .await
                        .unwrap();
                at.is_some_and(|at| at > started).then_some(())
            },
        )
        .await;
        w.signal(libc::SIGTERM);
        assert_eq!(
            w.wait(Duration::from_secs(20)),
            Some(0),
            "restart {restart}"
        );
        assert_eq!(
            db.all_attempts().await,
            1,
            "restart {restart} claimed another job from a 1/h bucket"
        );
    }
    assert_eq!(db.scalar_i64(completed).await, 1);
}

#[tokio::test]
async fn the_api_uses_at_most_api_db_pool_size_connections() {
    let db = TestDb::new().await;
    let dir = workdir();
    let port = free_port();
    let _api = spawn(
        &dir,
        &db.url,
        &["api"],
        &[
            ("API_PORT", &port.to_string()),
            ("API_HOST", "127.0.0.1"),
            ("API_DB_POOL_SIZE", "3"),
        ],
    );
    let api = Http::local(port);
    api.wait_healthy(Duration::from_secs(30)).await;
    let (http, base) = (&api.client, &api.base);
    // Every request for schedules waits on this lock while holding a connection.
    let blocker = db.hold("LOCK schedules IN ACCESS EXCLUSIVE MODE").await;
    let requests: Vec<_> = (0..12)
        .map(|_| {
            let (http, url) = (http.clone(), format!("{base}/v1/schedules"));
            tokio::spawn(async move { http.get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                   AND application_name = 'ordinaut' AND wait_event_type = 'Lock'";
    let first = eventually(
        Duration::from_secs(20),
        "requests to reach the database",
        || async {
            let n = db.scalar_i64(waiting).await;
            (n > 0).then_some(n)
        },
    )
    .await;
    // Sample while the twelve requests compete for connections.
    let mut most = first;
    for _ in 0..20 {
        most = most.max(db.scalar_i64(waiting).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    blocker.commit().await.unwrap();
    assert!(most <= 3, "{most} connections of a pool of 3 were waiting");
    for r in requests {
        // Served once the lock is gone, or refused after the pool's acquire timeout:
        // either way an answer, never a hang.
        let _ = r.await.unwrap();
    }
    drop(api);
}
