//! `ordinaut scheduler`: fires cron schedules and runs maintenance (rescue of dead
//! workers' jobs, history retention, pruning of dead worker rows).
//!
//! Every service here is safe to run in any number of processes at once.

pub mod cron;
pub mod fire;
pub mod heartbeat;
pub mod rescuer;
pub mod retention;

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;

pub use fire::{FireOptions, Firer};
pub use heartbeat::Heartbeat;
pub use rescuer::{Rescuer, RescuerOptions};
pub use retention::Retention;

use crate::config::{Config, ScheduleConfig};
use crate::db::{self, schedules::ScheduleSpec};
use crate::model;

/// A schedule's fields as given by a caller (CLI, API, file), before validation.
#[derive(Debug, Clone, Default)]
pub struct ScheduleInput {
    /// Name.
    pub name: String,
    /// Cron expression.
    pub cron: String,
    /// IANA timezone; None = TZ.
    pub timezone: Option<String>,
    /// Job queue.
    pub queue: String,
    /// Job kind.
    pub kind: String,
    /// Job payload.
    pub payload: Option<serde_json::Value>,
    /// Job priority.
    pub priority: i32,
    /// Job max attempts.
    pub max_attempts: Option<i32>,
    /// Job timeout.
    pub timeout: Option<Duration>,
    /// Job unique key.
    pub unique_key: Option<String>,
    /// allow | skip.
    pub overlap: Option<String>,
    /// Misfire grace.
    pub misfire_grace: Option<Duration>,
}

/// Validates a schedule; the error names the field and the problem.
pub fn validate(
    input: &ScheduleInput,
    config: &Config,
    declared: bool,
) -> Result<ScheduleSpec, String> {
    model::validate_name(&input.name).map_err(|r| format!("name: {r}"))?;
    cron::CronExpr::parse(&input.cron).map_err(|r| format!("cron: {r}"))?;
    let timezone = input.timezone.clone().unwrap_or_else(|| config.tz.clone());
    cron::parse_timezone(&timezone).map_err(|r| format!("timezone: {r}"))?;
    model::validate_name(&input.queue).map_err(|r| format!("queue: {r}"))?;
    model::validate_name(&input.kind).map_err(|r| format!("kind: {r}"))?;
    let priority =
        model::validate_priority(input.priority).map_err(|r| format!("priority: {r}"))?;
    if let Some(n) = input.max_attempts
        && !(1..=1000).contains(&n)
    {
        return Err(format!("max_attempts: {n} is out of range 1..=1000"));
    }
    let overlap = input.overlap.clone().unwrap_or_else(|| "allow".to_owned());
    if overlap != "allow" && overlap != "skip" {
        return Err(format!("overlap: {overlap:?} must be allow or skip"));
    }
    let payload = input
        .payload
        .clone()
        .unwrap_or_else(|| serde_json::json!({}));
    if payload.to_string().len() > config.max_payload_bytes {
        return Err(format!(
            "payload: exceeds the limit of {} bytes",
            config.max_payload_bytes
        ));
    }
    Ok(ScheduleSpec {
        name: input.name.clone(),
        cron: input.cron.trim().to_owned(),
        timezone,
        queue: input.queue.clone(),
        kind: input.kind.clone(),
        payload,
        priority,
        max_attempts: input.max_attempts,
        timeout: input.timeout,
        unique_key: input.unique_key.clone(),
        overlap,
        misfire_grace: input.misfire_grace,
        declared,
    })
}

/// Validates a schedule declared in ordinaut.toml.
pub fn spec_from_config(
    name: &str,
    s: &ScheduleConfig,
    config: &Config,
) -> Result<ScheduleSpec, String> {
    let input = ScheduleInput {
        name: name.to_owned(),
        cron: s.cron.clone(),
        timezone: s.timezone.clone(),
        queue: s.queue.clone(),
        kind: s.kind.clone(),
        payload: s.payload.clone(),
        priority: s.priority,
        max_attempts: s.max_attempts,
        timeout: s.timeout,
        unique_key: s.unique_key.clone(),
        overlap: s.overlap.clone(),
        misfire_grace: s.misfire_grace,
    };
    validate(&input, config, true)
}

/// The first fire time of `spec` after `now`.
pub fn first_fire(
    spec: &ScheduleSpec,
    now: chrono::DateTime<Utc>,
) -> Result<chrono::DateTime<Utc>, String> {
    let cron = cron::CronExpr::parse(&spec.cron)?;
    let tz = cron::parse_timezone(&spec.timezone)?;
    cron.next_after(now, tz)
        .ok_or_else(|| format!("cron expression {:?} never fires again", spec.cron))
}

/// Creates or updates a schedule. Its first fire is computed from the database's clock,
/// the one the fire loop compares with. A declared schedule cannot be overwritten by an
/// undeclared spec ([`SaveError::Declared`]).
pub async fn save(pool: &PgPool, spec: &ScheduleSpec) -> Result<uuid::Uuid, SaveError> {
    let now = db::schedules::db_now(&mut *pool.acquire().await.map_err(db::Error::from)?).await?;
    let next = first_fire(spec, now).map_err(SaveError::Invalid)?;
    let declared_by = format!("the scheduler on host {:?}", hostname());
    match db::schedules::upsert(pool, spec, next, Some(&declared_by)).await {
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
    Invalid(String),
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
        let spec = spec_from_config(name, s, config)
            .map_err(|r| SaveError::Invalid(format!("schedules.{name}: {r}")))?;
        save(pool, &spec).await?;
    }
    if config.schedules.is_empty() {
        // No schedules in the file (or no file at all: a pod without its ConfigMap, a
        // scheduler started from another directory, `ordinaut dev` on a shared
        // database). Deleting "every declared schedule not in it" would wipe the ones
        // the real file declares; remove those with `ordinaut schedules delete`.
        if db::schedules::list(pool).await?.iter().any(|s| s.declared) {
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
    let next = cron::CronExpr::parse(&row.cron)
        .ok()
        .zip(cron::parse_timezone(&row.timezone).ok())
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
