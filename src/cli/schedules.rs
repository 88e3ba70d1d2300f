//! `ordinaut schedules ...`: create, list, show, pause, resume, trigger and delete cron
//! schedules.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::Config;
use crate::db;
use crate::db::schedules::ScheduleSpec;
use crate::model;
use crate::scheduler::{Firer, Origin, ScheduleInput};

/// `ordinaut schedules ...`
#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Create or update a schedule (by name).
    Create(Box<ScheduleArgs>),
    /// List schedules with their next fire time.
    List,
    /// Show a schedule and its recent fires (JSON).
    Show {
        /// Schedule name.
        name: String,
    },
    /// Stop firing (missed fires while paused are not replayed).
    Pause {
        /// Schedule name.
        name: String,
    },
    /// Fire again from the next cron time.
    Resume {
        /// Schedule name.
        name: String,
    },
    /// Enqueue one job now, without disturbing the cadence.
    Trigger {
        /// Schedule name.
        name: String,
    },
    /// Delete a schedule (its jobs stay).
    Delete {
        /// Schedule name.
        name: String,
    },
}

/// Arguments of `schedules create`.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// Unique name.
    #[arg(long)]
    pub name: String,
    /// Cron expression: 5 fields, 6 with seconds first, or @hourly/@daily/...
    #[arg(long)]
    pub cron: String,
    /// IANA timezone (default: TZ).
    #[arg(long)]
    pub tz: Option<String>,
    /// Job queue.
    #[arg(long)]
    pub queue: String,
    /// Job kind.
    #[arg(long)]
    pub kind: String,
    /// Job payload (JSON).
    #[arg(long, default_value = "{}")]
    pub payload: String,
    /// Job priority.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Job max attempts.
    #[arg(long)]
    pub max_attempts: Option<i32>,
    /// Job timeout (60s, 10m).
    #[arg(long)]
    pub timeout: Option<String>,
    /// Job unique key.
    #[arg(long)]
    pub unique_key: Option<String>,
    /// allow (default) or skip while the previous job of this schedule is live.
    #[arg(long)]
    pub overlap: Option<String>,
    /// Misfire grace for this schedule (default SCHEDULER_MISFIRE_GRACE_TIME).
    #[arg(long)]
    pub misfire_grace: Option<String>,
}

/// A `schedules` command with its arguments validated.
enum Action {
    Create(Box<ScheduleSpec>),
    List,
    Show(String),
    Pause(String),
    Resume(String),
    Trigger(String),
    Delete(String),
}

/// Validates `cmd`, then connects and runs it.
pub(super) async fn run(cmd: SchedulesCommand, config: &Config) -> anyhow::Result<()> {
    let action = Action::parse(cmd, config)?;
    crate::app::with_migrated_pool(config, async |pool| action.run(pool, config).await).await
}

fn spec_from_args(a: &ScheduleArgs, config: &Config) -> anyhow::Result<ScheduleSpec> {
    let payload: serde_json::Value = serde_json::from_str(&a.payload)
        .map_err(|e| anyhow::anyhow!("invalid --payload: not valid JSON: {e}"))?;
    let duration = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<Duration>> {
        v.as_deref()
            .map(|t| model::parse_duration(t).map_err(|r| anyhow::anyhow!("invalid {flag}: {r}")))
            .transpose()
    };
    let input = ScheduleInput {
        name: a.name.clone(),
        cron: a.cron.clone(),
        timezone: a.tz.clone(),
        queue: a.queue.clone(),
        kind: a.kind.clone(),
        payload: Some(payload),
        priority: a.priority,
        max_attempts: a.max_attempts,
        timeout: duration("--timeout", &a.timeout)?,
        unique_key: a.unique_key.clone(),
        overlap: a.overlap.clone(),
        misfire_grace: duration("--misfire-grace", &a.misfire_grace)?,
    };
    crate::scheduler::validate(&input, config).map_err(|r| anyhow::anyhow!("invalid schedule: {r}"))
}

fn not_found(name: &str, e: db::Error) -> anyhow::Error {
    match e {
        db::Error::NotFound { .. } => anyhow::anyhow!("schedule {name:?} not found"),
        e => anyhow::Error::new(e),
    }
}

/// Prints `{what} {name}` once an action on schedule `name` is `done`; an unknown
/// schedule is said so by name.
fn say_done(done: db::Result<()>, name: &str, what: &str) -> anyhow::Result<()> {
    done.map_err(|e| not_found(name, e))?;
    println!("{what} {name}");
    Ok(())
}

impl Action {
    fn parse(cmd: SchedulesCommand, config: &Config) -> anyhow::Result<Self> {
        Ok(match cmd {
            SchedulesCommand::Create(a) => Action::Create(Box::new(spec_from_args(&a, config)?)),
            SchedulesCommand::List => Action::List,
            SchedulesCommand::Show { name } => Action::Show(name),
            SchedulesCommand::Pause { name } => Action::Pause(name),
            SchedulesCommand::Resume { name } => Action::Resume(name),
            SchedulesCommand::Trigger { name } => Action::Trigger(name),
            SchedulesCommand::Delete { name } => Action::Delete(name),
        })
    }

    async fn run(self, pool: &db::Pool, config: &Config) -> anyhow::Result<()> {
        match self {
            Action::Create(spec) => {
                crate::scheduler::save(pool, &spec, Origin::Api)
                    .await
                    .context("while saving the schedule")?;
                let row = db::schedules::get(pool, &spec.name)
                    .await?
                    .context("schedule vanished")?;
                println!(
                    "{} next fire {}",
                    row.spec.name,
                    row.state.next_run_at.to_rfc3339()
                );
            }
            Action::List => {
                println!(
                    "{:<24}  {:<20}  {:<16}  {:<16}  {:<6}  NEXT_RUN",
                    "NAME", "CRON", "TZ", "QUEUE/KIND", "PAUSED"
                );
                for s in db::schedules::list(pool).await? {
                    println!(
                        "{:<24}  {:<20}  {:<16}  {:<16}  {:<6}  {}",
                        s.spec.name,
                        s.spec.cron,
                        s.spec.timezone,
                        format!("{}/{}", s.spec.queue, s.spec.kind),
                        if s.state.paused { "yes" } else { "no" },
                        s.state.next_run_at.to_rfc3339()
                    );
                }
            }
            Action::Show(name) => {
                let row = db::schedules::get(pool, &name)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("schedule {name:?} not found"))?;
                let fires = db::schedules::recent_fires(pool, row.id, 20).await?;
                let mut value = serde_json::to_value(&row)?;
                value["recent_fires"] = serde_json::to_value(&fires)?;
                println!("{}", serde_json::to_string_pretty(&value)?);
            }
            Action::Pause(name) => {
                let done = db::schedules::set_paused(pool, &name, true, None).await;
                say_done(done, &name, "paused")?;
            }
            Action::Resume(name) => {
                let done = crate::scheduler::resume(pool, &name).await;
                say_done(done, &name, "resumed")?;
            }
            Action::Trigger(name) => {
                let firer = Firer::new(pool.clone(), crate::scheduler::fire_options(config));
                let id = firer
                    .trigger(&name)
                    .await
                    .map_err(|e| not_found(&name, e))?;
                println!("{id}");
            }
            Action::Delete(name) => {
                let done = db::schedules::delete(pool, &name).await;
                say_done(done, &name, "deleted")?;
            }
        }
        Ok(())
    }
}
