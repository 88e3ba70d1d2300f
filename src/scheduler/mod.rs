//! `ordinaut scheduler`: fires cron schedules and runs maintenance (rescue of dead
//! workers' jobs, history retention, pruning of dead worker rows, vacuum of due_work).
//!
//! Every service here is safe to run in any number of processes at once.

pub mod fire;
pub mod heartbeat;
pub mod rescuer;
pub mod retention;
pub mod vacuum;

use std::time::Duration;

use sqlx::PgPool;

pub use fire::{FireOptions, Firer};
pub use heartbeat::Heartbeat;
pub use rescuer::{Rescuer, RescuerOptions};
pub use retention::Retention;
pub use vacuum::Vacuumer;

use crate::config::Config;
use crate::db::{self, schedules::ScheduleSpec};
use crate::model::Invalid;
pub use crate::model::cron;
use crate::model::schedule::{self, first_fire};
pub use crate::model::schedule::{Origin, ScheduleInput};

/// Validates a schedule against the configuration; the error names the field and the
/// problem.
pub fn validate(input: &ScheduleInput, config: &Config) -> Result<ScheduleSpec, Invalid> {
    schedule::validate(input, &config.schedule_rules())
}

/// Creates or updates a schedule coming from `origin`. Its first fire is computed from
/// the database's clock, the one the fire loop compares with. A declared schedule
/// cannot be overwritten by an undeclared spec ([`SaveError::Declared`]).
pub async fn save(
    pool: &PgPool,
    spec: &ScheduleSpec,
    origin: Origin,
) -> Result<uuid::Uuid, SaveError> {
    let now = db::schedules::db_now(&mut *pool.acquire().await.map_err(db::Error::from)?).await?;
    let next = first_fire(spec, now).map_err(SaveError::Invalid)?;
    let declared_by =
        (origin == Origin::Declared).then(|| format!("the scheduler on host {:?}", hostname()));
    match db::schedules::upsert(pool, spec, next, declared_by.as_deref()).await {
        Ok(id) => Ok(id),
        Err(db::Error::Conflict(message)) => Err(SaveError::Declared(message)),
        Err(e) => Err(e.into()),
    }
}

/// This machine's name, for `schedules.declared_by`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Why a schedule could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The schedule is not valid.
    #[error("{0}")]
    Invalid(Invalid),
    /// The name belongs to a schedule declared in ordinaut.toml (the message says whose).
    #[error("{0}")]
    Declared(String),
    /// The store failed.
    #[error(transparent)]
    Db(#[from] db::Error),
}

/// Makes the declared schedules in the database match the file: creates and updates
/// those in it, removes declared ones no longer in it. A configuration declaring no
/// schedules removes nothing.
pub async fn sync_declared(pool: &PgPool, config: &Config) -> Result<(), SaveError> {
    for (name, s) in &config.schedules {
        let spec = config
            .declared_schedule(name, s)
            .map_err(|r| SaveError::Invalid(Invalid::new(format!("schedules.{name}"), r)))?;
        save(pool, &spec, Origin::Declared).await?;
    }
    if config.schedules.is_empty() {
        // No schedules in the file (or no file at all: a pod without its ConfigMap, a
        // scheduler started from another directory, `ordinaut dev` on a shared
        // database). Deleting "every declared schedule not in it" would wipe the ones
        // the real file declares; remove those with `ordinaut schedules delete`.
        if db::schedules::list(pool)
            .await?
            .iter()
            .any(|s| s.state.declared)
        {
            tracing::info!(
                "no schedules declared in the configuration; leaving the declared schedules in the database as they are"
            );
        }
        return Ok(());
    }
    let keep: Vec<String> = config.schedules.keys().cloned().collect();
    let removed = db::schedules::delete_undeclared(pool, &keep).await?;
    if removed > 0 {
        tracing::info!(
            removed,
            "removed schedules no longer declared in ordinaut.toml"
        );
    }
    Ok(())
}

/// Resumes a paused schedule from its next cron time after now (missed fires are not
/// replayed).
pub async fn resume(pool: &PgPool, name: &str) -> db::Result<()> {
    let row = db::schedules::get(pool, name)
        .await?
        .ok_or_else(|| db::Error::NotFound {
            what: "schedule",
            id: name.to_owned(),
        })?;
    let now = db::schedules::db_now(&mut *pool.acquire().await?).await?;
    let next = cron::CronExpr::parse(&row.spec.cron)
        .ok()
        .zip(cron::parse_timezone(&row.spec.timezone).ok())
        .and_then(|(c, tz)| c.next_after(now, tz));
    db::schedules::set_paused(pool, name, false, next).await
}

/// Fire-loop options from the configuration.
pub fn fire_options(config: &Config) -> FireOptions {
    FireOptions {
        tick: Duration::from_secs_f64(config.scheduler.tick),
        misfire_grace: Duration::from_secs_f64(config.scheduler.misfire_grace_time),
        default_max_attempts: config.default_max_attempts(),
        heartbeat: None,
    }
}
