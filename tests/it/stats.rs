//! The per-minute rollups behind `/v1/stats` and the overview (migration 0020).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use ordinaut::db::stats::{self, RollUp};
use serde_json::Value;

use crate::api::App;
use crate::common::TestDb;
use crate::ui::app_settings;

/// 3,000 finished jobs over the last 50 closed minutes and 30 in the current one, in
/// three queues: 80% completed, 10% failed, 10% cancelled (half of those before they
/// started), waits of 1 ms to 5 s.
const FILL: &str = "
INSERT INTO job_history (id, queue, kind, payload, priority, state, attempt, max_attempts,
                         metadata, run_at, created_at, attempted_at, finished_at)
SELECT gen_random_uuid(), 'r' || (g % 3), 'k', '{}', 0,
       CASE WHEN g % 10 = 1 THEN 'failed' WHEN g % 10 = 2 THEN 'cancelled' ELSE 'completed' END,
       1, 1, '{}', f - interval '10 s', f - interval '11 s',
       CASE WHEN g % 20 = 2 THEN NULL
            ELSE f - interval '10 s' + ((g * 37) % 5000 + 1) * interval '1 millisecond' END,
       f
FROM (SELECT g, CASE WHEN g < 30 THEN now()
                     ELSE date_trunc('minute', now()) - (g % 50 + 2) * interval '1 minute'
                          + (g % 60) * interval '1 second' END AS f
      FROM generate_series(0, 3029) AS g) AS s";

/// The same figures counted directly from job_history over the window of
/// `/v1/stats?minutes=60`: per queue completed, failed, jobs that started, and the
/// nearest-rank p50 / p95 / p99 of their waits.
const DIRECT: &str = "
SELECT queue, count(*) FILTER (WHERE state = 'completed') AS completed,
       count(*) FILTER (WHERE state = 'failed') AS failed,
       count(attempted_at) AS started,
       percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP
           (ORDER BY extract(epoch FROM attempted_at - run_at)::float8) AS waits
FROM job_history
WHERE finished_at >= date_trunc('minute', now()) - interval '60 minutes'
GROUP BY queue ORDER BY queue";

async fn direct(app: &App) -> Vec<(String, i64, i64, i64, Vec<f64>)> {
    sqlx::query_as(DIRECT)
        .fetch_all(&app.db.pool)
        .await
        .expect("direct count")
}

/// Completed and failed per queue and minute, as `/v1/stats` reports them.
async fn per_minute(app: &App) -> BTreeMap<(String, String), (i64, i64)> {
    let stats = app.get("/v1/stats?minutes=60").await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.text);
    let mut out = BTreeMap::new();
    for q in stats.body["queues"].as_array().expect("queues") {
        for m in q["per_minute"].as_array().expect("per_minute") {
            out.insert(
                (
                    q["queue"].as_str().unwrap_or_default().to_owned(),
                    m["minute"].as_str().unwrap_or_default().to_owned(),
                ),
                (
                    m["completed"].as_i64().unwrap_or(-1),
                    m["failed"].as_i64().unwrap_or(-1),
                ),
            );
        }
    }
    out
}

/// Checks `/v1/stats` against [`DIRECT`]: counts equal, percentiles within the
/// histogram's 4.5%.
async fn agrees_with_direct_count(app: &App) -> Value {
    let stats = app.get("/v1/stats?minutes=60").await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.text);
    let queues = stats.body["queues"].as_array().expect("queues").clone();
    let direct = direct(app).await;
    assert_eq!(queues.len(), direct.len(), "{}", stats.text);
    for (q, (name, completed, failed, started, waits)) in queues.iter().zip(&direct) {
        assert_eq!(q["queue"], name.as_str());
        assert_eq!(q["completed"], *completed, "{name}");
        assert_eq!(q["failed"], *failed, "{name}");
        assert_eq!(q["wait"]["jobs"], *started, "{name}");
        for (key, exact) in ["p50", "p95", "p99"].iter().zip(waits) {
            let got = q["wait"][key].as_f64().expect("percentile");
            assert!(
                (got / exact - 1.0).abs() < 0.045,
                "{name} {key}: {got} from the rollup, {exact} counted"
            );
        }
    }
    stats.body
}

#[tokio::test]
async fn rolled_up_figures_agree_with_a_direct_count_and_two_refreshers_count_once() {
    let app = App::with(app_settings()).await;
    sqlx::query(FILL).execute(&app.db.pool).await.expect("fill");
    // Before any roll-up every minute is read from job_history.
    agrees_with_direct_count(&app).await;
    let live = per_minute(&app).await;
    assert!(live.len() > 100, "{live:?}");

    // Two refreshers at once: one rolls up, the other finds the progress row locked.
    let (a, b) = tokio::join!(stats::roll_up(&app.db.pool), stats::roll_up(&app.db.pool));
    let (a, b) = (a.expect("roll up"), b.expect("roll up"));
    assert!(
        matches!(
            (a, b),
            (RollUp::CaughtUp(_), RollUp::Busy | RollUp::CaughtUp(0))
        ) || matches!(
            (a, b),
            (RollUp::Busy | RollUp::CaughtUp(0), RollUp::CaughtUp(_))
        ),
        "{a:?} {b:?}"
    );
    // Every closed minute of the fill is now in job_minutes, each job once.
    let rolled = app
        .db
        .scalar_i64("SELECT coalesce(sum(completed + failed), 0)::bigint FROM job_minutes")
        .await;
    let counted = app
        .db
        .count(
            "job_history WHERE state <> 'cancelled'
             AND finished_at < (SELECT through FROM job_minutes_progress)",
        )
        .await;
    assert_eq!(rolled, counted);
    // The 2,700 completed or failed jobs of the closed minutes (not the current one's).
    assert!(rolled >= 2700, "{rolled}");
    agrees_with_direct_count(&app).await;
    assert_eq!(per_minute(&app).await, live);

    // Rolling the same minutes up again (the mark moved back, as if two processes had
    // both read the old one) replaces their figures: nothing is counted twice.
    sqlx::query("UPDATE job_minutes_progress SET through = '-infinity'")
        .execute(&app.db.pool)
        .await
        .expect("reset the mark");
    assert!(matches!(
        stats::roll_up(&app.db.pool).await.expect("roll up"),
        RollUp::CaughtUp(n) if n > 0
    ));
    assert_eq!(
        app.db
            .scalar_i64("SELECT coalesce(sum(completed + failed), 0)::bigint FROM job_minutes")
            .await,
        rolled
    );
    agrees_with_direct_count(&app).await;
    assert_eq!(per_minute(&app).await, live);
    // The sealed minutes are read from job_minutes, not job_history: deleting their
    // jobs (a bulk delete) leaves the figures as they were.
    sqlx::query(
        "DELETE FROM job_history WHERE finished_at < (SELECT through FROM job_minutes_progress)",
    )
    .execute(&app.db.pool)
    .await
    .expect("delete");
    assert_eq!(per_minute(&app).await, live);
}

/// A finish's finished_at is its transaction's start: a row may commit after the
/// minute it names has ended. Within the grace (30 s) it is still counted: the
/// roll-up only seals minutes that ended longer ago, and later minutes are read live.
#[tokio::test]
async fn a_row_committed_after_a_roll_up_is_counted_once_its_minute_is_sealed() {
    let app = App::with(app_settings()).await;
    let mut finish = app.db.pool.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO job_history (id, queue, kind, payload, priority, state, attempt, max_attempts,
                                  metadata, run_at, created_at, attempted_at, finished_at)
         VALUES (gen_random_uuid(), 'late', 'k', '{}', 0, 'completed', 1, 1, '{}',
                 now() - interval '2 s', now() - interval '2 s', now() - interval '1 s', now())",
    )
    .execute(&mut *finish)
    .await
    .expect("insert");
    // A refresher runs while the finish is uncommitted: the row's minute is not sealed.
    stats::roll_up(&app.db.pool).await.expect("roll up");
    finish.commit().await.expect("commit");
    let completed = |body: Value| body["queues"][0]["completed"].clone();
    assert_eq!(completed(agrees_with_direct_count(&app).await), 1);
    // Time passes (a grace of -2 minutes seals the current minute): it is counted once.
    stats::roll_up_sealing(&app.db.pool, -120.0)
        .await
        .expect("roll up");
    assert_eq!(
        app.db
            .scalar_i64(
                "SELECT coalesce(sum(completed), 0)::bigint FROM job_minutes WHERE queue = 'late'"
            )
            .await,
        1
    );
    assert_eq!(completed(agrees_with_direct_count(&app).await), 1);
}

/// Every pool Ordinaut opens (the API's and the worker's hot-path one) runs with JIT
/// off: on a big partitioned history the planner's estimates cross `jit_above_cost`
/// and compiling took longer than the dashboard's statistics query itself.
#[tokio::test]
async fn ordinaut_connections_run_without_jit() {
    let db = TestDb::new().await;
    for hot_path in [false, true] {
        let config = ordinaut::db::DbConfig {
            hot_path,
            ..db.db_config()
        };
        let pool = config.connect().await.expect("connect");
        let jit: String = sqlx::query_scalar("SHOW jit")
            .fetch_one(&pool)
            .await
            .expect("SHOW jit");
        assert_eq!(jit, "off", "hot_path = {hot_path}");
        pool.close().await;
    }
}
