//! The pg_auto_failover scenario of issue 21, with real processes: a pg_auto_failover
//! monitor and two Postgres nodes run by Debian's `pg_autoctl` (as `nobody` when root),
//! an api, a scheduler and two workers on the multi-host URL, 2,000 `command` jobs that
//! record their executions (`tests/common/recorder.rs`) and a per-second schedule, while
//! `pg_autoctl perform failover` moves the primary to the other node mid-drain and back.
//!
//! Asserted: no job lost, every job terminal, no job executed twice at the same time,
//! work resumes within 10 s of each promotion, the schedule fires every second outside
//! the failover windows (inside them each second is enqueued or counted by the misfire
//! rules), fewer than 200 log lines per process, and every process exits 0 on SIGTERM.
//! It prints one `fault-report` line with its figures (docs/RELIABILITY.md).

mod common;

use std::collections::{BTreeSet, HashSet};
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::eventually;
use common::http::free_port;
use common::procs::{self, Proc, spawn};
use common::recorder::{Recorder, epoch_now};
use ordinaut::db::due_work::{self, NewJob};
use ordinaut::db::{self, DbConfig};
use serde_json::json;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// uid/gid the cluster runs as when the test runs as root (Postgres refuses root).
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The directory of the server binaries, symlinks resolved: pg_autoctl looks for
/// `pg_controldata` and friends beside the `pg_ctl` it runs.
fn autoctl_bin() -> PathBuf {
    let pg_bin = ordinaut::pg_local::find_bin_dir().expect("PostgreSQL server binaries");
    let pg_ctl = pg_bin
        .join("pg_ctl")
        .canonicalize()
        .expect("resolve pg_ctl");
    pg_ctl.parent().expect("pg_ctl has a directory").to_owned()
}

/// `pg_autoctl`: beside the server binaries, else on PATH (Debian's
/// pg-auto-failover-cli puts it in /usr/bin).
fn autoctl_path() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(autoctl_bin())
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join("pg_autoctl"))
        .find(|p| p.is_file())
        .expect("pg_autoctl not found: install Debian's postgresql-15-auto-failover (it brings pg-auto-failover-cli)")
}

/// A pg_auto_failover formation: a monitor and two nodes, each under `pg_autoctl run`.
struct Formation {
    base: PathBuf,
    monitor_port: u16,
    ports: [u16; 2],
    runs: Vec<(String, Child)>,
}

impl Formation {
    fn dir(&self, name: &str) -> PathBuf {
        self.base.join(name)
    }

    /// `program` as the cluster's user, with its state (XDG dirs), HOME and Unix
    /// sockets inside `base`: Debian's default socket directory is root's.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        if is_root() {
            cmd.uid(NOBODY).gid(NOBODY);
        }
        let b = &self.base;
        cmd.env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", autoctl_bin().display()))
            .env("HOME", b.join("home"))
            .env("XDG_CONFIG_HOME", b.join("config"))
            .env("XDG_DATA_HOME", b.join("data"))
            .env("XDG_RUNTIME_DIR", b.join("run"))
            .env("PGHOST", b.join("sock"))
            .env("PGUSER", "postgres")
            .current_dir(b)
            .stdin(Stdio::null());
        cmd
    }

    fn autoctl(&self, args: &[&str]) -> Command {
        let mut cmd = self.command(&autoctl_path());
        cmd.args(args);
        if args.first() == Some(&"create") {
            cmd.arg("--pgctl").arg(autoctl_bin().join("pg_ctl"));
        }
        cmd
    }

    /// Runs a setup step; its output goes to `<step>.log` and is shown if it fails.
    fn run(&self, step: &str, mut cmd: Command) -> bool {
        let log = self.base.join(format!("{step}.log"));
        let file = std::fs::File::create(&log).expect("create step log");
        let _ = chown(&log, Some(NOBODY), Some(NOBODY));
        let status = cmd
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file)
            .status()
            .expect("run a pg_autoctl step");
        if !status.success() {
            eprintln!(
                "{step} failed ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        status.success()
    }

    /// `initdb` with sockets in `base/sock` (pg_autoctl then reuses the data directory).
    fn initdb(&self, name: &str) {
        let mut cmd = self.command(&autoctl_bin().join("initdb"));
        cmd.args(["-D", &self.dir(name).display().to_string()])
            .args(["-U", "postgres", "-A", "trust", "--no-sync"]);
        assert!(self.run(&format!("initdb-{name}"), cmd), "initdb {name}");
        let conf = self.dir(name).join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
        text.push_str(&format!(
            "\nunix_socket_directories = '{}'\nfsync = off\nfull_page_writes = off\nmax_connections = 200\n",
            self.base.join("sock").display()
        ));
        std::fs::write(&conf, text).expect("write postgresql.conf");
    }

    /// `pg_autoctl create ...`, retried: a node's registration can race the monitor's
    /// first state assignment, and pg_autoctl continues an interrupted create.
    fn create(&self, name: &str, args: &[&str]) {
        for attempt in 0..3 {
            if self.run(&format!("create-{name}-{attempt}"), self.autoctl(args)) {
                return;
            }
        }
        panic!("pg_autoctl create {name} failed three times");
    }

    /// `pg_autoctl run` for `name` in the background.
    fn start(&mut self, name: &str) {
        let log = self.base.join(format!("run-{name}.log"));
        let file = std::fs::File::create(&log).expect("create run log");
        let pgdata = self.dir(name).display().to_string();
        let child = self
            .autoctl(&["run", "--pgdata", &pgdata])
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file)
            .spawn()
            .expect("spawn pg_autoctl run");
        self.runs.push((name.to_owned(), child));
    }

    fn monitor_uri(&self) -> String {
        format!(
            "postgres://autoctl_node@127.0.0.1:{}/pg_auto_failover?sslmode=disable",
            self.monitor_port
        )
    }

    /// Monitor and two nodes, node1 primary, node2 its streaming secondary.
    async fn start_all(name: &str) -> Formation {
        let base = PathBuf::from("/tmp").join(format!("{name}-{}", Uuid::now_v7()));
        for sub in ["home", "config", "data", "run", "sock"] {
            std::fs::create_dir_all(base.join(sub)).expect("create formation dirs");
        }
        if is_root() {
            for d in ["", "home", "config", "data", "run", "sock"] {
                chown(base.join(d), Some(NOBODY), Some(NOBODY)).expect("chown to nobody");
            }
        }
        let mut f = Formation {
            base,
            monitor_port: free_port(),
            ports: [free_port(), free_port()],
            runs: Vec::new(),
        };
        let f = tokio::task::spawn_blocking(move || {
            f.initdb("monitor");
            let (mon_dir, mon_port) = (f.dir("monitor").display().to_string(), f.monitor_port);
            f.create(
                "monitor",
                &[
                    "create",
                    "monitor",
                    "--pgdata",
                    &mon_dir,
                    "--pgport",
                    &mon_port.to_string(),
                    "--hostname",
                    "127.0.0.1",
                    "--auth",
                    "trust",
                    "--no-ssl",
                ],
            );
            f.start("monitor");
            f.initdb("node1");
            for (i, node) in ["node1", "node2"].into_iter().enumerate() {
                let (dir, port, mon) = (
                    f.dir(node).display().to_string(),
                    f.ports[i].to_string(),
                    f.monitor_uri(),
                );
                f.create(
                    node,
                    &[
                        "create",
                        "postgres",
                        "--pgdata",
                        &dir,
                        "--pgport",
                        &port,
                        "--hostname",
                        "127.0.0.1",
                        "--name",
                        node,
                        "--auth",
                        "trust",
                        "--no-ssl",
                        "--monitor",
                        &mon,
                    ],
                );
                f.start(node);
            }
            f
        })
        .await
        .expect("join formation setup");
        f.settled("node1").await;
        f
    }

    async fn monitor(&self) -> Option<PgConnection> {
        PgConnection::connect(&format!(
            "postgres://postgres@127.0.0.1:{}/pg_auto_failover",
            self.monitor_port
        ))
        .await
        .ok()
    }

    /// Waits until the monitor sees `primary` as primary and the other node as its
    /// secondary, both having reached their assigned state.
    async fn settled(&self, primary: &str) {
        eventually(Duration::from_secs(120), "formation settled", || async {
            let mut m = self.monitor().await?;
            let rows: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT nodename, reportedstate::text, goalstate::text FROM pgautofailover.node",
            )
            .fetch_all(&mut m)
            .await
            .ok()?;
            let ok = rows.len() == 2
                && rows.iter().all(|(name, reported, goal)| {
                    let want = if name == primary {
                        "primary"
                    } else {
                        "secondary"
                    };
                    reported == want && goal == want
                });
            ok.then_some(())
        })
        .await;
    }

    fn url(&self, node: usize) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{}/postgres",
            self.ports[node]
        )
    }

    /// `pg_autoctl perform failover` from node `from` to the other one; returns
    /// (when it started, when the target first answered as writable). Both epoch secs.
    async fn fail_over(&self, from: usize) -> (f64, f64) {
        let to = 1 - from;
        let started = epoch_now();
        let mut perform = self.autoctl(&[
            "perform",
            "failover",
            "--pgdata",
            &self.dir("monitor").display().to_string(),
            "--wait",
            "120",
        ]);
        let step = format!("perform-failover-to-node{}", to + 1);
        let base = self.base.clone();
        let handle = tokio::task::spawn_blocking(move || {
            let log = base.join(format!("{step}.log"));
            let out = perform.output().expect("run pg_autoctl perform failover");
            let _ = std::fs::write(&log, [out.stdout, out.stderr].concat());
            out.status.success()
        });
        let url = self.url(to);
        let promoted = eventually(Duration::from_secs(120), "target promoted", || async {
            let mut c = PgConnection::connect(&url).await.ok()?;
            let recovering: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                .fetch_one(&mut c)
                .await
                .ok()?;
            (!recovering).then(epoch_now)
        })
        .await;
        assert!(
            handle.await.expect("join perform"),
            "pg_autoctl perform failover failed"
        );
        (started, promoted)
    }
}

impl Drop for Formation {
    fn drop(&mut self) {
        // Nodes first, then the monitor: SIGINT is pg_autoctl's fast shutdown.
        for (_, child) in self.runs.iter().rev() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        }
        let mut runs = std::mem::take(&mut self.runs);
        for (name, child) in runs.iter_mut().rev() {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
                let pg_ctl = autoctl_bin().join("pg_ctl");
                let _ = self
                    .command(&pg_ctl)
                    .args(["stop", "-m", "immediate", "-D"])
                    .arg(self.dir(name.as_str()))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

fn cfg(url: &str) -> DbConfig {
    common::cluster::db_config(url, 4)
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .map_err(db::Error::from)
        .unwrap_or(-1)
}

/// Epoch seconds of the first job finished after `after` (by the database's clock).
async fn first_finish_after(pool: &PgPool, after: f64) -> Option<f64> {
    let finished: f64 = sqlx::query_scalar(
        "SELECT coalesce(extract(epoch FROM min(finished_at))::float8, 0) FROM job_history
         WHERE finished_at > to_timestamp($1)",
    )
    .bind(after)
    .fetch_one(pool)
    .await
    .map_err(db::Error::from)
    .ok()?;
    (finished > 0.0).then_some(finished)
}

/// SIGTERM; the process must exit 0 within `grace` and have logged fewer than 200 lines
/// over the whole test, its shutdown included. Returns its line count.
fn stop(p: Proc, name: &str, grace: Duration) -> usize {
    let log = p.log.clone();
    p.signal(libc::SIGTERM);
    assert_eq!(
        p.wait(grace),
        Some(0),
        "{name} exits on SIGTERM within its grace"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines = text.lines().count();
    assert!(lines < 200, "{name}: {lines} lines\n{text}");
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_auto_failover_there_and_back_mid_drain_loses_nothing_and_keeps_the_schedule() {
    let test_start = std::time::Instant::now();
    let formation = Formation::start_all("paf").await;
    let [p1, p2] = formation.ports;
    let url = format!(
        "postgresql://postgres@127.0.0.1:{p1},127.0.0.1:{p2}/postgres?target_session_attrs=read-write"
    );
    db::migrate(&cfg(&url)).await.expect("migrate");
    let pool = cfg(&url).connect().await.expect("connect");
    let rec = Recorder::new("paf", "");

    // The per-second schedule, on its own queue (which the workers also serve). Misfire
    // grace 2 s: a fire later than that is counted as missed, not run late.
    let out = Command::new(common::binary())
        .args([
            "schedules",
            "create",
            "--name",
            "tick",
            "--cron",
            "* * * * * *",
        ])
        .args(["--queue", "ticks", "--kind", "rec"])
        .current_dir(&rec.dir)
        .env("DATABASE_URL", &url)
        .output()
        .expect("run schedules create");
    procs::assert_success(&out);

    const JOBS: usize = 2000;
    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|_| {
            let mut j = NewJob::new("q", "rec", json!({ "sleep": 0.25 }));
            j.max_attempts = Some(50);
            j
        })
        .collect();
    due_work::enqueue_many(&pool, &jobs, 4)
        .await
        .expect("enqueue");
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();

    let api_port = free_port().to_string();
    let worker_env = [("WORKER_CONCURRENCY", "4"), ("WORKER_QUEUES", "q,ticks")];
    let api = spawn(&rec.dir, &url, &["api"], &[("API_PORT", &api_port)]);
    let scheduler = spawn(
        &rec.dir,
        &url,
        &["scheduler"],
        &[("SCHEDULER_MISFIRE_GRACE_TIME", "2")],
    );
    let workers: Vec<Proc> = (0..2)
        .map(|_| spawn(&rec.dir, &url, &["worker"], &worker_env))
        .collect();
    let schedule_from = epoch_now();

    let done = |pool: PgPool| async move {
        count(
            &pool,
            "SELECT count(*) FROM job_history WHERE state = 'completed' AND queue = 'q'",
        )
        .await
    };
    eventually(Duration::from_secs(180), "a fifth drained", || async {
        (done(pool.clone()).await >= (JOBS / 5) as i64).then_some(())
    })
    .await;

    // There (node1 -> node2) and back (node2 -> node1), each mid-drain.
    let mut switches = Vec::new();
    for from in [0, 1] {
        let left = JOBS as i64 - done(pool.clone()).await;
        assert!(left > 0, "the drain ended before failover {}", from + 1);
        let (started, promoted) = formation.fail_over(from).await;
        let resumed = eventually(Duration::from_secs(60), "work resumes", || async {
            first_finish_after(&pool, promoted).await
        })
        .await;
        eprintln!(
            "failover {}: promoted {:.1} s after perform started, work resumed {:.2} s after the promotion",
            from + 1,
            promoted - started,
            resumed - promoted
        );
        switches.push((started, promoted, resumed, left));
        formation
            .settled(if from == 0 { "node2" } else { "node1" })
            .await;
    }
    let left_at_failback = switches[1].3;

    eventually(Duration::from_secs(300), "every job completed", || async {
        (done(pool.clone()).await >= JOBS as i64).then_some(())
    })
    .await;
    // The api followed the primary too: ready (it checks for a writable primary).
    let ready = format!("http://127.0.0.1:{api_port}/ready");
    eventually(Duration::from_secs(30), "api ready", || async {
        let r = reqwest::get(&ready).await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    // The scheduler stops first (so its jobs are the last), then the rest drains.
    let schedule_to = epoch_now();
    let mut exits = Vec::new();
    let lines = stop(scheduler, "scheduler", Duration::from_secs(30));
    exits.push(("scheduler", lines));
    eventually(Duration::from_secs(120), "every job terminal", || async {
        (count(&pool, "SELECT count(*) FROM due_work").await == 0).then_some(())
    })
    .await;

    // No job lost; each of them finished once; none ran twice at the same time.
    let completed: HashSet<Uuid> =
        sqlx::query_scalar("SELECT id FROM job_history WHERE state = 'completed' AND queue = 'q'")
            .fetch_all(&pool)
            .await
            .expect("read history")
            .into_iter()
            .collect();
    let missing = ids.iter().filter(|id| !completed.contains(id)).count();
    assert_eq!(missing, 0, "{missing} of {JOBS} jobs not completed");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM job_history WHERE queue = 'q'").await,
        JOBS as i64,
        "each job finished once"
    );
    let overlaps = rec.overlaps();
    assert!(
        overlaps.is_empty(),
        "executed twice at the same time: {overlaps:?}"
    );
    let by_job = rec.executions_by_job();
    assert!(
        ids.iter().all(|id| by_job.contains_key(id)),
        "a job completed without running"
    );
    let executions: usize = ids.iter().map(|id| by_job[id]).sum();
    let ticks_failed = count(
        &pool,
        "SELECT count(*) FROM job_history WHERE queue = 'ticks' AND state <> 'completed'",
    )
    .await;
    assert_eq!(ticks_failed, 0, "every scheduled job completed");

    // Work resumed within 10 s of each promotion.
    for (i, (_, promoted, resumed, _)) in switches.iter().enumerate() {
        assert!(
            resumed - promoted < 10.0,
            "failover {}: work resumed {:.1} s after the promotion",
            i + 1,
            resumed - promoted
        );
    }

    // The schedule: every whole second from its start to the scheduler's stop is one
    // fire, enqueued or counted missed; outside the failover windows (perform started
    // to 10 s after the promotion) every one was enqueued.
    let fires: Vec<(f64, String, i32, f64)> = sqlx::query_as(
        "SELECT extract(epoch FROM fire_time)::float8, outcome, skipped,
                extract(epoch FROM recorded_at - fire_time)::float8
         FROM schedule_fires ORDER BY fire_time",
    )
    .fetch_all(&pool)
    .await
    .expect("read fires");
    let mut enqueued = BTreeSet::new();
    let mut missed = BTreeSet::new();
    let mut lateness = std::collections::HashMap::new();
    for (at, outcome, skipped, late) in &fires {
        let s = at.round() as i64;
        if outcome == "enqueued" {
            // For the report: how late each fire was enqueued.
            lateness.insert(s, *late);
        }
        match outcome.as_str() {
            "enqueued" => {
                assert!(enqueued.insert(s), "two fires for second {s}");
            }
            "skipped_misfire" => missed.extend(s..s + i64::from((*skipped).max(1))),
            other => panic!("unexpected fire outcome {other}"),
        }
    }
    let (from, to) = (
        schedule_from.ceil() as i64 + 1,
        schedule_to.floor() as i64 - 1,
    );
    let in_window = |s: i64| {
        switches.iter().any(|(started, promoted, _, _)| {
            (s as f64) >= started - 1.0 && (s as f64) <= promoted + 10.0
        })
    };
    let mut late_or_missed_outside = Vec::new();
    for s in from..=to {
        let covered = enqueued.contains(&s) || missed.contains(&s);
        assert!(covered, "second {s} neither fired nor counted missed");
        if !in_window(s) && !enqueued.contains(&s) {
            late_or_missed_outside.push(s);
        }
    }
    assert!(
        late_or_missed_outside.is_empty(),
        "the schedule missed seconds outside the failover windows: {late_or_missed_outside:?}"
    );
    assert!(
        missed.is_disjoint(&enqueued),
        "a second both fired and counted missed"
    );
    let max_late_outside = (from..=to)
        .filter(|s| !in_window(*s))
        .filter_map(|s| lateness.get(&s).copied())
        .fold(0.0_f64, f64::max);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM job_history WHERE queue = 'ticks'"
        )
        .await,
        enqueued.len() as i64,
        "each enqueued fire's job finished once"
    );

    for (name, p) in [("api", api)]
        .into_iter()
        .chain(workers.into_iter().map(|w| ("worker", w)))
    {
        let lines = stop(p, name, Duration::from_secs(40));
        exits.push((name, lines));
    }
    let max_lines = exits.iter().map(|e| e.1).max().unwrap_or(0);
    let fmt = |i: usize, f: fn(&(f64, f64, f64, i64)) -> f64| format!("{:.2}", f(&switches[i]));
    eprintln!(
        "fault-report scenario=pg-auto-failover jobs={JOBS} executions={executions} reruns={} \
         failover1_seconds_to_promotion={} failover1_seconds_to_resume={} \
         failover2_seconds_to_promotion={} failover2_seconds_to_resume={} \
         jobs_left_at_failback={left_at_failback} fires_enqueued={} fires_missed={} \
         max_fire_lateness_outside_failover_seconds={max_late_outside:.2} \
         max_log_lines={max_lines} total_seconds={:.0}",
        executions - JOBS,
        fmt(0, |s| s.1 - s.0),
        fmt(0, |s| s.2 - s.1),
        fmt(1, |s| s.1 - s.0),
        fmt(1, |s| s.2 - s.1),
        enqueued.len(),
        missed.len(),
        test_start.elapsed().as_secs_f64()
    );
    pool.close().await;
}
