//! `GET /v1/stats`: completed and failed jobs per queue and minute, and wait-time
//! percentiles, from the rollups (`db::stats`).

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiResult, ErrorBody};
use super::extract::{Json, Query, check_range};
use crate::db::stats;

/// Longest window of `/v1/stats` (what the rollups keep).
const MAX_MINUTES: i32 = stats::MAX_MINUTES;

/// Window of the statistics.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Whole minutes before the current one, 1..=1440 (default 60): the window is the
    /// current minute and these.
    #[param(minimum = 1, maximum = 1440)]
    pub minutes: Option<i32>,
}

/// Finished jobs in one minute.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Minute {
    /// Start of the minute.
    pub minute: DateTime<Utc>,
    /// Completed (queues that keep completed jobs only).
    pub completed: i64,
    /// Failed for good.
    pub failed: i64,
}

/// Wait from due to start, in seconds, over the window.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Waits {
    /// Jobs measured.
    pub jobs: i64,
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// One queue's figures.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueFigures {
    /// Queue.
    pub queue: String,
    /// Minutes with finished jobs, oldest first (minutes without are absent).
    pub per_minute: Vec<Minute>,
    /// Completed in the window.
    pub completed: i64,
    /// Failed in the window.
    pub failed: i64,
    /// Wait percentiles of the jobs finished in the window.
    pub wait: Option<Waits>,
    /// Live worker processes serving this queue.
    pub workers: i64,
}

/// Throughput and waits per queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    /// The window in minutes.
    pub minutes: i32,
    /// Queues with finished jobs in the window or a live worker, by name.
    pub queues: Vec<QueueFigures>,
    /// Wait percentiles per minute, all queues together, oldest first (minutes without
    /// finished jobs are absent).
    pub waits_per_minute: Vec<MinuteWaits>,
    /// Live worker processes.
    pub workers_alive: i64,
}

/// Wait from due to start, in seconds, of the jobs finished in one minute.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MinuteWaits {
    /// Start of the minute.
    pub minute: DateTime<Utc>,
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// Completed and failed jobs per queue and minute, and wait-time percentiles.
#[utoipa::path(
    get, path = "/v1/stats", tag = "jobs",
    params(StatsQuery),
    responses(
        (status = 200, description = "Figures per queue", body = Stats),
        (status = 400, description = "Invalid window", body = ErrorBody),
    ),
)]
pub async fn stats(
    State(state): State<AppState>,
    Query(q): Query<StatsQuery>,
) -> ApiResult<Json<Stats>> {
    let minutes = check_range("minutes", q.minutes.unwrap_or(60), 1..=MAX_MINUTES)?;
    let (counts, waits, minute_waits) = stats::window(state.pool(), minutes).await?;
    let waits_per_minute = minute_waits
        .into_iter()
        .map(|m| MinuteWaits {
            minute: m.minute,
            p50: m.waits.p50,
            p95: m.waits.p95,
            p99: m.waits.p99,
        })
        .collect();
    let workers = crate::db::workers::list_workers(state.pool()).await?;
    let mut queues: std::collections::BTreeMap<String, QueueFigures> = Default::default();
    // In place: one entry per queue, however many minutes it has.
    fn entry<'a>(
        queues: &'a mut std::collections::BTreeMap<String, QueueFigures>,
        name: &str,
    ) -> &'a mut QueueFigures {
        queues
            .entry(name.to_owned())
            .or_insert_with(|| QueueFigures {
                queue: name.to_owned(),
                per_minute: Vec::new(),
                completed: 0,
                failed: 0,
                wait: None,
                workers: 0,
            })
    }
    for c in counts {
        let f = entry(&mut queues, &c.queue);
        f.completed += c.completed;
        f.failed += c.failed;
        f.per_minute.push(Minute {
            minute: c.minute,
            completed: c.completed,
            failed: c.failed,
        });
    }
    for w in waits {
        entry(&mut queues, &w.queue).wait = Some(Waits {
            jobs: w.jobs,
            p50: w.waits.p50,
            p95: w.waits.p95,
            p99: w.waits.p99,
        });
    }
    for w in &workers {
        for name in &w.registration.queues {
            entry(&mut queues, name).workers += 1;
        }
    }
    Ok(Json(Stats {
        minutes,
        queues: queues.into_values().collect(),
        waits_per_minute,
        workers_alive: workers.len() as i64,
    }))
}
