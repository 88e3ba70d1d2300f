//! The fault suite: real worker processes, real Postgres faults, executions counted
//! from outside by the jobs themselves (see `common::recorder::Recorder`).
//!
//! Every scenario asserts the same four things: no job lost (each completed), every job
//! terminal (nothing left in due_work), no job executed twice at the same time (the
//! per-job flock), and each process exits cleanly on SIGTERM. Each prints one
//! `fault-report` line with its figures (jobs, executions, reruns, recovery), which
//! docs/RELIABILITY.md quotes: `cargo test --test faults -- --nocapture | grep fault-report`.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::cluster::{Durability, PrivateCluster};
use common::jobs::{count, drained, jobs};
use common::procs::{Proc, spawn, stop_all};
use common::recorder::{Recorder, epoch_now};
use common::{TestDb, eventually};
use ordinaut::db::DbConfig;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// Payloads sleeping `secs[i % len]` seconds.
fn sleeps(n: usize, secs: &[f64]) -> Vec<Value> {
    (0..n)
        .map(|i| json!({ "sleep": secs[i % secs.len()] }))
        .collect()
}

/// The figures of one scenario.
struct Report {
    jobs: usize,
    executions: usize,
}

/// Checks the four properties for `ids` and returns the figures.
async fn verify(rec: &Recorder, pool: &PgPool, ids: &[Uuid]) -> Report {
    assert_eq!(count(pool, "SELECT count(*) FROM due_work").await, 0);
    let completed: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM job_history WHERE state = 'completed'")
            .fetch_all(pool)
            .await
            .expect("read history");
    let completed: HashSet<Uuid> = completed.into_iter().collect();
    let missing: Vec<&Uuid> = ids.iter().filter(|id| !completed.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} jobs not completed, e.g. {:?}",
        missing.len(),
        ids.len(),
        missing.first()
    );
    assert_eq!(
        count(pool, "SELECT count(*) FROM job_history").await,
        ids.len() as i64,
        "each job finished once"
    );
    let by_job = rec.executions_by_job();
    let never_ran: Vec<&Uuid> = ids.iter().filter(|id| !by_job.contains_key(id)).collect();
    assert!(
        never_ran.is_empty(),
        "completed without running: {never_ran:?}"
    );
    let overlaps = rec.overlaps();
    assert!(
        overlaps.is_empty(),
        "jobs executed twice at the same time: {overlaps:?}"
    );
    Report {
        jobs: ids.len(),
        executions: rec.starts().len(),
    }
}

/// For each (killed worker pid, kill time): the longest wait until a job that was
/// running on it started again elsewhere. None when it was running nothing.
fn recovery_seconds(rec: &Recorder, kills: &[(i32, f64)]) -> Option<f64> {
    let starts = rec.starts();
    let ended: HashSet<(Uuid, i32)> = rec.ends().into_iter().collect();
    let mut worst: Option<f64> = None;
    for &(pid, at) in kills {
        let cut: Vec<_> = starts
            .iter()
            .filter(|e| e.worker_pid == pid && e.at < at && !ended.contains(&(e.job, e.attempt)))
            .collect();
        for e in cut {
            if let Some(again) = starts
                .iter()
                .filter(|s| s.job == e.job && s.at > at)
                .map(|s| s.at)
                .reduce(f64::min)
            {
                let wait = again - at;
                worst = Some(worst.map_or(wait, |w: f64| w.max(wait)));
            }
        }
    }
    worst
}

fn report(scenario: &str, r: &Report, extra: &[(&str, String)]) {
    let mut line = format!(
        "fault-report scenario={scenario} jobs={} executions={} reruns={}",
        r.jobs,
        r.executions,
        r.executions - r.jobs
    );
    for (k, v) in extra {
        line.push_str(&format!(" {k}={v}"));
    }
    eprintln!("{line}");
}

/// One `rec` job per payload; faults may cut several attempts of one job, none of them
/// the job's fault.
async fn enqueue(pool: &PgPool, payloads: Vec<Value>) -> Vec<Uuid> {
    jobs("q", "rec")
        .max_attempts(50)
        .enqueue_payloads(pool, payloads)
        .await
}

fn worker(rec: &Recorder, url: &str, env: &[(&str, &str)]) -> Proc {
    spawn(&rec.dir, url, &["worker"], env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_again_and_again_lose_nothing_and_never_overlap() {
    let db = TestDb::new().await;
    let rec = Recorder::new("faults-kill9", "");
    let ids = enqueue(&db.pool, sleeps(600, &[0.05, 0.2, 0.6, 1.5])).await;
    let env = [("WORKER_CONCURRENCY", "16")];
    let mut workers: Vec<Proc> = (0..3).map(|_| worker(&rec, &db.url, &env)).collect();
    let mut kills = Vec::new();
    for round in 0..5 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let victim = workers.remove(round % workers.len());
        let pid = victim.pid();
        kills.push((pid, victim.kill9()));
        workers.push(worker(&rec, &db.url, &env));
    }
    drained(&db.pool, Duration::from_secs(180)).await;
    stop_all(workers, Duration::from_secs(40));
    let r = verify(&rec, &db.pool, &ids).await;
    let recovery = recovery_seconds(&rec, &kills);
    report(
        "kill-9-workers",
        &r,
        &[
            ("kills", kills.len().to_string()),
            (
                "max_seconds_until_rerun",
                recovery.map_or("n/a".into(), |s| format!("{s:.2}")),
            ),
        ],
    );
}

async fn restart_mid_drain(mode: &'static str) {
    let pg = PrivateCluster::start(&format!("faults-restart-{mode}"), Durability::Durable).await;
    let pool = pg.migrated_pool(4).await;
    let rec = Recorder::new(&format!("faults-restart-{mode}"), "");
    let ids = enqueue(&pool, sleeps(800, &[0.02, 0.1, 0.3])).await;
    let env = [("WORKER_CONCURRENCY", "16")];
    let workers: Vec<Proc> = (0..2).map(|_| worker(&rec, &pg.url(), &env)).collect();
    eventually(Duration::from_secs(60), "draining under way", || async {
        (rec.ends().len() >= 150).then_some(())
    })
    .await;
    let cluster = pg.pg.clone();
    tokio::task::spawn_blocking(move || cluster.restart_mode(mode))
        .await
        .expect("join")
        .expect("pg_ctl restart");
    let back = epoch_now();
    drained(&pool, Duration::from_secs(180)).await;
    let resumed = rec
        .starts()
        .iter()
        .filter(|s| s.at > back)
        .map(|s| s.at - back)
        .reduce(f64::min);
    stop_all(workers, Duration::from_secs(40));
    let r = verify(&rec, &pool, &ids).await;
    report(
        &format!("pg-restart-{mode}"),
        &r,
        &[(
            "seconds_to_first_start_after_restart",
            resumed.map_or("n/a".into(), |s| format!("{s:.2}")),
        )],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fast_restart_mid_drain_loses_and_overlaps_nothing() {
    restart_mid_drain("fast").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_immediate_restart_mid_drain_loses_and_overlaps_nothing() {
    restart_mid_drain("immediate").await;
}

/// A claim that returned jobs is on disk before the worker starts them, although the
/// worker's pool commits asynchronously: a claim lost in a server crash would hand back
/// jobs that are already running, and a second worker would run them at the same time
/// (`postgres_immediate_restart_mid_drain_loses_and_overlaps_nothing` saw that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_survives_a_server_crash_right_after_it_returns() {
    let pg = PrivateCluster::start("faults-claim-durable", Durability::Durable).await;
    let pool = pg.migrated_pool(2).await;
    for round in 0..5 {
        enqueue(&pool, sleeps(10, &[1.0])).await;
        // The worker's own pool, fresh each round (the crash breaks its connection).
        let hot = DbConfig {
            hot_path: true,
            ..pg.db_config(1)
        };
        let hot_pool = hot.connect().await.expect("connect the worker's pool");
        let claimed = ordinaut::db::due_work::claim_due(
            &hot_pool,
            &["q".to_owned()],
            10,
            Uuid::now_v7(),
            Duration::from_secs(300),
        )
        .await
        .expect("claim");
        assert_eq!(claimed.len(), 10);
        let cluster = pg.pg.clone();
        tokio::task::spawn_blocking(move || cluster.restart_mode("immediate"))
            .await
            .expect("join")
            .expect("pg_ctl restart -m immediate");
        hot_pool.close().await;
        let mut admin = pg.admin().await;
        let running: i64 =
            sqlx::query_scalar("SELECT count(*) FROM due_work WHERE state = 'running'")
                .fetch_one(&mut admin)
                .await
                .expect("count running jobs");
        assert_eq!(
            running, 10,
            "round {round}: the crash undid a claim that had returned"
        );
        sqlx::query("DELETE FROM due_work")
            .execute(&mut admin)
            .await
            .expect("clear the round's jobs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_crash_restart_does_not_hand_back_running_jobs() {
    let pg = PrivateCluster::start("faults-backend-kill", Durability::Durable).await;
    let pool = pg.migrated_pool(4).await;
    let rec = Recorder::new("faults-backend-kill", "");
    let ids = enqueue(&pool, sleeps(30, &[8.0])).await;
    let env = [("WORKER_CONCURRENCY", "20")];
    let workers: Vec<Proc> = (0..2).map(|_| worker(&rec, &pg.url(), &env)).collect();
    eventually(Duration::from_secs(30), "all 30 running", || async {
        (rec.starts().len() == 30).then_some(())
    })
    .await;
    // Let the claims' asynchronous commits reach disk: the fault is the crash, not a
    // lost claim.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let victim: i32 = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
           AND application_name = 'ordinaut'
         ORDER BY backend_start LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .expect("a worker backend");
    // SAFETY: kill(2) of a Postgres backend of our own private cluster.
    unsafe {
        libc::kill(victim, libc::SIGKILL);
    }
    drained(&pool, Duration::from_secs(120)).await;
    stop_all(workers, Duration::from_secs(40));
    let r = verify(&rec, &pool, &ids).await;
    report("backend-sigkill-crash-recovery", &r, &[]);
    assert_eq!(
        r.executions, r.jobs,
        "running jobs of live workers were handed back and run again"
    );
}

/// Pids of every backend the worker processes hold on the test database.
async fn ordinaut_backends(pool: &PgPool) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND application_name = 'ordinaut' AND backend_type = 'client backend'
         ORDER BY pid",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default()
}

/// The backend holding worker process `pid`'s advisory lock.
async fn lock_backend(pool: &PgPool, pid: i32) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT l.pid FROM pg_locks l JOIN workers w ON l.objid = w.lock_key::oid
         WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted AND w.pid = $1
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(pid)
    .fetch_optional(pool)
    .await
    .ok()
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_connection_terminated_in_turn_loses_and_overlaps_nothing() {
    let db = TestDb::new().await;
    let rec = Recorder::new("faults-terminate", "");
    let ids = enqueue(&db.pool, sleeps(400, &[0.05, 0.3, 1.0])).await;
    let env = [("WORKER_CONCURRENCY", "8")];
    let workers: Vec<Proc> = (0..2).map(|_| worker(&rec, &db.url, &env)).collect();
    let mut terminated = 0;
    let mut lock_terminated = 0;
    let mut seen: HashMap<i32, ()> = HashMap::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        tokio::time::sleep(Duration::from_millis(700)).await;
        // The first worker's lock connection, then every other connection in turn.
        let target = match lock_backend(&db.pool, workers[0].pid()).await {
            Some(pid) if lock_terminated < 2 && !seen.contains_key(&pid) => {
                lock_terminated += 1;
                Some(pid)
            }
            _ => ordinaut_backends(&db.pool)
                .await
                .into_iter()
                .find(|pid| !seen.contains_key(pid)),
        };
        if let Some(pid) = target {
            seen.insert(pid, ());
            let _ = sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(&db.pool)
                .await;
            terminated += 1;
        }
    }
    drained(&db.pool, Duration::from_secs(180)).await;
    stop_all(workers, Duration::from_secs(40));
    let r = verify(&rec, &db.pool, &ids).await;
    report(
        "terminate-each-connection",
        &r,
        &[
            ("terminated", terminated.to_string()),
            ("lock_connections_terminated", lock_terminated.to_string()),
        ],
    );
    assert!(lock_terminated > 0, "a lock connection was terminated");
}

/// SIGCONTs a stopped backend even when the test fails, so the shared cluster goes on.
struct Stopped(i32);

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill(2) of a backend we stopped.
        unsafe {
            libc::kill(self.0, libc::SIGCONT);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_lock_backend_longer_than_the_lease_never_runs_a_job_twice_at_once() {
    let db = TestDb::new().await;
    let rec = Recorder::new("faults-sigstop", "");
    let ids = enqueue(&db.pool, sleeps(40, &[8.0, 0.5])).await;
    let short_lease = [("WORKER_CONCURRENCY", "8"), ("WORKER_LEASE_SECONDS", "6")];
    let victim = worker(&rec, &db.url, &short_lease);
    let other = worker(&rec, &db.url, &short_lease);
    eventually(Duration::from_secs(30), "jobs running on both", || async {
        let pids: HashSet<i32> = rec.starts().iter().map(|s| s.worker_pid).collect();
        (pids.contains(&victim.pid()) && pids.contains(&other.pid())).then_some(())
    })
    .await;
    let backend = eventually(Duration::from_secs(10), "the victim's lock backend", || {
        lock_backend(&db.pool, victim.pid())
    })
    .await;
    {
        // SAFETY: kill(2) of a backend of the test cluster; Stopped resumes it.
        unsafe {
            libc::kill(backend, libc::SIGSTOP);
        }
        let _resume = Stopped(backend);
        tokio::time::sleep(Duration::from_secs(12)).await;
    }
    drained(&db.pool, Duration::from_secs(180)).await;
    stop_all(vec![victim, other], Duration::from_secs(40));
    let r = verify(&rec, &db.pool, &ids).await;
    report(
        "sigstop-lock-backend-12s-lease-6s",
        &r,
        &[("stopped_seconds", "12".into())],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_behind_a_long_reader_never_stalls_completion() {
    let db = TestDb::new().await;
    let rec = Recorder::new("faults-retention", "");
    // A partition past any retention, so the rotation has something to drop.
    sqlx::query("SELECT ordinaut_ensure_partitions(current_date - 45, current_date - 44)")
        .execute(&db.pool)
        .await
        .expect("old partition");
    let partitions = || async {
        count(
            &db.pool,
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'job_history'::regclass",
        )
        .await
    };
    let before = partitions().await;
    // What pg_dump holds for its whole run: ACCESS SHARE on every table it dumps.
    let mut reader =
        PgConnection::connect_with(&db.db_config().connect_options().expect("options"))
            .await
            .expect("reader connection");
    sqlx::query("BEGIN")
        .execute(&mut reader)
        .await
        .expect("begin");
    sqlx::query("LOCK TABLE job_history, job_attempts IN ACCESS SHARE MODE")
        .execute(&mut reader)
        .await
        .expect("reader lock");
    let retention = ordinaut::scheduler::Retention::new(db.pool.clone(), 30);
    let rotation = tokio::spawn(async move { retention.run_once().await.is_ok() });
    let ids = enqueue(&db.pool, sleeps(200, &[0.0, 0.05])).await;
    let w = worker(&rec, &db.url, &[("WORKER_CONCURRENCY", "16")]);
    // Every job must complete while the reader still holds its lock.
    drained(&db.pool, Duration::from_secs(60)).await;
    let still_reading: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'relation'
                 AND relation = 'job_history'::regclass AND mode = 'AccessShareLock' AND granted)",
    )
    .fetch_one(&db.pool)
    .await
    .expect("lock check");
    assert!(still_reading, "the reader held its lock throughout");
    sqlx::query("COMMIT")
        .execute(&mut reader)
        .await
        .expect("commit");
    let _ = rotation.await;
    // Once the reader is gone the next rotation drops the old partition.
    let retention = ordinaut::scheduler::Retention::new(db.pool.clone(), 30);
    eventually(Duration::from_secs(30), "old partition dropped", || async {
        let _ = retention.run_once().await;
        (partitions().await < before).then_some(())
    })
    .await;
    stop_all(vec![w], Duration::from_secs(40));
    let r = verify(&rec, &db.pool, &ids).await;
    report("retention-behind-access-share-reader", &r, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_bytes_and_ten_megabytes_of_output_do_not_wedge_1000_other_jobs() {
    let db = TestDb::new().await;
    let rec = Recorder::new("faults-poison", "");
    let mut payloads = sleeps(1000, &[0.0]);
    for i in [10, 300, 700] {
        payloads[i] = json!({ "out": "nul" });
    }
    for i in [150, 850] {
        payloads[i] = json!({ "out": "big" });
    }
    let ids = enqueue(&db.pool, payloads).await;
    let w = worker(&rec, &db.url, &[("WORKER_CONCURRENCY", "16")]);
    drained(&db.pool, Duration::from_secs(120)).await;
    stop_all(vec![w], Duration::from_secs(40));
    let r = verify(&rec, &db.pool, &ids).await;
    report("nul-and-10mb-output-among-1000", &r, &[]);
    assert_eq!(r.executions, r.jobs, "no job ran twice");
    let nul_logs: i64 = count(
        &db.pool,
        "SELECT count(*) FROM job_history WHERE state = 'completed' AND log LIKE '%x%y%'",
    )
    .await;
    assert_eq!(nul_logs, 3, "the NUL jobs' output is kept, sanitized");
}

// Workflows (issue 19): dependents activated exactly once, in the transaction that
// records the last dependency's outcome, whatever the processes and the server do.

/// Submits `n` diamonds of `rec` steps: a -> b, c -> d, with b on queue `q` and c on
/// `q2` (so with one worker per queue they always run on different workers), both
/// sleeping `sleep` seconds so that they end together. Returns each one's job ids by step.
async fn submit_diamonds(pool: &PgPool, n: usize, sleep: f64) -> Vec<HashMap<String, Uuid>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let step = |name: &str, queue: &str, sleep: f64, deps: &[&str]| {
            json!({"name": name, "queue": queue, "kind": "rec", "max_attempts": 50,
                   "payload": {"sleep": sleep}, "depends_on": deps})
        };
        let spec = json!({"name": format!("diamond-{i}"), "jobs": [
            step("a", "q", 0.0, &[]),
            step("b", "q", sleep, &["a"]),
            step("c", "q2", sleep, &["a"]),
            step("d", "q", 0.0, &["b", "c"]),
        ]});
        let id = ordinaut::db::workflows::submit(pool, &spec, 4)
            .await
            .expect("submit");
        let w = ordinaut::db::workflows::get(pool, id)
            .await
            .expect("read back");
        out.push(w.jobs.into_iter().map(|s| (s.name, s.job_id)).collect());
    }
    out
}

/// Every workflow completed, every step's job completed exactly once, no execution
/// overlapped another of the same job, and no `d` started before both `b` and `c` had
/// run to their end. Returns the executions of `d` by job.
async fn verify_diamonds(
    rec: &Recorder,
    pool: &PgPool,
    diamonds: &[HashMap<String, Uuid>],
) -> HashMap<Uuid, usize> {
    assert_eq!(count(pool, "SELECT count(*) FROM due_work").await, 0);
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM workflows WHERE state <> 'completed'"
        )
        .await,
        0,
        "every workflow completed"
    );
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM job_history WHERE state = 'completed'"
        )
        .await,
        4 * diamonds.len() as i64,
        "each step's job completed once"
    );
    assert_eq!(
        count(pool, "SELECT count(*) FROM job_history").await,
        4 * diamonds.len() as i64
    );
    let overlaps = rec.overlaps();
    assert!(overlaps.is_empty(), "overlapping executions: {overlaps:?}");
    let mut first_end: HashMap<Uuid, f64> = HashMap::new();
    for (job, _, at) in rec.ends_at() {
        let e = first_end.entry(job).or_insert(at);
        *e = e.min(at);
    }
    let mut first_start: HashMap<Uuid, f64> = HashMap::new();
    for s in rec.starts() {
        let e = first_start.entry(s.job).or_insert(s.at);
        *e = e.min(s.at);
    }
    let by_job = rec.executions_by_job();
    let mut d_runs = HashMap::new();
    for steps in diamonds {
        let d = steps["d"];
        let started = first_start[&d];
        for dep in ["b", "c"] {
            let ended = first_end
                .get(&steps[dep])
                .unwrap_or_else(|| panic!("{dep} of a diamond never ran to its end"));
            assert!(
                started > *ended,
                "d {d} started at {started} before {dep} ended at {ended}"
            );
        }
        d_runs.insert(d, by_job[&d]);
    }
    d_runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_joins_activate_once_when_their_last_two_dependencies_end_together() {
    let db = TestDb::new().await;
    let rec = Recorder::new("faults-wf-join", "");
    let diamonds = submit_diamonds(&db.pool, 60, 0.5).await;
    // One worker per queue, with a slot for every job it may hold at once: every b and
    // c of a diamond run at once on two processes and their outcomes reach Postgres from
    // two completers at nearly the same moment.
    let env = [("WORKER_CONCURRENCY", "128")];
    let w1 = spawn(
        &rec.dir,
        &db.url,
        &["worker"],
        &[env[0], ("WORKER_QUEUES", "q")],
    );
    let w2 = spawn(
        &rec.dir,
        &db.url,
        &["worker"],
        &[env[0], ("WORKER_QUEUES", "q2")],
    );
    drained(&db.pool, Duration::from_secs(120)).await;
    stop_all(vec![w1, w2], Duration::from_secs(40));
    let d_runs = verify_diamonds(&rec, &db.pool, &diamonds).await;
    let twice: Vec<_> = d_runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "joins not executed exactly once: {twice:?}"
    );
    // b and c really ended together: count the diamonds whose ends are within 100 ms.
    let ends: HashMap<Uuid, f64> = rec
        .ends_at()
        .into_iter()
        .map(|(j, _, at)| (j, at))
        .collect();
    let together = diamonds
        .iter()
        .filter(|s| (ends[&s["b"]] - ends[&s["c"]]).abs() < 0.1)
        .count();
    let mut gaps: Vec<f64> = diamonds
        .iter()
        .map(|s| (ends[&s["b"]] - ends[&s["c"]]).abs())
        .collect();
    gaps.sort_by(f64::total_cmp);
    assert!(
        together > 0,
        "no diamond had b and c end together; gaps {:?}",
        &gaps[..gaps.len().min(10)]
    );
    eprintln!(
        "fault-report scenario=workflow-join-race workflows={} joins_executed_once={} b_c_within_100ms={together}",
        diamonds.len(),
        d_runs.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_survive_workers_killed_mid_flight() {
    let db = TestDb::new().await;
    let rec = Recorder::new("faults-wf-kill9", "");
    let diamonds = submit_diamonds(&db.pool, 200, 0.4).await;
    let env = [("WORKER_CONCURRENCY", "16"), ("WORKER_QUEUES", "q,q2")];
    let mut workers: Vec<Proc> = (0..3).map(|_| worker(&rec, &db.url, &env)).collect();
    let mut kills = 0;
    for round in 0..4 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let victim = workers.remove(round % workers.len());
        victim.kill9();
        kills += 1;
        workers.push(worker(&rec, &db.url, &env));
    }
    drained(&db.pool, Duration::from_secs(180)).await;
    stop_all(workers, Duration::from_secs(40));
    let d_runs = verify_diamonds(&rec, &db.pool, &diamonds).await;
    eprintln!(
        "fault-report scenario=workflow-kill-9 workflows={} kills={kills} executions={} d_reruns={}",
        diamonds.len(),
        rec.starts().len(),
        d_runs.values().map(|n| n - 1).sum::<usize>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_survive_a_postgres_immediate_restart() {
    let pg = PrivateCluster::start("faults-wf-restart", Durability::Durable).await;
    let pool = pg.migrated_pool(4).await;
    let rec = Recorder::new("faults-wf-restart", "");
    let diamonds = submit_diamonds(&pool, 200, 0.2).await;
    let env = [("WORKER_CONCURRENCY", "16"), ("WORKER_QUEUES", "q,q2")];
    let workers: Vec<Proc> = (0..2).map(|_| worker(&rec, &pg.url(), &env)).collect();
    eventually(Duration::from_secs(60), "workflows under way", || async {
        (rec.ends().len() >= 200).then_some(())
    })
    .await;
    let cluster = pg.pg.clone();
    tokio::task::spawn_blocking(move || cluster.restart_mode("immediate"))
        .await
        .expect("join")
        .expect("pg_ctl restart");
    drained(&pool, Duration::from_secs(180)).await;
    stop_all(workers, Duration::from_secs(40));
    let d_runs = verify_diamonds(&rec, &pool, &diamonds).await;
    eprintln!(
        "fault-report scenario=workflow-pg-restart-immediate workflows={} executions={} d_reruns={}",
        diamonds.len(),
        rec.starts().len(),
        d_runs.values().map(|n| n - 1).sum::<usize>()
    );
}
