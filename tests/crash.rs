//! Real processes: the built binary is spawned, killed with SIGKILL, stopped with
//! SIGTERM, and Postgres itself is restarted underneath it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestDb, binary, eventually};
use ordinaut::db::due_work::{self, NewJob};
use ordinaut::pg_local::{LocalPg, StartOptions};
use serde_json::json;
use uuid::Uuid;

const CONFIG: &str = r#"
[kinds.nap]
type = "noop"
"#;

/// A spawned `ordinaut` process, killed if the test fails before stopping it.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits for exit; returns the status code.
    fn wait(mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if start.elapsed() > limit {
                panic!(
                    "process did not exit within {limit:?}; log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workdir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("crash-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ordinaut.toml"), CONFIG).unwrap();
    dir
}

fn spawn(dir: &Path, url: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let log = dir.join(format!("{}.log", Uuid::now_v7()));
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", url)
        .env("WORKER_QUEUES", "q")
        .env("WORKER_POLL_INTERVAL", "0.2")
        .env("LOG_LEVEL", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc {
        child: cmd.spawn().expect("spawn ordinaut"),
        log,
    }
}

async fn enqueue_naps(db: &TestDb, n: usize, sleep_ms: u64) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let jobs: Vec<NewJob> = chunk
            .iter()
            .map(|_| NewJob::new("q", "nap", json!({"sleep_ms": sleep_ms})))
            .collect();
        due_work::enqueue_many(&db.pool, &jobs, 4).await.unwrap();
    }
}

async fn wait_drained(db: &TestDb, n: i64, limit: Duration) {
    eventually(limit, "all jobs completed", || async {
        (db.scalar_i64("SELECT count(*) FROM job_history WHERE state = 'completed'")
            .await
            >= n)
            .then_some(())
    })
    .await;
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
    assert_eq!(db.scalar_i64("SELECT count(*) FROM due_work").await, 0);
    assert_eq!(
        db.scalar_i64("SELECT count(DISTINCT id) FROM job_history WHERE state = 'completed'")
            .await,
        10_000
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM job_history").await,
        10_000
    );
    // Exactly once: one attempt per job, all completed.
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM all_attempts").await,
        10_000
    );
    assert_eq!(
        db.scalar_i64("SELECT count(DISTINCT worker_id) FROM all_attempts")
            .await,
        3,
        "all three took part"
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM workers").await, 0);
}

#[tokio::test]
async fn killed_worker_jobs_are_handed_back_within_seconds_and_complete_elsewhere() {
    let db = TestDb::new().await;
    let dir = workdir();
    enqueue_naps(&db, 5, 3000).await;
    let victim = spawn(&dir, &db.url, &["worker"], &[("WORKER_CONCURRENCY", "5")]);
    eventually(Duration::from_secs(20), "five jobs running", || async {
        (db.scalar_i64("SELECT count(*) FROM due_work WHERE state = 'running'")
            .await
            == 5)
            .then_some(())
    })
    .await;
    victim.signal(libc::SIGKILL);
    victim.wait(Duration::from_secs(10));
    let killed_at = Instant::now();
    let _rescuer = spawn(&dir, &db.url, &["worker"], &[("WORKER_CONCURRENCY", "5")]);
    // Leases are 60 s; the rescue must come from the advisory lock, not expiry.
    eventually(Duration::from_secs(10), "jobs handed back", || async {
        (db.scalar_i64("SELECT count(*) FROM all_attempts WHERE outcome = 'lost' AND error LIKE 'worker died%'").await == 5)
            .then_some(())
    })
    .await;
    assert!(killed_at.elapsed() < Duration::from_secs(10));
    wait_drained(&db, 5, Duration::from_secs(30)).await;
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM job_history WHERE attempt = 2")
            .await,
        5
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM workers").await,
        1,
        "the dead worker's row is gone"
    );
}

#[tokio::test]
async fn sigterm_lets_the_running_job_finish_within_the_grace_period() {
    let db = TestDb::new().await;
    let dir = workdir();
    enqueue_naps(&db, 1, 1500).await;
    let w = spawn(
        &dir,
        &db.url,
        &["worker"],
        &[("WORKER_SHUTDOWN_GRACE", "20")],
    );
    eventually(Duration::from_secs(20), "job running", || async {
        (db.scalar_i64("SELECT count(*) FROM due_work WHERE state = 'running'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait(Duration::from_secs(20)), Some(0));
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM job_history WHERE state = 'completed'")
            .await,
        1
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM workers").await, 0);
}

#[tokio::test]
async fn sigterm_past_the_grace_hands_the_job_to_another_worker_at_once() {
    let db = TestDb::new().await;
    let dir = workdir();
    enqueue_naps(&db, 1, 4000).await;
    let first = spawn(
        &dir,
        &db.url,
        &["worker"],
        &[("WORKER_SHUTDOWN_GRACE", "0.5")],
    );
    eventually(Duration::from_secs(20), "job running", || async {
        (db.scalar_i64("SELECT count(*) FROM due_work WHERE state = 'running'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let second = spawn(&dir, &db.url, &["worker"], &[]);
    first.signal(libc::SIGTERM);
    assert_eq!(first.wait(Duration::from_secs(20)), Some(0));
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

#[tokio::test]
async fn postgres_restart_while_draining_loses_and_repeats_nothing() {
    let base_name = format!("restart-pg-{}", Uuid::now_v7());
    let base = common::cluster_dir(&base_name);
    let pg = tokio::task::spawn_blocking(move || {
        LocalPg::start(
            &base,
            &StartOptions {
                unsafe_fast: false,
                max_connections: 100,
            },
        )
    })
    .await
    .unwrap()
    .expect("private cluster");
    let url = pg.url("postgres");
    let db_cfg = ordinaut::db::DbConfig {
        url: url.clone(),
        schema: "public".into(),
        max_connections: 4,
        hot_path: false,
    };
    ordinaut::db::migrate(&db_cfg).await.unwrap();
    let pool = db_cfg.connect().await.unwrap();
    let jobs: Vec<NewJob> = (0..3000)
        .map(|_| NewJob::new("q", "nap", json!({"sleep_ms": 20})))
        .collect();
    due_work::enqueue_many(&pool, &jobs, 4).await.unwrap();
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
    let _ = tokio::task::spawn_blocking(move || pg.stop()).await;
    let _ = std::fs::remove_dir_all(common::cluster_dir(&base_name));
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
        db.scalar_i64("SELECT count(*) FROM fresh._sqlx_migrations WHERE success")
            .await,
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
        let out = Command::new(binary())
            .args(&args)
            .env("DATABASE_URL", &db.url)
            .env("LOG_LEVEL", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let result: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("bench prints JSON");
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

#[tokio::test]
async fn one_ctrl_c_stops_the_worker_gracefully() {
    let db = TestDb::new().await;
    let dir = workdir();
    enqueue_naps(&db, 1, 1000).await;
    let w = spawn(&dir, &db.url, &["worker"], &[]);
    eventually(Duration::from_secs(20), "job running", || async {
        (db.scalar_i64("SELECT count(*) FROM due_work WHERE state = 'running'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    w.signal(libc::SIGINT);
    assert_eq!(
        w.wait(Duration::from_secs(20)),
        Some(0),
        "a single SIGINT is a graceful stop, not the forced exit"
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM job_history WHERE state = 'completed'")
            .await,
        1
    );
}

#[tokio::test]
async fn sustained_and_bloat_scenarios_complete() {
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
        let out = Command::new(binary())
            .args(&args)
            .env("DATABASE_URL", &db.url)
            .env("LOG_LEVEL", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let result: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("bench prints JSON");
        assert!(result["jobs"].as_u64().unwrap() >= 500, "{result}");
        assert!(
            result["phases"].as_array().is_some_and(|p| !p.is_empty()),
            "{result}"
        );
        assert!(result["dead_tuples"].is_number());
    }
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
    first.signal(libc::SIGTERM);
    assert_eq!(first.wait(Duration::from_secs(20)), Some(0));
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
            db.scalar_i64("SELECT count(*) FROM all_attempts").await,
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api = spawn(
        &dir,
        &db.url,
        &["api"],
        &[
            ("API_PORT", &port.to_string()),
            ("API_HOST", "127.0.0.1"),
            ("API_DB_POOL_SIZE", "3"),
        ],
    );
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(30), "the api to answer", || async {
        let r = http.get(format!("{base}/health")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    // Every request for schedules waits on this lock while holding a connection.
    let mut blocker = db.pool.begin().await.unwrap();
    sqlx::query("LOCK schedules IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
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
