//! `ordinaut bench`: measures the real binary on a real Postgres.
//!
//! Workers are the real `ordinaut worker` processes (this executable, re-spawned) and
//! enqueues go through the real `enqueue_many`; the bench only times them and reads
//! the results from the tables. Speed claims in comments and docs cite these figures.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use sqlx::PgPool;

use crate::db::bench::Latency;
use crate::db::{self, DbConfig, due_work, due_work::NewJob};
use crate::pg_local::{LocalPg, StartOptions};

mod ui;
mod workflows;

/// The queue every scenario uses.
const QUEUE: &str = "bench";

/// Which scenario to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Enqueue N no-op jobs, then drain them with one (or K) worker processes.
    BurnDown,
    /// Idle workers; single enqueues at a fixed rate; enqueue-to-start latency.
    Latency,
    /// Jobs of a `command` kind running `true`: the cost of a process per job.
    Command,
    /// Producers and workers together for `--seconds` at `--target-rate`.
    Sustained,
    /// Sustained, with `--history` finished jobs present and a REPEATABLE READ
    /// transaction held open through the middle third.
    Bloat,
    /// `--count` diamond workflows at `--target-rate` per second, then a fan-out/fan-in
    /// of 1,000 steps: workflows/s, activation latency, WAL per workflow.
    Workflows,
    /// The dashboard's reads (jobs list, filters, searches, overview) with `--history`
    /// finished (default 10,000,000) and `--live` waiting jobs: server time.
    Ui,
}

/// Options of `ordinaut bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Scenario.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Jobs to enqueue (burn-down, command).
    #[arg(long, default_value_t = 100_000)]
    pub jobs: usize,
    /// Concurrency of each worker process.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Enqueues per second (latency).
    #[arg(long, default_value_t = 50)]
    pub rate: u32,
    /// Single enqueues to send (latency); workflows to submit (workflows).
    #[arg(long, default_value_t = 500)]
    pub count: usize,
    /// Repetitions; the median is reported.
    #[arg(long, default_value_t = 1)]
    pub reps: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Duration of the sustained and bloat scenarios, in seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Enqueue rate of the sustained and bloat scenarios, jobs/s (workflows: workflows/s).
    #[arg(long, default_value_t = 2000)]
    pub target_rate: u32,
    /// Finished jobs put in history before the run (bloat: default 1,000,000; burn-down,
    /// command and sustained: default none), to measure with a full history.
    #[arg(long)]
    pub history: Option<u64>,
    /// Waiting jobs put in due_work before the run (ui).
    #[arg(long, default_value_t = 1_000_000)]
    pub live: u64,
    /// Drop this index after migrating (repeatable): to measure what an index costs,
    /// alternating runs with and without it.
    #[arg(long)]
    pub drop_index: Vec<String>,
    /// ui: keep the filled database (named after --history and --live) and reuse it on
    /// the next run instead of filling a fresh one (the fill takes ~10 minutes).
    #[arg(long)]
    pub keep_db: bool,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Scenario name.
    pub scenario: String,
    /// Jobs processed.
    pub jobs: usize,
    /// Enqueue rate (burn-down).
    pub enqueue_jobs_per_sec: Option<f64>,
    /// Drain rate from worker spawn to empty queue.
    pub worked_jobs_per_sec: Option<f64>,
    /// Queue wait / latency percentiles in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
    /// Peak RSS of the (first) worker process, KiB.
    pub worker_peak_rss_kib: Option<u64>,
    /// Sustained/bloat: per phase figures (whole run, or before/during/after).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<Phase>,
    /// Sustained/bloat: due_work dead tuples at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_tuples: Option<i64>,
    /// Sustained/bloat: due_work heap size at the end, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_bytes: Option<i64>,
    /// Sustained/bloat: due_work index size at the end, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_bytes: Option<i64>,
}

/// Figures for one phase of a sustained run.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// Phase name.
    pub name: String,
    /// Jobs started per second in the phase.
    pub started_per_sec: f64,
    /// Enqueue-to-start latency p50, ms.
    pub p50_ms: f64,
    /// p99, ms.
    pub p99_ms: f64,
}

/// Runs the chosen scenario `reps` times and prints the results.
pub async fn run(args: BenchArgs, database_url: Option<String>) -> anyhow::Result<()> {
    let (admin_url, local) = match database_url {
        Some(url) => (url, None),
        None => {
            let base = std::env::temp_dir().join("ordinaut-bench-pg");
            eprintln!(
                "bench: starting a local PostgreSQL under {} (fsync and synchronous_commit on)",
                base.display()
            );
            let options = StartOptions {
                commit_timestamps: matches!(args.scenario, Scenario::Workflows),
                ..StartOptions::default()
            };
            let pg = tokio::task::spawn_blocking(move || LocalPg::start(&base, &options))
                .await?
                .context("while starting a local PostgreSQL for the bench")?;
            (pg.url("postgres"), Some(pg))
        }
    };
    let mut results = Vec::new();
    for rep in 0..args.reps.max(1) {
        if matches!(args.scenario, Scenario::Ui) && args.keep_db {
            let name = format!(
                "ordinaut_bench_ui_{}_{}",
                args.history.unwrap_or(ui::HISTORY),
                args.live
            );
            let (bench_db, filled) = FreshDb::open_or_create(&admin_url, &name).await?;
            // Kept for the next run: not dropped, only disconnected.
            let r = ui::run(&bench_db, &args, filled).await;
            bench_db.pool.close().await;
            r?;
            continue;
        }
        let bench_db = FreshDb::create(&admin_url).await?;
        for index in &args.drop_index {
            db::bench::drop_index(&bench_db.pool, index)
                .await
                .with_context(|| format!("while dropping index {index}"))?;
        }
        let result = match args.scenario {
            Scenario::BurnDown => burn_down(&bench_db, &args, "noop").await,
            Scenario::Command => burn_down(&bench_db, &args, "true_cmd").await,
            Scenario::Latency => latency(&bench_db, &args).await,
            Scenario::Sustained => sustained(&bench_db, &args, false).await,
            Scenario::Bloat => sustained(&bench_db, &args, true).await,
            Scenario::Workflows => workflows::run(&bench_db, &args).await,
            Scenario::Ui => {
                // Prints its own table (per request, not one BenchResult).
                let r = ui::run(&bench_db, &args, false).await;
                bench_db.drop_db().await;
                r?;
                continue;
            }
        };
        bench_db.drop_db().await;
        let result = result?;
        if !args.json {
            eprintln!("bench: rep {} done: {}", rep + 1, one_line(&result));
        }
        results.push(result);
    }
    if let Some(pg) = local {
        let _ = tokio::task::spawn_blocking(move || pg.stop()).await;
    }
    if results.is_empty() {
        // ui printed its own table.
        return Ok(());
    }
    let median = median_of(results);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&median)?);
    } else {
        print_table(&median);
    }
    Ok(())
}

struct FreshDb {
    admin_url: String,
    name: String,
    config: DbConfig,
    pool: PgPool,
    dir: PathBuf,
}

/// The bench server's maintenance database, one connection (create and drop databases).
fn admin_config(admin_url: &str) -> DbConfig {
    DbConfig {
        url: admin_url.to_owned(),
        schema: "public".into(),
        max_connections: 1,
        hot_path: false,
    }
}

/// The database `name` on the bench server of `admin_url`.
fn database_config(admin_url: &str, name: &str) -> anyhow::Result<DbConfig> {
    let mut url = reqwest::Url::parse(admin_url).context("bench DATABASE_URL")?;
    url.set_path(&format!("/{name}"));
    Ok(DbConfig {
        url: url.to_string(),
        schema: "public".into(),
        max_connections: 4,
        hot_path: false,
    })
}

impl FreshDb {
    async fn create(admin_url: &str) -> anyhow::Result<FreshDb> {
        let admin = admin_config(admin_url);
        let pool = admin
            .connect()
            .await
            .context("while connecting to the bench server")?;
        let name = db::bench::create_database(&pool, uuid::Uuid::now_v7()).await?;
        pool.close().await;
        let config = database_config(admin_url, &name)?;
        db::migrate(&config).await?;
        let pool = config.connect().await?;
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("ordinaut.toml"),
            "[kinds.noop]\ntype = \"noop\"\n\n[kinds.true_cmd]\ntype = \"command\"\nprogram = \"true\"\n",
        )?;
        Ok(FreshDb {
            admin_url: admin_url.to_owned(),
            name,
            config,
            pool,
            dir,
        })
    }

    /// The kept database `name` (see `--keep-db`), created and migrated if missing;
    /// true when it already holds a filled bench (its fill finished: the marker table
    /// `bench_ui_filled` is made last).
    async fn open_or_create(admin_url: &str, name: &str) -> anyhow::Result<(FreshDb, bool)> {
        let admin = admin_config(admin_url);
        let pool = admin
            .connect()
            .await
            .context("while connecting to the bench server")?;
        db::bench::create_database_named(&pool, name).await?;
        pool.close().await;
        let config = database_config(admin_url, name)?;
        db::migrate(&config).await?;
        let mut pool = config.connect().await?;
        let filled = db::bench::ui_filled(&pool).await?;
        if !filled {
            // A fill that was interrupted: start again from an empty database.
            pool.close().await;
            let admin_pool = admin.connect().await?;
            db::bench::drop_database(&admin_pool, name).await?;
            db::bench::create_database_named(&admin_pool, name).await?;
            admin_pool.close().await;
            db::migrate(&config).await?;
            pool = config.connect().await?;
        }
        let dir = std::env::temp_dir().join(name);
        Ok((
            FreshDb {
                admin_url: admin_url.to_owned(),
                name: name.to_owned(),
                config,
                pool,
                dir,
            },
            filled,
        ))
    }

    async fn drop_db(self) {
        self.pool.close().await;
        let _ = std::fs::remove_dir_all(&self.dir);
        let admin = admin_config(&self.admin_url);
        if let Ok(pool) = admin.connect().await {
            let _ = db::bench::drop_database(&pool, &self.name).await;
            pool.close().await;
        }
    }

    fn spawn_worker(&self, concurrency: usize) -> anyhow::Result<WorkerProc> {
        let exe = std::env::current_exe().context("locating the ordinaut binary")?;
        // The drain is followed through the worker's own /metrics, which costs the
        // database nothing; a `count(*)` of due_work every 100 ms took a tenth of a
        // core from the run it was timing.
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port for the worker's metrics")?
            .port();
        let child = Command::new(exe)
            .arg("worker")
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .current_dir(&self.dir)
            .env("DATABASE_URL", &self.config.url)
            .env("WORKER_QUEUES", QUEUE)
            .env("WORKER_CONCURRENCY", concurrency.to_string())
            .env("LOG_LEVEL", "warn")
            .env_remove("ORDINAUT_CONFIG")
            .env_remove("ORDINAUT_SCHEMA")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning a worker")?;
        Ok(WorkerProc {
            child,
            metrics_port,
        })
    }
}

struct WorkerProc {
    child: Child,
    metrics_port: u16,
}

impl WorkerProc {
    /// Jobs this worker has finished for good: completed, failed or cancelled (0 until
    /// its endpoint answers). The caller checks afterwards that all completed.
    async fn finished(&self, http: &reqwest::Client) -> u64 {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let Ok(reply) = http.get(url).send().await else {
            return 0;
        };
        let text = reply.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| {
                l.starts_with(crate::metrics::JOBS_FINISHED)
                    && ["completed", "failed", "cancelled"]
                        .iter()
                        .any(|o| l.contains(&format!("outcome=\"{o}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn burn_down(db: &FreshDb, args: &BenchArgs, kind: &str) -> anyhow::Result<BenchResult> {
    let jobs = if kind == "true_cmd" && args.jobs == 100_000 {
        5_000
    } else {
        args.jobs
    };
    let history = args.history.unwrap_or(0);
    fill_history(db, history).await?;
    let started = Instant::now();
    let mut left = jobs;
    while left > 0 {
        let n = left.min(10_000);
        let batch: Vec<NewJob> = (0..n)
            .map(|_| NewJob::new(QUEUE, kind, serde_json::json!({})))
            .collect();
        due_work::enqueue_many(&db.pool, &batch, 4).await?;
        left -= n;
    }
    let enqueue_secs = started.elapsed().as_secs_f64();
    // No CHECKPOINT or VACUUM between enqueue and drain: the peers' harness does
    // neither, and a burst in production gets no such help.
    let spawn_at = Instant::now();
    let workers: Vec<WorkerProc> = (0..args.workers.max(1))
        .map(|_| db.spawn_worker(args.concurrency))
        .collect::<Result<_, _>>()?;
    let mut last_report = Instant::now();
    let mut rss = None;
    let http = reqwest::Client::new();
    loop {
        let mut done = 0;
        for w in &workers {
            done += w.finished(&http).await;
        }
        rss = workers[0].peak_rss_kib().or(rss);
        let remaining = jobs.saturating_sub(done as usize);
        if remaining == 0 {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "bench: {remaining} jobs left after {:.1}s",
                spawn_at.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        if spawn_at.elapsed() > Duration::from_secs(900) {
            bail!("drain did not finish within 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let worked_secs = spawn_at.elapsed().as_secs_f64();
    for w in workers {
        w.stop();
    }
    let completed = db::bench::completed_in(&db.pool, QUEUE).await?;
    if completed != jobs as i64 {
        bail!("only {completed} of {jobs} jobs completed");
    }
    // The prefilled history rows count as one completed attempt each.
    let attempts = db::bench::attempts(&db.pool).await? - history as i64;
    if attempts != jobs as i64 {
        bail!("{attempts} attempts for {jobs} jobs: some job ran more than once");
    }
    let (p50, p95, p99, max) = db::bench::percentiles(&db.pool, Latency::ClaimDelay).await?;
    Ok(BenchResult {
        scenario: if kind == "noop" {
            "burn-down"
        } else {
            "command"
        }
        .to_owned(),
        jobs,
        enqueue_jobs_per_sec: Some(jobs as f64 / enqueue_secs),
        worked_jobs_per_sec: Some(jobs as f64 / worked_secs),
        p50_ms: p50,
        p95_ms: p95,
        p99_ms: p99,
        max_ms: max,
        worker_peak_rss_kib: rss,
        phases: Vec::new(),
        dead_tuples: None,
        table_bytes: None,
        index_bytes: None,
    })
}

async fn latency(db: &FreshDb, args: &BenchArgs) -> anyhow::Result<BenchResult> {
    let workers: Vec<WorkerProc> = (0..args.workers.max(1))
        .map(|_| db.spawn_worker(args.concurrency))
        .collect::<Result<_, _>>()?;
    wait_for_workers(&db.pool, workers.len()).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let mut next = Instant::now();
    for i in 0..args.count {
        tokio::time::sleep_until(next.into()).await;
        next += interval;
        // t0 is taken just before the enqueue call, on the same host clock the
        // database uses for attempted_at.
        let t0 = chrono::Utc::now();
        let job = NewJob::new(
            QUEUE,
            "noop",
            serde_json::json!({ "t0": t0.to_rfc3339(), "i": i }),
        );
        due_work::enqueue_many(&db.pool, &[job], 4).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = db::bench::finished(&db.pool).await?;
        if done as usize >= args.count {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {done} of {} latency jobs finished", args.count);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss = workers[0].peak_rss_kib();
    for w in workers {
        w.stop();
    }
    let (p50, p95, p99, max) = db::bench::percentiles(&db.pool, Latency::SinceEnqueue).await?;
    Ok(BenchResult {
        scenario: "latency".into(),
        jobs: args.count,
        enqueue_jobs_per_sec: None,
        worked_jobs_per_sec: None,
        p50_ms: p50,
        p95_ms: p95,
        p99_ms: p99,
        max_ms: max,
        worker_peak_rss_kib: rss,
        phases: Vec::new(),
        dead_tuples: None,
        table_bytes: None,
        index_bytes: None,
    })
}

async fn wait_for_workers(pool: &PgPool, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live = db::bench::workers(pool).await?;
        if live as usize >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("workers did not register within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Puts `n` finished jobs (queue `old`, spread over the last day) into history.
async fn fill_history(db: &FreshDb, n: u64) -> anyhow::Result<()> {
    if n == 0 {
        return Ok(());
    }
    eprintln!("bench: inserting {n} finished jobs into history");
    db::bench::fill_history(&db.pool, n).await?;
    Ok(())
}

async fn sustained(db: &FreshDb, args: &BenchArgs, bloat: bool) -> anyhow::Result<BenchResult> {
    fill_history(
        db,
        args.history.unwrap_or(if bloat { 1_000_000 } else { 0 }),
    )
    .await?;
    let workers: Vec<WorkerProc> = (0..args.workers.max(1))
        .map(|_| db.spawn_worker(args.concurrency))
        .collect::<Result<_, _>>()?;
    wait_for_workers(&db.pool, workers.len()).await?;
    let total = Duration::from_secs(args.seconds.max(3));
    let third = total / 3;
    let start = chrono::Utc::now();
    let began = Instant::now();
    // The held transaction: a snapshot that stops vacuum from removing dead rows.
    let holder = if bloat {
        let pool = db.pool.clone();
        Some(tokio::spawn(async move {
            tokio::time::sleep(third).await;
            db::bench::hold_snapshot(&pool, tokio::time::sleep(third)).await?;
            eprintln!("bench: released the transaction");
            anyhow::Ok(())
        }))
    } else {
        None
    };
    // Producer: a batch every 10 ms at the target rate.
    let per_tick = (f64::from(args.target_rate) / 100.0).max(1.0);
    let mut owed = 0.0;
    let mut sent = 0usize;
    let mut next = Instant::now();
    let mut last_report = Instant::now();
    while began.elapsed() < total {
        tokio::time::sleep_until(next.into()).await;
        next += Duration::from_millis(10);
        owed += per_tick;
        let n = owed.floor() as usize;
        owed -= n as f64;
        let t0 = chrono::Utc::now().to_rfc3339();
        let batch: Vec<NewJob> = (0..n)
            .map(|_| NewJob::new(QUEUE, "noop", serde_json::json!({ "t0": t0 })))
            .collect();
        due_work::enqueue_many(&db.pool, &batch, 4).await?;
        sent += n;
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "bench: {:.0}s, {sent} enqueued",
                began.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    if let Some(h) = holder {
        h.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while db::bench::live(&db.pool).await? > 0 {
        if Instant::now() > deadline {
            bail!("the backlog did not drain within 60 s after the producers stopped");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss = workers[0].peak_rss_kib();
    for w in workers {
        w.stop();
    }
    let third_ms = third.as_millis() as i64;
    let bounds: Vec<(String, i64, i64)> = if bloat {
        // The after phase also in thirds: shows how soon rate and latency recover.
        let ninth = third_ms / 3;
        let secs = |ms: i64| ms as f64 / 1000.0;
        let mut b = vec![
            ("before".to_owned(), 0, third_ms),
            ("during".to_owned(), third_ms, 2 * third_ms),
            ("after".to_owned(), 2 * third_ms, 3 * third_ms),
        ];
        for k in 0..3 {
            b.push((
                format!(
                    "after +{:.0}-{:.0}s",
                    secs(k * ninth),
                    secs((k + 1) * ninth)
                ),
                2 * third_ms + k * ninth,
                2 * third_ms + (k + 1) * ninth,
            ));
        }
        b
    } else {
        vec![("run".to_owned(), 0, total.as_millis() as i64)]
    };
    let mut phases = Vec::new();
    for (name, from, to) in bounds {
        let row = db::bench::phase(&db.pool, start, from, to).await?;
        phases.push(Phase {
            name,
            started_per_sec: row.0 as f64 / ((to - from) as f64 / 1000.0),
            p50_ms: row.1.unwrap_or(0.0),
            p99_ms: row.2.unwrap_or(0.0),
        });
    }
    let (dead, table, index) = db::bench::due_work_size(&db.pool).await?;
    let (p50, p95, p99, max) = db::bench::percentiles(&db.pool, Latency::SinceEnqueue).await?;
    Ok(BenchResult {
        scenario: if bloat { "bloat" } else { "sustained" }.into(),
        jobs: sent,
        enqueue_jobs_per_sec: Some(sent as f64 / total.as_secs_f64()),
        worked_jobs_per_sec: None,
        p50_ms: p50,
        p95_ms: p95,
        p99_ms: p99,
        max_ms: max,
        worker_peak_rss_kib: rss,
        phases,
        dead_tuples: Some(dead),
        table_bytes: Some(table),
        index_bytes: Some(index),
    })
}

fn median_of(mut results: Vec<BenchResult>) -> BenchResult {
    results.sort_by(|a, b| {
        let key = |r: &BenchResult| r.worked_jobs_per_sec.unwrap_or(-r.p50_ms);
        key(a).total_cmp(&key(b))
    });
    results.swap_remove(results.len() / 2)
}

fn one_line(r: &BenchResult) -> String {
    match r.worked_jobs_per_sec {
        Some(w) => format!(
            "{} jobs: enqueue {:.0}/s, worked {:.0}/s, wait p50 {:.1} ms",
            r.jobs,
            r.enqueue_jobs_per_sec.unwrap_or(0.0),
            w,
            r.p50_ms
        ),
        None => format!(
            "{} jobs: p50 {:.2} ms, p99 {:.2} ms",
            r.jobs, r.p50_ms, r.p99_ms
        ),
    }
}

fn print_table(r: &BenchResult) {
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
    println!(
        "| scenario | jobs | enqueue jobs/s | worked jobs/s | p50 ms | p95 ms | p99 ms | max ms | worker peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for p in &r.phases {
        println!(
            "phase {}: {:.0} starts/s, p50 {:.2} ms, p99 {:.2} ms",
            p.name, p.started_per_sec, p.p50_ms, p.p99_ms
        );
    }
    if let (Some(d), Some(t), Some(i)) = (r.dead_tuples, r.table_bytes, r.index_bytes) {
        println!("due_work at the end: {d} dead tuples, table {t} bytes, indexes {i} bytes");
    }
    println!(
        "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
        r.scenario,
        r.jobs,
        opt(r.enqueue_jobs_per_sec),
        opt(r.worked_jobs_per_sec),
        r.p50_ms,
        r.p95_ms,
        r.p99_ms,
        r.max_ms,
        r.worker_peak_rss_kib
            .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
            .unwrap_or_else(|| "-".into())
    );
}
