//! `ordinaut queues ...`: list queues with live counts, pause, resume, set defaults and
//! limits.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::config::Config;
use crate::db::{self, queues};
use crate::model::{self, limits};

use super::invalid;

/// `ordinaut queues ...`
#[derive(Debug, Subcommand)]
pub enum QueuesCommand {
    /// Queues with live counts.
    List,
    /// Stop workers claiming from a queue (jobs stay).
    Pause {
        /// Queue name.
        name: String,
    },
    /// Let workers claim from a queue again.
    Resume {
        /// Queue name.
        name: String,
    },
    /// Set a queue's defaults.
    Set {
        /// Queue name.
        name: String,
        /// Default attempts for jobs that set none.
        #[arg(long)]
        max_attempts: Option<i32>,
        /// Default per-attempt timeout (60s, 10m).
        #[arg(long)]
        timeout: Option<String>,
        /// Backoff base (1s).
        #[arg(long)]
        backoff_base: Option<String>,
        /// Backoff cap (60s).
        #[arg(long)]
        backoff_max: Option<String>,
        /// Keep completed jobs in history (true/false).
        #[arg(long)]
        keep_completed: Option<bool>,
        /// Most jobs running at once across all workers, or `none`.
        #[arg(long)]
        concurrency_limit: Option<String>,
        /// Job starts per period (`10/s`, `100/m`, `5/h`, `20/10s`), or `none`.
        #[arg(long)]
        rate_limit: Option<String>,
        /// Starts allowed at once when the rate allows (default: the rate).
        #[arg(long, requires = "rate_limit")]
        burst: Option<i32>,
        /// Most running jobs sharing a concurrency key, or `none`.
        #[arg(long)]
        key_concurrency: Option<String>,
    },
}

/// A `queues` command with its arguments validated.
enum Action {
    List,
    Pause(String),
    Resume(String),
    Set(String, Box<queues::QueueSettings>),
}

/// Validates `cmd`, then connects and runs it.
pub(super) async fn run(cmd: QueuesCommand, config: &Config) -> anyhow::Result<()> {
    let action = Action::parse(cmd)?;
    crate::app::with_migrated_pool(config, async |pool| action.run(pool).await).await
}

fn queue_name(name: String) -> anyhow::Result<String> {
    model::check_name("queue name", &name).map_err(invalid)?;
    Ok(name)
}

impl Action {
    fn parse(cmd: QueuesCommand) -> anyhow::Result<Self> {
        Ok(match cmd {
            QueuesCommand::List => Action::List,
            QueuesCommand::Pause { name } => Action::Pause(queue_name(name)?),
            QueuesCommand::Resume { name } => Action::Resume(queue_name(name)?),
            QueuesCommand::Set {
                name,
                max_attempts,
                timeout,
                backoff_base,
                backoff_max,
                keep_completed,
                concurrency_limit,
                rate_limit,
                burst,
                key_concurrency,
            } => {
                let name = queue_name(name)?;
                let dur = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<Duration>> {
                    v.as_deref()
                        .map(|t| match model::parse_duration(t) {
                            Ok(d) if d > Duration::ZERO => Ok(d),
                            Ok(_) => Err(anyhow::anyhow!("invalid {flag}: must be positive")),
                            Err(r) => Err(anyhow::anyhow!("invalid {flag}: {r}")),
                        })
                        .transpose()
                };
                if let Some(n) = max_attempts {
                    limits::check_max_attempts("--max-attempts", n).map_err(invalid)?;
                }
                let rate_limit = match rate_limit.as_deref() {
                    None => queues::Change::Keep,
                    Some("none") => queues::Change::Clear,
                    Some(text) => {
                        let (limit, period) = model::parse_rate(text)
                            .map_err(|r| anyhow::anyhow!("invalid --rate-limit: {r}"))?;
                        if let Some(b) = burst
                            && b < 1
                        {
                            bail!("invalid --burst: must be at least 1");
                        }
                        queues::Change::Set(queues::RateLimit {
                            limit,
                            period,
                            burst,
                        })
                    }
                };
                let settings = queues::QueueSettings {
                    concurrency_limit: limit_change("--concurrency-limit", &concurrency_limit)?,
                    rate_limit,
                    key_concurrency: limit_change("--key-concurrency", &key_concurrency)?,
                    max_attempts,
                    timeout: dur("--timeout", &timeout)?,
                    backoff_base: dur("--backoff-base", &backoff_base)?,
                    backoff_max: dur("--backoff-max", &backoff_max)?,
                    keep_completed,
                };
                Action::Set(name, Box::new(settings))
            }
        })
    }

    async fn run(self, pool: &db::Pool) -> anyhow::Result<()> {
        match self {
            Action::List => {
                let rows = queues::queue_stats(pool, None)
                    .await
                    .context("while reading queues")?;
                print_queues(&rows);
            }
            Action::Pause(name) => {
                queues::set_paused(pool, &name, true)
                    .await
                    .context("while pausing")?;
                println!("paused {name}");
            }
            Action::Resume(name) => {
                queues::set_paused(pool, &name, false)
                    .await
                    .context("while resuming")?;
                println!("resumed {name}");
            }
            Action::Set(name, settings) => {
                queues::upsert_settings(pool, &name, &settings)
                    .await
                    .context("while updating the queue")?;
                println!("updated {name}");
            }
        }
        Ok(())
    }
}

fn print_queues(rows: &[queues::QueueStats]) {
    println!(
        "{:<24}  {:>6}  {:>9}  {:>9}  {:>9}  {:>10}  {:>11}  LIMITS",
        "QUEUE", "PAUSED", "AVAILABLE", "SCHEDULED", "RUNNING", "FAILED_24H", "OLDEST_WAIT"
    );
    for q in rows {
        let oldest = q
            .oldest_wait_seconds
            .map(|s| format!("{s:.1}s"))
            .unwrap_or_else(|| "-".to_owned());
        let running = match q.concurrency_limit {
            Some(limit) => format!("{}/{limit}", q.running),
            None => q.running.to_string(),
        };
        let mut limits = Vec::new();
        if let Some(limit) = q.concurrency_limit {
            limits.push(format!("concurrency={limit}"));
        }
        if let Some(rate) = q.rate_limit {
            limits.push(format!(
                "rate={rate}/{} burst={} tokens={:.1}",
                humantime::format_duration(Duration::from_millis(q.rate_period_ms as u64)),
                q.rate_burst.unwrap_or(rate),
                q.rate_tokens.unwrap_or(0.0)
            ));
        }
        if let Some(k) = q.key_concurrency {
            limits.push(format!("per-key={k}"));
        }
        println!(
            "{:<24}  {:>6}  {:>9}  {:>9}  {:>9}  {:>10}  {:>11}  {}",
            q.name,
            if q.paused { "yes" } else { "no" },
            q.available,
            q.scheduled,
            running,
            q.failed_recently,
            oldest,
            if limits.is_empty() {
                "-".to_owned()
            } else {
                limits.join(" ")
            }
        );
    }
}

fn limit_change(flag: &str, value: &Option<String>) -> anyhow::Result<queues::Change<i32>> {
    Ok(match value.as_deref() {
        None => queues::Change::Keep,
        Some("none") => queues::Change::Clear,
        Some(text) => match text.parse::<i32>() {
            Ok(n) if n >= 1 => queues::Change::Set(n),
            _ => bail!("invalid {flag}: {text:?} is not a positive number or `none`"),
        },
    })
}
