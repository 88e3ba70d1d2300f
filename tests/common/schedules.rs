//! Schedules for tests: made as the API makes them, or declared as a config file does.

use ordinaut::config::Config;
use ordinaut::scheduler::{self, Origin, ScheduleInput};
use sqlx::PgPool;
use uuid::Uuid;

/// A schedule of `kind` on `queue` firing at `cron`, to adjust before saving.
pub fn schedule(name: &str, cron: &str, queue: &str, kind: &str) -> ScheduleInput {
    ScheduleInput {
        name: name.into(),
        cron: cron.into(),
        queue: queue.into(),
        kind: kind.into(),
        ..Default::default()
    }
}

/// Validates and saves `input` as `POST /v1/schedules` would; its id.
pub async fn save(pool: &PgPool, input: &ScheduleInput) -> Uuid {
    let spec = scheduler::validate(input, &Config::default()).expect("a valid schedule");
    scheduler::save(pool, &spec, Origin::Api)
        .await
        .expect("save the schedule")
}

/// One pass of retention keeping 30 days, as the scheduler runs it; what it removed.
pub async fn retention_pass(pool: &PgPool) -> scheduler::retention::RotationReport {
    let retention = scheduler::Retention::new(pool.clone(), 30);
    retention.run_once().await.expect("a retention pass")
}

/// A schedule as a config file declares it: `kind` on `queue` at `cron`, the rest
/// unset (the name is the file's table key).
pub fn declared(cron: &str, queue: &str, kind: &str) -> ScheduleInput {
    schedule("", cron, queue, kind)
}

/// Declares `nightly` (`30 2 * * *`, `kind` on `queue`) as a config file does, and
/// syncs the declared schedules as a scheduler starting with that file would.
pub async fn declare_nightly(pool: &PgPool, queue: &str, kind: &str) {
    let mut config = Config::default();
    let nightly = declared("30 2 * * *", queue, kind);
    config.schedules.insert("nightly".into(), nightly);
    scheduler::sync_declared(pool, &config)
        .await
        .expect("sync declared schedules");
}
