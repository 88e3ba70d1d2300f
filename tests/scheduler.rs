//! The scheduler with real processes: several replicas, misfires across a restart;
//! and its store-level behaviours (overlap, trigger, retention, declared schedules).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::procs::{self, Proc, assert_success};
use common::{TestDb, binary, schedules};
use uuid::Uuid;

fn run_cli(db: &TestDb, args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("LOG_LEVEL", "warn")
        .output()
        .unwrap()
}

/// Creates schedule `name` firing every second (queue `q`, kind `k`) through the CLI.
fn every_second_schedule(db: &TestDb, name: &str) {
    let args = [
        "schedules",
        "create",
        "--name",
        name,
        "--cron",
        "* * * * * *",
    ];
    let out = run_cli(db, &[&args[..], &["--queue", "q", "--kind", "k"]].concat());
    assert_success(&out);
}

fn spawn_scheduler(db: &TestDb, env: &[(&str, &str)]) -> Proc {
    procs::ordinaut(Path::new(env!("CARGO_TARGET_TMPDIR")), &["scheduler"])
        .env("DATABASE_URL", &db.url)
        .env("LOG_LEVEL", "info")
        .envs(env.iter().copied())
        .start()
}

async fn fire_times(db: &TestDb) -> Vec<DateTime<Utc>> {
    db.column(
        "SELECT scheduled_for FROM due_work WHERE schedule_id IS NOT NULL ORDER BY scheduled_for",
    )
    .await
}

#[tokio::test]
async fn three_schedulers_fire_every_second_exactly_once() {
    let db = TestDb::new().await;
    every_second_schedule(&db, "tick");
    let procs: Vec<Proc> = (0..3).map(|_| spawn_scheduler(&db, &[])).collect();
    tokio::time::sleep(Duration::from_secs(21)).await;
    for p in procs {
        p.stop();
    }
    let fires = fire_times(&db).await;
    assert!(fires.len() >= 19, "only {} fires in ~21 s", fires.len());
    for pair in fires.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_milliseconds(),
            1000,
            "a gap or a double fire between {} and {}",
            pair[0],
            pair[1]
        );
    }
    assert_eq!(
        db.count("schedule_fires WHERE outcome = 'enqueued'").await as usize,
        fires.len()
    );
}

#[tokio::test]
async fn a_scheduler_down_past_the_grace_skips_and_records_missed_fires() {
    let db = TestDb::new().await;
    every_second_schedule(&db, "tick");
    let env = [("SCHEDULER_MISFIRE_GRACE_TIME", "1")];
    let first = spawn_scheduler(&db, &env);
    tokio::time::sleep(Duration::from_secs(3)).await;
    first.stop();
    let stopped_at = Utc::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let restarted_at = Utc::now();
    let second = spawn_scheduler(&db, &env);
    tokio::time::sleep(Duration::from_secs(4)).await;
    second.stop();
    let fires = fire_times(&db).await;
    // Nothing was replayed from the outage beyond the grace window...
    let replayed = fires
        .iter()
        .filter(|f| **f > stopped_at && **f < restarted_at - chrono::Duration::milliseconds(1500))
        .count();
    assert_eq!(
        replayed, 0,
        "fires from the outage were replayed: {fires:?}"
    );
    // ...the skip is recorded...
    let skipped: i64 = db.scalar_i64("SELECT coalesce(sum(skipped), 0)::int8 FROM schedule_fires WHERE outcome = 'skipped_misfire'").await;
    assert!(skipped >= 3, "only {skipped} missed fires recorded");
    // ...and firing resumed on time, every second.
    let after: Vec<&DateTime<Utc>> = fires.iter().filter(|f| **f >= restarted_at).collect();
    assert!(after.len() >= 3, "after restart: {after:?}");
    for pair in after.windows(2) {
        assert_eq!((*pair[1] - *pair[0]).num_milliseconds(), 1000);
    }
}

async fn create(db: &TestDb, name: &str, cron: &str, overlap: &str) -> Uuid {
    let mut input = schedules::schedule(name, cron, "q", "k");
    input.overlap = Some(overlap.into());
    schedules::save(&db.pool, &input).await
}

fn firer(db: &TestDb) -> ordinaut::scheduler::Firer {
    ordinaut::scheduler::Firer::new(
        db.pool.clone(),
        ordinaut::scheduler::fire_options(&ordinaut::config::Config::default()),
    )
}

#[tokio::test]
async fn overlap_skip_waits_for_the_previous_job() {
    let db = TestDb::new().await;
    let id = create(&db, "nightly", "0 3 * * *", "skip").await;
    let due = "UPDATE schedules SET next_run_at = now() - interval '1 second'";
    sqlx::query(due).execute(&db.pool).await.unwrap();
    assert_eq!(firer(&db).run_once().await.unwrap().enqueued, 1);
    sqlx::query(due).execute(&db.pool).await.unwrap();
    let r = firer(&db).run_once().await.unwrap();
    assert_eq!((r.enqueued, r.overlapped), (0, 1));
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM due_work WHERE schedule_id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 1);
    let next: DateTime<Utc> = sqlx::query_scalar("SELECT next_run_at FROM schedules")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(next > Utc::now(), "advanced past the skipped fire");
}

#[tokio::test]
async fn trigger_now_enqueues_without_moving_the_cadence() {
    let db = TestDb::new().await;
    create(&db, "report", "0 9 * * 1", "allow").await;
    let before: DateTime<Utc> = sqlx::query_scalar("SELECT next_run_at FROM schedules")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_success(&run_cli(&db, &["schedules", "trigger", "report"]));
    db.assert_rows(
        "due_work WHERE schedule_id IS NOT NULL AND scheduled_for IS NOT NULL",
        1,
    )
    .await;
    let after: DateTime<Utc> = sqlx::query_scalar("SELECT next_run_at FROM schedules")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(before, after);
    db.assert_rows("schedule_fires WHERE outcome = 'triggered'", 1)
        .await;
}

#[tokio::test]
async fn schedule_cli_refuses_bad_input_naming_the_problem() {
    let db = TestDb::new().await;
    // A valid schedule, to which each case adds one bad option.
    let daily: &[&str] = &["--cron", "@daily", "--queue", "q", "--kind", "k"];
    for (args, expected) in [
        (
            vec!["--cron", "61 * * * *", "--queue", "q", "--kind", "k"],
            "cron",
        ),
        (
            vec!["--cron", "* * *", "--queue", "q", "--kind", "k"],
            "3 fields",
        ),
        (
            vec![
                "--cron",
                "@daily",
                "--tz",
                "Mars/Olympus",
                "--queue",
                "q",
                "--kind",
                "k",
            ],
            "Mars/Olympus",
        ),
        (
            vec!["--cron", "@daily", "--queue", "bad queue", "--kind", "k"],
            "queue",
        ),
        ([daily, &["--overlap", "sometimes"]].concat(), "overlap"),
        ([daily, &["--payload", "{nope"]].concat(), "--payload"),
    ] {
        let mut all = vec!["schedules", "create", "--name", "s"];
        all.extend(args.iter().copied());
        let out = run_cli(&db, &all);
        assert!(!out.status.success(), "{all:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{all:?}: {err}");
    }
    db.assert_rows("schedules", 0).await;
    let missing = run_cli(&db, &["schedules", "pause", "nope"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
}

#[tokio::test]
async fn declared_schedules_follow_the_file() {
    let db = TestDb::new().await;
    let mut config = ordinaut::config::Config::default();
    let declared = |cron: &str| ordinaut::scheduler::ScheduleInput {
        timezone: Some("Europe/Berlin".into()),
        payload: Some(serde_json::json!({"report": "daily"})),
        ..schedules::declared(cron, "q", "k")
    };
    config.schedules.insert("a".into(), declared("@daily"));
    config.schedules.insert("b".into(), declared("0 * * * *"));
    ordinaut::scheduler::sync_declared(&db.pool, &config)
        .await
        .unwrap();
    create(&db, "by-hand", "@hourly", "allow").await;
    db.assert_rows("schedules WHERE declared", 2).await;
    config.schedules.remove("b");
    config.schedules.insert("a".into(), declared("@weekly"));
    ordinaut::scheduler::sync_declared(&db.pool, &config)
        .await
        .unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, cron FROM schedules ORDER BY name")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![
            ("a".into(), "@weekly".into()),
            ("by-hand".into(), "@hourly".into())
        ]
    );
}

#[tokio::test]
async fn retention_drops_old_partitions_and_keeps_recent_ones() {
    let db = TestDb::new().await;
    // A first pass creates the days ahead that a template migrated on an earlier date
    // lacks, so the second pass below only drops.
    schedules::retention_pass(&db.pool).await;
    db.exec("SELECT ordinaut_ensure_partitions(current_date - 40, current_date - 38)")
        .await;
    let count =
        "SELECT count(*) FROM pg_class WHERE relname ~ '^job_(history|attempts)_p[0-9]{8}$'";
    let before = db.scalar_i64(count).await;
    let dropped = schedules::retention_pass(&db.pool).await.dropped;
    assert_eq!(dropped, 6, "three old days of two tables");
    assert_eq!(db.scalar_i64(count).await, before - 6);
    let recent = "SELECT count(*) FROM pg_class WHERE relname = 'job_history_p' || to_char(current_date, 'YYYYMMDD')";
    assert_eq!(db.scalar_i64(recent).await, 1);
}

#[tokio::test]
async fn a_scheduler_started_without_its_file_leaves_declared_schedules_alone() {
    let db = TestDb::new().await;
    schedules::declare_nightly(&db.pool, "q", "k").await;
    // A per-second schedule made by hand: once the scheduler fires it, its start-up
    // sync of declared schedules is over.
    every_second_schedule(&db, "beat");
    // Its working directory holds no ordinaut.toml.
    let scheduler = spawn_scheduler(&db, &[]);
    common::eventually(
        Duration::from_secs(30),
        "the scheduler to fire the per-second schedule",
        || async { (!fire_times(&db).await.is_empty()).then_some(()) },
    )
    .await;
    scheduler.stop();
    assert_eq!(
        db.count("schedules WHERE declared AND name = 'nightly'")
            .await,
        1,
        "the declared schedule survived a scheduler without the file"
    );
}

/// libfaketime (Debian's `faketime` package), which shifts a process's clock.
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

#[tokio::test]
async fn a_scheduler_whose_clock_runs_ahead_fires_nothing_early() {
    assert!(
        std::path::Path::new(FAKETIME_LIB).exists(),
        "{FAKETIME_LIB} is missing: apt-get install faketime (.ci/run installs it)"
    );
    let db = TestDb::new().await;
    every_second_schedule(&db, "beat");
    // The scheduler's host clock is 30 s ahead of the database's (timers, which use the
    // monotonic clock, are left alone).
    let scheduler = spawn_scheduler(
        &db,
        &[
            ("LD_PRELOAD", FAKETIME_LIB),
            ("FAKETIME", "+30s"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("FAKETIME_DONT_RESET", "1"),
        ],
    );
    common::eventually(Duration::from_secs(30), "three fires", || async {
        (fire_times(&db).await.len() >= 3).then_some(())
    })
    .await;
    scheduler.stop();
    let early = db
        .count("due_work WHERE schedule_id IS NOT NULL AND created_at < scheduled_for")
        .await;
    assert_eq!(early, 0, "jobs were enqueued before their fire time");
}

/// `ordinaut healthcheck --scheduler` as the container probe runs it, beside a scheduler
/// writing its heartbeat to `file`.
fn scheduler_probe(db: &TestDb, file: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(binary())
        .args(["healthcheck", "--scheduler", "--max-age", "3s"])
        .env("DATABASE_URL", &db.url)
        .env("SCHEDULER_HEARTBEAT_FILE", file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test]
async fn the_scheduler_health_check_fails_while_its_fire_loop_is_stopped() {
    let db = TestDb::new().await;
    let file =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("heartbeat-{}", Uuid::now_v7()));
    let (code, text) = scheduler_probe(&db, &file);
    assert_eq!(code, Some(1), "no scheduler yet: {text}");
    assert!(text.contains("no scheduler heartbeat"), "{text}");

    let scheduler = spawn_scheduler(&db, &[("SCHEDULER_HEARTBEAT_FILE", file.to_str().unwrap())]);
    let healthy = common::eventually(Duration::from_secs(60), "a healthy scheduler", || async {
        let (code, text) = scheduler_probe(&db, &file);
        (code == Some(0)).then_some(text)
    })
    .await;
    assert!(healthy.contains("scheduler ticked"), "{healthy}");

    // SIGSTOP freezes the loop while the process and Postgres stay up: only the
    // heartbeat can tell.
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(scheduler.pid(), libc::SIGSTOP);
    }
    let stale = common::eventually(
        Duration::from_secs(60),
        "an unhealthy scheduler",
        || async {
            let (code, text) = scheduler_probe(&db, &file);
            (code == Some(1)).then_some(text)
        },
    )
    .await;
    assert!(stale.contains("fire loop has stopped"), "{stale}");
    assert_eq!(stale.lines().count(), 1, "{stale}");

    // SAFETY: as above.
    unsafe {
        libc::kill(scheduler.pid(), libc::SIGCONT);
    }
    common::eventually(Duration::from_secs(60), "healthy again", || async {
        (scheduler_probe(&db, &file).0 == Some(0)).then_some(())
    })
    .await;
    scheduler.stop();
    let _ = std::fs::remove_file(&file);
}

/// Under systemd (`Type=notify`, `WatchdogSec=`) the fire loop reports readiness once
/// and pings the watchdog as it ticks: a stand-in for systemd's notify socket receives
/// both from a real scheduler, and the pings resume after the loop was frozen.
#[tokio::test]
async fn the_scheduler_notifies_systemd_ready_and_pings_the_watchdog() {
    let db = TestDb::new().await;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let socket_path = dir.join(format!("notify-{}.sock", Uuid::now_v7()));
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let heartbeat = dir.join(format!("heartbeat-{}", Uuid::now_v7()));
    let scheduler = spawn_scheduler(
        &db,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("SCHEDULER_HEARTBEAT_FILE", heartbeat.to_str().unwrap()),
        ],
    );
    let recv = || {
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).expect("a notification within 60 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(recv(), "READY=1");
    assert_eq!(recv(), "WATCHDOG=1");
    assert_eq!(recv(), "WATCHDOG=1", "pings go on while the loop ticks");
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(scheduler.pid(), libc::SIGSTOP);
        libc::kill(scheduler.pid(), libc::SIGCONT);
    }
    assert_eq!(recv(), "WATCHDOG=1", "pings resume with the loop");
    scheduler.stop();
    let _ = std::fs::remove_file(&socket_path);
    let _ = std::fs::remove_file(&heartbeat);
}
