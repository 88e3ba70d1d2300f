//! `ordinaut bench ui`: the dashboard's reads on a big history. Puts `--history`
//! finished jobs (default 10,000,000, over the last ten days, 20 queues, 5% failed or
//! cancelled) and `--live` waiting jobs (default 1,000,000, through `enqueue_many`)
//! in a fresh database, then times the jobs list, filtered lists, searches, the
//! statistics and the overview page in-process (the router's own handlers, no network):
//! server time, which is what the 200 ms target of issue 15 is about.

use std::time::Instant;

use anyhow::Context;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use super::{BenchArgs, FreshDb};
use crate::db::due_work::{self, NewJob};

/// Finished jobs put in history unless `--history` says otherwise.
pub(super) const HISTORY: u64 = 10_000_000;
/// Queues the rows are spread over (`q00`..`q19`).
const QUEUES: i64 = 20;
/// Timed repetitions of each request (after two untimed ones).
const REPS: usize = 15;

/// What is timed: label and path. A path after `NEXT:` is requested once untimed and
/// its `next_cursor` page is timed (the next page, or where a partial search continues).
const REQUESTS: &[(&str, &str)] = &[
    ("jobs list, first page", "/v1/jobs"),
    ("jobs list, 2nd page (cursor)", "NEXT:/v1/jobs"),
    ("queue + failed", "/v1/jobs?queue=q07&state=failed"),
    ("kind, finished", "/v1/jobs?kind=scan&state=completed"),
    (
        "queue + payload path (0.1% match)",
        "/v1/jobs?queue=q07&payload=%24.port%20%3C%2010",
    ),
    (
        "queue + metadata JSON path",
        "/v1/jobs?queue=q03&metadata=%24.team%20%3D%3D%20%22red%22",
    ),
    (
        "  the same, search further",
        "NEXT:/v1/jobs?queue=q03&metadata=%24.team%20%3D%3D%20%22red%22",
    ),
    (
        "queue + text (in errors)",
        "/v1/jobs?queue=q11&text=refused",
    ),
    (
        "  the same, search further",
        "NEXT:/v1/jobs?queue=q11&text=refused",
    ),
    ("stats, last hour", "/v1/stats?minutes=60"),
    ("queues", "/v1/queues"),
    ("overview page", "/ui"),
    (
        "jobs page, queue + search",
        "/ui/jobs?queue=q07&payload=%24.port%20%3C%2010",
    ),
];

/// Fills the database, times each request and prints one line per request.
/// `filled`: the database is a kept one (`--keep-db`) already filled by an earlier run.
pub(super) async fn run(db: &FreshDb, args: &BenchArgs, filled: bool) -> anyhow::Result<()> {
    let history = args.history.unwrap_or(HISTORY) as i64;
    let live = args.live as i64;
    if filled {
        eprintln!("bench ui: reusing the filled database {}", db.name);
    } else {
        fill(db, history, live).await?;
        crate::db::bench::mark_ui_filled(&db.pool).await?;
    }
    let config = crate::config::Config::default();
    let settings = crate::api::ApiSettings::from_config(&config);
    let state = crate::api::AppState::new(db.pool.clone(), settings);
    // As a running `serve` has: the statistics' rollups caught up (the first pass
    // after the fill rolls up the last day; printed, not timed with the requests).
    let t = Instant::now();
    let rolled = crate::db::stats::roll_up(&db.pool).await?;
    eprintln!(
        "bench ui: statistics rolled up ({rolled:?}, {:.1} s)",
        t.elapsed().as_secs_f64()
    );
    // As `serve` does: the refresher's snapshot answers the queue counts.
    state.refresh_once().await;
    tokio::spawn(state.clone().run_refresher());
    let router = crate::api::router(state);
    println!(
        "bench ui: {history} finished jobs in history, {live} live; server time of {REPS} requests each (ms)"
    );
    println!(
        "{:<34} {:>8} {:>8} {:>8}  answer",
        "request", "p50", "p95", "max"
    );
    for (label, path) in REQUESTS {
        let path = match path.strip_prefix("NEXT:") {
            Some(first) => {
                let body: serde_json::Value = serde_json::from_slice(&call(&router, first).await?)?;
                let cursor = body["next_cursor"]
                    .as_str()
                    .with_context(|| format!("{first}: no next page"))?;
                let sep = if first.contains('?') { '&' } else { '?' };
                format!("{first}{sep}cursor={cursor}")
            }
            None => (*path).to_owned(),
        };
        for _ in 0..2 {
            call(&router, &path).await?;
        }
        let mut ms = Vec::with_capacity(REPS);
        let mut last = axum::body::Bytes::new();
        for _ in 0..REPS {
            let t = Instant::now();
            last = call(&router, &path).await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        println!(
            "{label:<34} {:>8.1} {:>8.1} {:>8.1}  {}",
            at(0.5),
            at(0.95),
            at(1.0),
            answer(&last)
        );
    }
    Ok(())
}

/// What a JSON list answered: jobs on the page, and whether it was a partial search
/// page (a page of HTML or statistics: its size).
fn answer(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) if v["jobs"].is_array() => format!(
            "{} jobs{}",
            v["jobs"].as_array().map_or(0, Vec::len),
            if v["searched_to"].is_string() {
                ", partial (searched_to)"
            } else {
                ""
            }
        ),
        _ => format!("{} bytes", body.len()),
    }
}

async fn call(router: &axum::Router, path: &str) -> anyhow::Result<axum::body::Bytes> {
    let response = router
        .clone()
        .oneshot(Request::get(path).body(Body::empty())?)
        .await?;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    if status != StatusCode::OK {
        anyhow::bail!("{path}: {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(body)
}

/// `history` finished jobs over the last ten days (each day in its own partition, as
/// the retention service makes them) and `live` waiting jobs.
async fn fill(db: &FreshDb, history: i64, live: i64) -> anyhow::Result<()> {
    for day in 0..=10 {
        crate::db::history::create_partition(
            &db.pool,
            "job_history",
            -day,
            std::time::Duration::from_secs(30),
        )
        .await?;
    }
    let chunk = 1_000_000i64;
    let mut from = 0i64;
    let started = Instant::now();
    while from < history {
        let to = (from + chunk).min(history);
        // g = 0 is the newest; finished_at spreads evenly over ten days.
        crate::db::bench::fill_ui_history(&db.pool, from, to, QUEUES, history).await?;
        from = to;
        eprintln!(
            "bench ui: {from} finished jobs in history ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
    }
    let mut left = live;
    let mut n = 0i64;
    while left > 0 {
        let size = left.min(10_000);
        let batch: Vec<NewJob> = (0..size)
            .map(|i| {
                let g = n + i;
                NewJob::new(
                    format!("q{:02}", g % QUEUES),
                    "scan",
                    serde_json::json!({"target": format!("host-{}.example", g % 100_000), "port": g % 1000}),
                )
            })
            .collect();
        due_work::enqueue_many(&db.pool, &batch, 4).await?;
        left -= size;
        n += size;
    }
    eprintln!(
        "bench ui: {live} live jobs enqueued ({:.0} s); VACUUM ANALYZE",
        started.elapsed().as_secs_f64()
    );
    crate::db::bench::vacuum_analyze(&db.pool).await?;
    Ok(())
}
