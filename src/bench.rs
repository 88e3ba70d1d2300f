//! `ordinaut bench`: measures the real binary on a real Postgres.
//!
//! Workers are the real `ordinaut worker` processes (this executable, re-spawned) and
//! enqueues go through the real `enqueue_many`; the bench only times them and reads
//! the results from the tables. Speed claims in comments and docs cite these figures.

use anyhow::Context;
use serde::Serialize;

use crate::db;
use crate::pg_local::{LocalPg, StartOptions};

mod harness;
mod scenarios;
mod ui;
mod workflows;

use harness::FreshDb;
use scenarios::{burn_down, latency, sustained};

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
    /// Producers, workers and a scheduler together for `--seconds` at `--target-rate`.
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

impl BenchResult {
    /// A run of `scenario` over `jobs` jobs with its latency percentiles in ms (p50,
    /// p95, p99, max) and the first worker's peak RSS; no rates, phases or table sizes.
    fn new(
        scenario: &str,
        jobs: usize,
        (p50_ms, p95_ms, p99_ms, max_ms): (f64, f64, f64, f64),
        worker_peak_rss_kib: Option<u64>,
    ) -> BenchResult {
        BenchResult {
            scenario: scenario.to_owned(),
            jobs,
            enqueue_jobs_per_sec: None,
            worked_jobs_per_sec: None,
            p50_ms,
            p95_ms,
            p99_ms,
            max_ms,
            worker_peak_rss_kib,
            phases: Vec::new(),
            dead_tuples: None,
            table_bytes: None,
            index_bytes: None,
        }
    }
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
