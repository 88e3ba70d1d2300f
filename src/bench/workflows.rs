//! `ordinaut bench workflows`: diamonds (a -> b, c -> d) submitted at `--target-rate`
//! workflows/s up to `--count` of them, then one fan-out/fan-in of 1,000 steps, run by
//! real worker processes. Reports workflows/s, activation latency (the commit of the last
//! dependency's finish to the dependent's claim; with `track_commit_timestamp = off` the
//! finish transaction's start stands in for its commit) and WAL per workflow.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;
use sqlx::PgPool;

use super::{BenchArgs, BenchResult, FreshDb, Phase, QUEUE};
use crate::db::workflows;

async fn wait_done(pool: &PgPool, prefix: &str, n: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (done, failed) = workflows::finished_named(pool, prefix).await?;
        if done >= n {
            if failed > 0 {
                bail!("{failed} {prefix} workflows did not complete");
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {done} of {n} {prefix} workflows finished within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn step(name: &str, deps: &[String]) -> serde_json::Value {
    json!({"name": name, "queue": QUEUE, "kind": "noop", "depends_on": deps})
}

/// Concurrent submitting connections.
const SUBMITTERS: usize = 4;

/// The diamond workflow number `i`: a -> b, c -> d.
fn diamond(i: usize) -> serde_json::Value {
    json!({"name": format!("diamond-{i}"), "jobs": [
        step("a", &[]), step("b", &["a".into()]), step("c", &["a".into()]),
        step("d", &["b".into(), "c".into()]),
    ]})
}

/// Runs the scenario once.
pub(super) async fn run(db: &FreshDb, args: &BenchArgs) -> anyhow::Result<BenchResult> {
    let workers = db.start_workers(args).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Diamonds, paced by four submitters. Each submits, in one statement, every
    // workflow whose time has come, so a submitter that falls behind catches up with
    // larger batches instead of lowering the offered rate.
    let count = args.count.max(1);
    let rate = f64::from(args.target_rate.max(1));
    let wal_before = workflows::wal_bytes(&db.pool).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..SUBMITTERS {
        let pool = db.pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut next = t;
            while next < count {
                let at = started + Duration::from_secs_f64(next as f64 / rate);
                tokio::time::sleep_until(at.into()).await;
                let due = ((started.elapsed().as_secs_f64() * rate) as usize + 1).min(count);
                let batch: Vec<_> = (next..due.max(next + 1))
                    .step_by(SUBMITTERS)
                    .map(diamond)
                    .collect();
                next += batch.len() * SUBMITTERS;
                workflows::submit_batch(&pool, &serde_json::Value::Array(batch), 4).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let submit_secs = started.elapsed().as_secs_f64();
    wait_done(&db.pool, "diamond-", count as i64).await?;
    let diamond_secs = started.elapsed().as_secs_f64();
    let wal_per_workflow =
        (workflows::wal_bytes(&db.pool).await? - wal_before) as f64 / count as f64;
    let (d50, d99, dmax) = workflows::activation_percentiles(&db.pool, "diamond-", None).await?;

    // One fan-out/fan-in of 1,000 steps: root -> part-0..999 -> join.
    let parts: Vec<String> = (0..1000).map(|i| format!("part-{i}")).collect();
    let mut jobs = vec![step("root", &[])];
    jobs.extend(parts.iter().map(|p| step(p, &["root".into()])));
    jobs.push(step("join", &parts));
    let fan_started = Instant::now();
    workflows::submit(&db.pool, &json!({"name": "fan-1000", "jobs": jobs}), 4).await?;
    wait_done(&db.pool, "fan-", 1).await?;
    let fan_secs = fan_started.elapsed().as_secs_f64();
    let (f50, f99, _) = workflows::activation_percentiles(&db.pool, "fan-", None).await?;
    // The fan-in: the last part's finish to the join's claim. The parts' figures above
    // include their wait for a free worker slot (1,000 at once on `--concurrency`).
    let (join_ms, _, _) = workflows::activation_percentiles(&db.pool, "fan-", Some("join")).await?;
    let rss = workers[0].peak_rss_kib();
    for w in workers {
        w.stop();
    }
    eprintln!(
        "bench: {count} diamonds submitted in {submit_secs:.2}s ({:.0}/s), all completed after {diamond_secs:.2}s: \
         {:.0} workflows/s; activation p50 {d50:.1} ms, p99 {d99:.1} ms, max {dmax:.1} ms; \
         WAL {:.0} bytes per workflow",
        count as f64 / submit_secs,
        count as f64 / diamond_secs,
        wal_per_workflow
    );
    eprintln!(
        "bench: fan-out/fan-in of 1,000: {fan_secs:.2}s submit to join completed, \
         root finished to part claimed p50 {f50:.1} ms p99 {f99:.1} ms (queueing for workers included); \
         last part finished to join claimed {join_ms:.1} ms"
    );
    // No p95 is measured: the p99 stands in for it.
    let percentiles = (d50, d99, d99, dmax);
    Ok(BenchResult {
        phases: vec![
            Phase {
                name: format!("diamonds ({wal_per_workflow:.0} WAL bytes/workflow)"),
                started_per_sec: count as f64 / diamond_secs,
                p50_ms: d50,
                p99_ms: d99,
            },
            Phase {
                name: "fan-out-1000".to_owned(),
                started_per_sec: 1002.0 / fan_secs,
                p50_ms: f50,
                p99_ms: f99,
            },
        ],
        ..BenchResult::new("workflows", count * 4 + 1002, percentiles, rss)
    })
}
