//! Connections, Postgres faults and primary failover, with real processes: multi-host
//! connection strings, a standby, a primary switched to read-only, a terminated and a
//! stopped lock connection, a crash reset, and two installs in one database.
//!
//! Jobs record their executions in a file (`start`/`end` lines per job id), so counts
//! hold even while the database refuses writes.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::{Durability, PrivateCluster};
use common::http::free_port;
use common::jobs::{completed_at_least, count, jobs, wait_completed, wait_running};
use common::procs::{Proc, assert_success, spawn, workdir};
use common::{TestDb, eventually};
use ordinaut::db::{self, DbConfig};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// A `rec` kind that appends `<job id> start` and `<job id> end` around a sleep of
/// `payload`-independent length given by the kind's name.
fn config(runs: &Path) -> String {
    let runs = runs.display();
    let rec = |name: &str, secs: &str| {
        format!(
            "[kinds.{name}]\ntype = \"command\"\nprogram = \"/bin/sh\"\nargs = [\"-c\", \"echo \\\"$ORDINAUT_JOB_ID start\\\" >> {runs}; sleep {secs}; echo \\\"$ORDINAUT_JOB_ID end\\\" >> {runs}\"]\n"
        )
    };
    format!(
        "{}{}{}",
        rec("quick", "0.05"),
        rec("slow", "3"),
        rec("long", "10")
    )
}

/// Executions per job id: (starts, ends), and whether any job had two starts open at once.
fn runs(file: &Path) -> (std::collections::HashMap<String, (u32, u32)>, bool) {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut by_job: std::collections::HashMap<String, (u32, u32)> = Default::default();
    let mut overlap = false;
    for line in text.lines() {
        let Some((id, what)) = line.split_once(' ') else {
            continue;
        };
        let e = by_job.entry(id.to_owned()).or_default();
        if what == "start" {
            if e.0 > e.1 {
                overlap = true;
            }
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    (by_job, overlap)
}

/// Waits up to `limit` for `n` completed jobs, then asserts from the runs `file` that
/// each of them ran exactly once.
async fn each_ran_once(pool: &PgPool, file: &Path, n: usize, limit: Duration) {
    wait_completed(pool, n as i64, limit).await;
    assert_each_ran_once(file, n);
}

fn assert_each_ran_once(file: &Path, n: usize) {
    let (by_job, overlap) = runs(file);
    assert!(!overlap, "a job ran twice at the same time");
    assert_eq!(by_job.len(), n, "every job ran");
    let twice: Vec<_> = by_job.iter().filter(|(_, c)| c.0 != 1).collect();
    assert!(twice.is_empty(), "jobs started more than once: {twice:?}");
}

fn cfg(url: &str) -> DbConfig {
    common::cluster::db_config(url, 4)
}

async fn server_port(conn: &mut PgConnection) -> i32 {
    sqlx::query_scalar("SELECT inet_server_port()")
        .fetch_one(conn)
        .await
        .unwrap()
}

/// A work directory whose `ordinaut.toml` holds the recording kinds, and its runs file.
fn recording_dir(name: &str) -> (PathBuf, PathBuf) {
    let dir = workdir(name, "");
    let file = dir.join("runs.log");
    std::fs::write(dir.join("ordinaut.toml"), config(&file)).unwrap();
    (dir, file)
}

/// Migrates the database `url` names and opens a pool on it.
/// A primary of its own, its read-write URL and a migrated pool on it.
async fn read_write_primary(name: &str) -> (PrivateCluster, String, db::Pool) {
    let primary = PrivateCluster::start(name, Durability::Fast).await;
    let url = format!("{}?target_session_attrs=read-write", primary.url());
    let pool = migrated_pool(&url).await;
    (primary, url, pool)
}

async fn migrated_pool(url: &str) -> db::Pool {
    db::migrate(&cfg(url)).await.unwrap();
    cfg(url).connect().await.unwrap()
}

/// Runs each statement on `conn`, in order.
async fn execute_all(conn: &mut PgConnection, statements: &[&'static str]) {
    for sql in statements {
        sqlx::query(*sql).execute(&mut *conn).await.unwrap();
    }
}

/// Switches the server to read-only and ends every client session, as an operator
/// fencing an old primary would.
async fn make_read_only(admin: &mut PgConnection) {
    execute_all(
        admin,
        &[
            "ALTER SYSTEM SET default_transaction_read_only = on",
            "SELECT pg_reload_conf()",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        ],
    )
    .await;
}

/// Waits until `GET url` answers a status `accept` takes.
async fn wait_status(url: &str, what: &str, accept: impl Fn(reqwest::StatusCode) -> bool) {
    eventually(Duration::from_secs(30), what, || async {
        let r = reqwest::get(url).await.ok()?;
        accept(r.status()).then_some(())
    })
    .await;
}

/// Runs the CLI in `dir` against `url` with extra environment.
fn cli(dir: &Path, url: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(common::binary())
        .args(args)
        .current_dir(dir)
        .env("DATABASE_URL", url)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[tokio::test]
async fn multi_host_strings_reach_the_primary_past_a_dead_host_and_a_standby() {
    let primary = PrivateCluster::start("fo-multi", Durability::Fast).await;
    let standby = primary.standby().await;
    let (p, s, dead) = (primary.pg.port(), standby.pg.port(), free_port());

    // The URL shape of issue 21, with a dead host and the standby listed first.
    let url = format!(
        "postgresql://postgres@127.0.0.1:{dead},127.0.0.1:{s},127.0.0.1:{p}/postgres?target_session_attrs=read-write"
    );
    db::migrate(&cfg(&url))
        .await
        .expect("migrate over a multi-host URL");
    let mut one = cfg(&url).connect_one().await.unwrap();
    assert_eq!(server_port(&mut one).await, i32::from(p));
    let pool = cfg(&url).connect().await.unwrap();
    let port: i32 = sqlx::query_scalar("SELECT inet_server_port()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(port, i32::from(p));
    assert!(db::is_ready(&pool).await.unwrap());

    // The keyword form; `primary` and `standby`.
    let kw = format!(
        "host=127.0.0.1,127.0.0.1 port={s},{p} user=postgres dbname=postgres target_session_attrs=primary"
    );
    let mut c = cfg(&kw).connect_one().await.unwrap();
    assert_eq!(server_port(&mut c).await, i32::from(p));
    let kw = format!(
        "host=127.0.0.1,127.0.0.1 port={p},{s} user=postgres dbname=postgres target_session_attrs=standby"
    );
    let mut c = cfg(&kw).connect_one().await.unwrap();
    assert_eq!(server_port(&mut c).await, i32::from(s));

    // Nothing satisfies: the error names each server and why, never the password.
    let only_standby = format!(
        "postgresql://postgres:hunter2@127.0.0.1:{dead},127.0.0.1:{s}/postgres?target_session_attrs=read-write"
    );
    let e = cfg(&only_standby)
        .connect_one()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("127.0.0.1:{s}: a standby")), "{e}");
    assert!(e.contains(&format!("127.0.0.1:{dead}")), "{e}");
    assert!(!e.contains("hunter2"), "{e}");

    // Every process takes it: the CLI migrates and lists over it.
    let dir = workdir("fo-multi", "");
    assert_success(&cli(&dir, &url, &["jobs", "list"], &[]));
    // PGTARGETSESSIONATTRS applies when the string says nothing.
    let plain = format!("postgresql://postgres@127.0.0.1:{s},127.0.0.1:{p}/postgres");
    let env = [("PGTARGETSESSIONATTRS", "read-write")];
    assert_success(&cli(&dir, &plain, &["healthcheck", "--db"], &env));
    // A bad string: one line naming the bad part, non-zero exit.
    let bad = "postgresql://u:hunter2@h1:5432,h2:54x2/db";
    let out = cli(&dir, bad, &["jobs", "list"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("\"54x2\""), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    pool.close().await;
}

#[tokio::test]
async fn a_worker_started_against_a_standby_waits_quietly_and_exits_on_sigterm() {
    let primary = PrivateCluster::start("fo-standby", Durability::Fast).await;
    db::migrate(&cfg(&primary.url())).await.unwrap();
    let standby = primary.standby().await;
    let dir = workdir("fo-standby", "");
    let worker = spawn(&dir, &standby.url(), &["worker"], &[]);
    eventually(
        Duration::from_secs(30),
        "worker waiting for a primary",
        || async {
            (worker.output().matches("no writable primary yet").count() >= 4).then_some(())
        },
    )
    .await;
    // Quiet: one line per backoff step, nothing else.
    let lines = worker.log_lines();
    let waits = worker.output().matches("no writable primary yet").count();
    assert!(lines <= waits + 2, "{}", worker.output());
    // The probe says so too.
    let out = cli(&dir, &standby.url(), &["healthcheck", "--db"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a writable primary"), "{err}");
    worker.terminate("worker", Duration::from_secs(10));
}

#[tokio::test]
async fn a_primary_switched_to_read_only_under_a_worker_stops_it_quietly_and_it_resumes() {
    let (primary, url, pool) = read_write_primary("fo-readonly").await;
    let (dir, file) = recording_dir("fo-readonly");
    jobs("q", "slow").enqueue_n(&pool, 8).await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let worker = spawn(
        &dir,
        &url,
        &["worker"],
        &[
            ("WORKER_CONCURRENCY", "4"),
            ("WORKER_METRICS_ADDR", &metrics),
        ],
    );
    let ready = format!("http://{metrics}/ready");
    wait_running(&pool, 4, Duration::from_secs(30)).await;
    let mut admin = primary.admin().await;
    make_read_only(&mut admin).await;
    wait_status(&ready, "worker not ready", |s| s == 503).await;
    // Stays down (no primary) for a while without a flood of log lines.
    eventually(
        Duration::from_secs(30),
        "several retries logged",
        || async { (worker.output().matches("not claiming").count() >= 3).then_some(()) },
    )
    .await;
    execute_all(
        &mut admin,
        &[
            "SET default_transaction_read_only = off",
            "ALTER SYSTEM RESET default_transaction_read_only",
            "SELECT pg_reload_conf()",
        ],
    )
    .await;
    let writable_at = std::time::Instant::now();
    wait_status(&ready, "worker ready again", |s| s.is_success()).await;
    eprintln!(
        "read-only figures: worker ready {:.1} s after the server became writable",
        writable_at.elapsed().as_secs_f64()
    );
    each_ran_once(&pool, &file, 8, Duration::from_secs(60)).await;
    let not_completed = "SELECT count(*) FROM all_attempts WHERE outcome <> 'completed'";
    assert_eq!(count(&pool, not_completed).await, 0);
    assert!(worker.log_lines() < 200, "{}", worker.output());
    worker.terminate("worker", Duration::from_secs(30));
    pool.close().await;
}

/// The backend pid holding a worker's advisory lock.
async fn lock_backend(pool: &db::Pool) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT l.pid FROM pg_locks l
         WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
           AND l.classid = ordinaut_worker_lock_class()::oid
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         LIMIT 1",
    )
    .fetch_optional(pool)
    .await
    .ok()
    .flatten()
}

/// Waits until a worker holds its lock and `n` jobs run; returns the lock's backend pid.
async fn lock_held_and_running(pool: &db::Pool, n: i64) -> i32 {
    eventually(
        Duration::from_secs(30),
        "lock held and jobs running",
        || async {
            let pid = lock_backend(pool).await?;
            let running = count(
                pool,
                "SELECT count(*) FROM due_work WHERE state = 'running'",
            );
            (running.await == n).then_some(pid)
        },
    )
    .await
}

#[tokio::test]
async fn a_terminated_lock_connection_stops_claiming_and_it_resumes_with_no_job_twice() {
    let db = TestDb::new().await;
    let (dir, file) = recording_dir("fo-term");
    jobs("q", "slow").enqueue_n(&db.pool, 12).await;
    let worker = spawn(&dir, &db.url, &["worker"], &[("WORKER_CONCURRENCY", "4")]);
    let first = lock_held_and_running(&db.pool, 4).await;
    let key_before = count(&db.pool, "SELECT lock_key::int8 FROM workers").await;
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(first)
        .execute(&db.pool)
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "lock re-taken", || async {
        let pid = lock_backend(&db.pool).await?;
        (pid != first && count(&db.pool, "SELECT lock_key::int8 FROM workers").await != key_before)
            .then_some(())
    })
    .await;
    each_ran_once(&db.pool, &file, 12, Duration::from_secs(60)).await;
    assert_eq!(db.all_attempts().await, 12);
    assert!(
        worker.output().contains("worker re-registered"),
        "{}",
        worker.output()
    );
    worker.terminate("worker", Duration::from_secs(30));
}

#[tokio::test]
async fn a_lock_backend_stopped_longer_than_the_lease_does_not_get_jobs_run_twice() {
    let db = TestDb::new().await;
    let (dir, file) = recording_dir("fo-stop");
    jobs("q", "long").enqueue_n(&db.pool, 4).await;
    // Lease 3 s: heartbeat every second, each call bounded at 0.75 s.
    let env = [("WORKER_CONCURRENCY", "4"), ("WORKER_LEASE_SECONDS", "3")];
    let worker = spawn(&dir, &db.url, &["worker"], &env);
    let pid = lock_held_and_running(&db.pool, 4).await;
    // A second worker that would take any job handed back.
    let other = spawn(&dir, &db.url, &["worker"], &env);
    // SAFETY: kill(2) on a backend of our own test cluster.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    eventually(
        Duration::from_secs(30),
        "heartbeat gave the stopped session up",
        || async {
            worker
                .output()
                .contains("worker re-registered")
                .then_some(())
        },
    )
    .await;
    // Past the lease of the stopped session's last extension.
    let stopped_at = db
        .scalar_i64("SELECT extract(epoch FROM now())::int8")
        .await;
    eventually(Duration::from_secs(30), "a lease length passed", || async {
        (db.scalar_i64("SELECT extract(epoch FROM now())::int8")
            .await
            > stopped_at + 4)
            .then_some(())
    })
    .await;
    unsafe { libc::kill(pid, libc::SIGCONT) };
    each_ran_once(&db.pool, &file, 4, Duration::from_secs(60)).await;
    assert_eq!(db.all_attempts().await, 4);
    for w in [worker, other] {
        w.terminate("worker", Duration::from_secs(30));
    }
}

#[tokio::test]
async fn a_crash_reset_while_long_jobs_run_hands_nothing_back_and_each_runs_once() {
    let cluster = PrivateCluster::start("fo-crash", Durability::Fast).await;
    let url = cluster.url();
    let pool = migrated_pool(&url).await;
    let (dir, file) = recording_dir("fo-crash");
    jobs("q", "long").enqueue_n(&pool, 6).await;
    let env = [("WORKER_CONCURRENCY", "3")];
    let workers: Vec<Proc> = (0..2)
        .map(|_| spawn(&dir, &url, &["worker"], &env))
        .collect();
    let scheduler = spawn(&dir, &url, &["scheduler"], &[]);
    wait_running(&pool, 6, Duration::from_secs(30)).await;
    // The workers' claims commit asynchronously: a crash within ~0.6 s of them would
    // lose them and the jobs would (rightly) run again. Flush the WAL with one
    // synchronous commit so that what is tested here is the rescuer's grace alone.
    let mut victim = cluster.admin().await;
    sqlx::query("SET synchronous_commit = on")
        .execute(&mut victim)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE wal_flushed ()")
        .execute(&mut victim)
        .await
        .unwrap();
    // One backend killed with SIGKILL: the postmaster resets every session and recovers
    // in place, keeping pg_postmaster_start_time().
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut victim)
        .await
        .unwrap();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    drop(victim);
    each_ran_once(&pool, &file, 6, Duration::from_secs(90)).await;
    let lost = "SELECT count(*) FROM all_attempts WHERE outcome = 'lost'";
    assert_eq!(count(&pool, lost).await, 0, "nothing was handed back");
    assert_eq!(count(&pool, "SELECT count(*) FROM all_attempts").await, 6);
    for p in workers.into_iter().chain([scheduler]) {
        assert!(p.log_lines() < 200, "{}", p.output());
        p.terminate("worker", Duration::from_secs(30));
    }
    pool.close().await;
}

#[tokio::test]
async fn two_schemas_in_one_database_share_neither_locks_nor_channels() {
    let db = TestDb::new().await;
    let in_schema = |schema: &str| DbConfig {
        schema: schema.to_owned(),
        ..db.db_config()
    };
    let (a, b) = (in_schema("install_a"), in_schema("install_b"));
    db::migrate(&a).await.unwrap();
    db::migrate(&b).await.unwrap();
    let (pool_a, pool_b) = (a.connect().await.unwrap(), b.connect().await.unwrap());

    // Same lock key in both installs (each has its own sequence), different classes.
    let reg = |id| db::workers::Registration {
        id,
        hostname: "h".into(),
        pid: 1,
        queues: vec!["q".into()],
        concurrency: 1,
        version: "t".into(),
    };
    let (wa, wb) = (Uuid::now_v7(), Uuid::now_v7());
    let mut conn_a = a.connect_one().await.unwrap();
    let mut conn_b = b.connect_one().await.unwrap();
    let key_a = db::workers::register(&mut conn_a, &reg(wa)).await.unwrap();
    let key_b = db::workers::register(&mut conn_b, &reg(wb)).await.unwrap();
    assert_eq!(key_a, key_b, "both sequences start at the same key");
    // A's worker dies; B's, holding the same key, must not keep it "alive".
    conn_a.close().await.unwrap();
    let dead = eventually(Duration::from_secs(10), "A's worker seen dead", || async {
        let dead = db::workers::find_dead(&pool_a, Duration::from_secs(10))
            .await
            .ok()?;
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead, vec![wa]);
    assert!(
        db::workers::find_dead(&pool_b, Duration::from_secs(10))
            .await
            .unwrap()
            .is_empty()
    );

    // Channels: an enqueue in B is not heard on A's channel.
    let names_a = db::events::install_channels(&pool_a, &[db::events::CHANNEL_ENQUEUED])
        .await
        .unwrap();
    let names_b = db::events::install_channels(&pool_b, &[db::events::CHANNEL_ENQUEUED])
        .await
        .unwrap();
    assert_ne!(names_a, names_b);
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool_a)
        .await
        .unwrap();
    listener.listen(&names_a[0]).await.unwrap();
    // B's commits first: had it been sent on A's channel, it would arrive first.
    jobs("from_b", "x").enqueue_n(&pool_b, 1).await;
    jobs("from_a", "x").enqueue_n(&pool_a, 1).await;
    let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("A's enqueue is heard")
        .unwrap();
    assert_eq!(n.payload(), "from_a");
    drop(conn_b);
}

/// Seconds since the Unix epoch, as a float (for the figures this test prints).
/// What this thread's tasks log (a `#[tokio::test]` runtime runs every task on it).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn a_listener_on_a_standby_backs_off_logs_once_per_step_and_stops_at_once() {
    use ordinaut::db::listen::{Listener, Topics};
    let primary = PrivateCluster::start("fo-listen", Durability::Fast).await;
    db::migrate(&cfg(&primary.url())).await.unwrap();
    let standby = primary.standby().await;
    let pool = cfg(&standby.url()).connect().await.unwrap();
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let stop = tokio_util::sync::CancellationToken::new();
    let started = std::time::Instant::now();
    let task = tokio::spawn(Listener::new(pool, Topics::ALL).run(stop.clone()));
    let failed = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains("LISTEN failed"))
            .map(str::to_owned)
            .collect()
    };
    eventually(
        Duration::from_secs(30),
        "four failed LISTEN steps",
        || async { (failed(logs.text()).len() >= 4).then_some(()) },
    )
    .await;
    let elapsed = started.elapsed();
    let lines = failed(logs.text());
    // One line per step, with the count, and the standby's answer.
    for (n, line) in lines.iter().take(4).enumerate() {
        assert!(line.contains(&format!("failures={} ", n + 1)), "{lines:#?}");
        assert!(line.contains("during recovery"), "{line}");
    }
    // Not a tight loop: at least 0.8 x (0.2 + 0.4 + 0.8) s of backoff between the four.
    assert!(elapsed >= Duration::from_millis(1120), "{elapsed:?}");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("the stop token ends the listener at once")
        .unwrap();
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

#[tokio::test]
async fn promoting_the_standby_mid_drain_moves_every_process_and_loses_no_job() {
    let primary = PrivateCluster::start("fo-promote", Durability::Fast).await;
    let standby = primary.standby().await;
    let (p, s) = (primary.pg.port(), standby.pg.port());
    let url = format!(
        "postgresql://postgres@127.0.0.1:{p},127.0.0.1:{s}/postgres?target_session_attrs=read-write"
    );
    let pool = migrated_pool(&url).await;
    let (dir, file) = recording_dir("fo-promote");
    const JOBS: usize = 2000;
    jobs("q", "quick").enqueue_n(&pool, JOBS).await;
    let api_port = free_port().to_string();
    let env = [("WORKER_CONCURRENCY", "8")];
    let mut procs: Vec<(&str, Proc)> = vec![
        (
            "api",
            spawn(&dir, &url, &["api"], &[("API_PORT", &api_port)]),
        ),
        ("scheduler", spawn(&dir, &url, &["scheduler"], &[])),
        ("worker 1", spawn(&dir, &url, &["worker"], &env)),
        ("worker 2", spawn(&dir, &url, &["worker"], &env)),
    ];
    // A quarter drained.
    completed_at_least(&pool, (JOBS / 4) as i64, Duration::from_secs(120)).await;

    // The primary dies (no shutdown checkpoint, like a lost machine); the standby is
    // promoted, as pg_auto_failover or Patroni would.
    let down_at = now_secs();
    let (old, promoting) = (primary.pg.clone(), standby.pg.clone());
    tokio::task::spawn_blocking(move || {
        old.stop_immediate()?;
        promoting.promote()
    })
    .await
    .unwrap()
    .expect("stop the primary and promote the standby");
    let promoted_at = now_secs();
    // Work resumed: a job finished on the new primary after the promotion.
    let resumed_at = eventually(Duration::from_secs(60), "work resumes", || async {
        let finished: f64 = sqlx::query_scalar(
            "SELECT coalesce(extract(epoch FROM min(finished_at))::float8, 0) FROM job_history
             WHERE finished_at > to_timestamp($1)",
        )
        .bind(promoted_at)
        .fetch_one(&pool)
        .await
        .map_err(db::Error::from)
        .ok()?;
        (finished > 0.0).then_some(finished)
    })
    .await;
    completed_at_least(&pool, JOBS as i64, Duration::from_secs(180)).await;

    assert_eq!(
        count(&pool, "SELECT count(*) FROM due_work").await,
        0,
        "every job terminal"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(DISTINCT id) FROM job_history WHERE state = 'completed'"
        )
        .await,
        JOBS as i64,
        "no job lost"
    );
    let (by_job, overlap) = runs(&file);
    assert!(!overlap, "no job ran twice at the same time");
    assert_eq!(by_job.len(), JOBS);
    let reruns: u32 = by_job.values().map(|c| c.0.saturating_sub(1)).sum();
    let by_lease = count(
        &pool,
        "SELECT count(*) FROM all_attempts WHERE outcome = 'lost'",
    )
    .await;
    eprintln!(
        "failover figures: without a primary {:.1} s, resumed {:.1} s after the promotion, {reruns} re-runs of {JOBS} jobs ({by_lease} handed back by lease expiry)",
        promoted_at - down_at,
        resumed_at - promoted_at
    );
    assert!(
        resumed_at - promoted_at < 10.0,
        "work resumed {:.1} s after the promotion",
        resumed_at - promoted_at
    );
    for (name, proc) in procs.drain(..) {
        assert!(proc.log_lines() < 200, "{name}: {}", proc.output());
        proc.signal(libc::SIGTERM);
        assert_eq!(
            proc.wait(Duration::from_secs(40)),
            Some(0),
            "{name} exits on SIGTERM"
        );
    }
    pool.close().await;
}

#[tokio::test]
async fn sigterm_while_the_primary_is_read_only_stops_every_process() {
    let (primary, url, pool) = read_write_primary("fo-term-ro").await;
    let (dir, _runs) = recording_dir("fo-term-ro");
    jobs("q", "slow").enqueue_n(&pool, 4).await;
    let api_port = free_port().to_string();
    let worker = spawn(
        &dir,
        &url,
        &["worker"],
        &[("WORKER_CONCURRENCY", "2"), ("WORKER_SHUTDOWN_GRACE", "1")],
    );
    let scheduler = spawn(&dir, &url, &["scheduler"], &[]);
    let api = spawn(&dir, &url, &["api"], &[("API_PORT", &api_port)]);
    wait_running(&pool, 2, Duration::from_secs(30)).await;
    let mut admin = primary.admin().await;
    make_read_only(&mut admin).await;
    eventually(Duration::from_secs(30), "the worker noticed", || async {
        worker.output().contains("not claiming").then_some(())
    })
    .await;
    let ready = format!("http://127.0.0.1:{api_port}/ready");
    wait_status(&ready, "api not ready", |s| s == 503).await;
    // Unfinished jobs are left to the lease rules; every process still exits.
    for p in [&worker, &scheduler, &api] {
        p.signal(libc::SIGTERM);
    }
    for (name, p) in [("worker", worker), ("scheduler", scheduler), ("api", api)] {
        let lines = p.log_lines();
        assert!(lines < 200, "{name}: {}", p.output());
        // Grace 1 s plus a heartbeat timeout; the limit is generous for a loaded machine.
        assert_eq!(
            p.wait(Duration::from_secs(15)),
            Some(0),
            "{name} exits on SIGTERM"
        );
    }
    pool.close().await;
}
