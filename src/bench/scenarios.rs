//! The queue scenarios: burn-down (and command), latency, sustained (and bloat).

use std::time::{Duration, Instant};

use anyhow::bail;

use super::harness::fill_history;
use super::{BenchArgs, BenchResult, FreshDb, Phase, QUEUE};
use crate::db::bench::{Counted, Latency};
use crate::db::{self, due_work, due_work::NewJob};

pub(super) async fn burn_down(
    db: &FreshDb,
    args: &BenchArgs,
    kind: &str,
) -> anyhow::Result<BenchResult> {
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
    let workers = db.spawn_workers(args)?;
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
    let attempts = db::bench::count(&db.pool, Counted::Attempts).await? - history as i64;
    if attempts != jobs as i64 {
        bail!("{attempts} attempts for {jobs} jobs: some job ran more than once");
    }
    let percentiles = db::bench::percentiles(&db.pool, Latency::ClaimDelay).await?;
    let scenario = if kind == "noop" {
        "burn-down"
    } else {
        "command"
    };
    Ok(BenchResult {
        enqueue_jobs_per_sec: Some(jobs as f64 / enqueue_secs),
        worked_jobs_per_sec: Some(jobs as f64 / worked_secs),
        ..BenchResult::new(scenario, jobs, percentiles, rss)
    })
}

pub(super) async fn latency(db: &FreshDb, args: &BenchArgs) -> anyhow::Result<BenchResult> {
    let workers = db.start_workers(args).await?;
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
        let done = db::bench::count(&db.pool, Counted::Finished).await?;
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
    let percentiles = db::bench::percentiles(&db.pool, Latency::SinceEnqueue).await?;
    Ok(BenchResult::new("latency", args.count, percentiles, rss))
}

pub(super) async fn sustained(
    db: &FreshDb,
    args: &BenchArgs,
    bloat: bool,
) -> anyhow::Result<BenchResult> {
    fill_history(
        db,
        args.history.unwrap_or(if bloat { 1_000_000 } else { 0 }),
    )
    .await?;
    let _scheduler = db.spawn_scheduler()?;
    let workers = db.start_workers(args).await?;
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
    while db::bench::count(&db.pool, Counted::Live).await? > 0 {
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
    let percentiles = db::bench::percentiles(&db.pool, Latency::SinceEnqueue).await?;
    let scenario = if bloat { "bloat" } else { "sustained" };
    Ok(BenchResult {
        enqueue_jobs_per_sec: Some(sent as f64 / total.as_secs_f64()),
        phases,
        dead_tuples: Some(dead),
        table_bytes: Some(table),
        index_bytes: Some(index),
        ..BenchResult::new(scenario, sent, percentiles, rss)
    })
}
