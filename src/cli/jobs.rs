//! `ordinaut jobs ...`: enqueue, list, show, cancel and retry jobs.

use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::config::Config;
use crate::db::{self, due_work, due_work::NewJob, history};
use crate::kinds::registry::KindsView;
use crate::model::{self, JobState, limits};

use super::invalid;

/// `ordinaut jobs ...`
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Enqueue one job and print its id.
    Enqueue(EnqueueArgs),
    /// List jobs, newest first.
    List {
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only this state (waiting, scheduled, available, running, completed, failed,
        /// cancelled; waiting: workflow steps whose dependencies have not all ended).
        #[arg(long)]
        state: Option<JobState>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show a job with its attempts, errors and captured output (JSON).
    Show {
        /// Job id.
        id: Uuid,
    },
    /// Cancel a job: at once if waiting; a running one is stopped by its worker.
    Cancel {
        /// Job id.
        id: Uuid,
    },
    /// Re-enqueue a failed or cancelled job.
    Retry {
        /// Job id.
        id: Uuid,
    },
}

/// Arguments of `jobs enqueue`.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// Queue name (default: the kind's queue, else `default`).
    #[arg(long)]
    pub queue: Option<String>,
    /// Job kind (as declared in ordinaut.toml).
    #[arg(long)]
    pub kind: String,
    /// JSON payload; `@path` reads it from a file, `-` from stdin.
    #[arg(long, default_value = "{}")]
    pub payload: String,
    /// Priority, -100..=100; lower runs first (default: the kind's, else 0).
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Run at this time (RFC 3339).
    #[arg(long, conflicts_with = "delay")]
    pub run_at: Option<String>,
    /// Run after this delay (30s, 5m, ...).
    #[arg(long)]
    pub delay: Option<String>,
    /// Attempts in all (1..=1000).
    #[arg(long)]
    pub max_attempts: Option<i32>,
    /// Idempotency key: a live job with this key is returned instead of a new one.
    #[arg(long)]
    pub unique_key: Option<String>,
    /// Per-attempt timeout (60s, 10m, ...).
    #[arg(long)]
    pub timeout: Option<String>,
    /// Jobs sharing this key obey their queue's key_concurrency (e.g. one scan per target).
    #[arg(long)]
    pub concurrency_key: Option<String>,
    /// Accept a kind no live worker serves (workers that start later).
    #[arg(long)]
    pub allow_unknown_kind: bool,
}

/// A `jobs` command with its arguments validated.
enum Action {
    /// Checked against the kinds in the local configuration; the registry check and
    /// the registry's kind defaults need the database.
    Enqueue(Box<EnqueueArgs>, String),
    List(history::JobFilter),
    Show(Uuid),
    Cancel(Uuid),
    Retry(Uuid),
}

/// Validates `cmd`, then connects and runs it.
pub(super) async fn run(cmd: JobsCommand, config: &Config) -> anyhow::Result<()> {
    let action = Action::parse(cmd, config)?;
    crate::app::with_migrated_pool(config, async |pool| action.run(pool, config).await).await
}

impl Action {
    fn parse(cmd: JobsCommand, config: &Config) -> anyhow::Result<Self> {
        Ok(match cmd {
            JobsCommand::Enqueue(args) => {
                let text = payload_text(&args)?;
                job_from_args(&args, config, &KindsView::build(&[], config), &text)?;
                Action::Enqueue(Box::new(args), text)
            }
            JobsCommand::List {
                queue,
                kind,
                state,
                limit,
            } => {
                if !(1..=10_000).contains(&limit) {
                    bail!("invalid --limit: {limit} is out of range 1..=10000");
                }
                Action::List(history::JobFilter {
                    matching: history::JobMatch {
                        queue,
                        kind,
                        state: state.map(|s| s.as_str().to_owned()),
                        ..Default::default()
                    },
                    limit,
                    ..Default::default()
                })
            }
            JobsCommand::Show { id } => Action::Show(id),
            JobsCommand::Cancel { id } => Action::Cancel(id),
            JobsCommand::Retry { id } => Action::Retry(id),
        })
    }

    async fn run(self, pool: &db::Pool, config: &Config) -> anyhow::Result<()> {
        match self {
            Action::Enqueue(args, text) => {
                let kinds = crate::kinds::registry::read(pool, config)
                    .await
                    .context("while reading the kinds registry")?;
                let mut job = job_from_args(&args, config, &kinds, &text)?;
                let span = crate::otel::trace_cli_enqueue(&mut job);
                let result = due_work::enqueue_many(pool, &[job], config.default_max_attempts())
                    .instrument(span)
                    .await
                    .context("while enqueueing")?;
                println!("{}", result[0].id);
            }
            Action::List(filter) => {
                let rows = history::list_jobs(pool, &filter)
                    .await
                    .context("while listing jobs")?;
                println!(
                    "{:<36}  {:<16}  {:<20}  {:<10}  {:>7}  CREATED",
                    "ID", "QUEUE", "KIND", "STATE", "ATTEMPT"
                );
                for j in rows {
                    println!(
                        "{:<36}  {:<16}  {:<20}  {:<10}  {:>3}/{:<3}  {}",
                        j.id,
                        j.queue,
                        j.kind,
                        j.state,
                        j.attempt,
                        j.max_attempts,
                        j.created_at.format("%Y-%m-%d %H:%M:%S")
                    );
                }
            }
            Action::Show(id) => {
                let Some(job) = history::get_job(pool, id)
                    .await
                    .context("while reading the job")?
                else {
                    bail!("job {id} not found");
                };
                let attempts = db::attempts::list_attempts(pool, id)
                    .await
                    .context("while reading attempts")?;
                let step = match job.workflow_id {
                    Some(_) => db::workflows::step_of_job(pool, id)
                        .await
                        .context("while reading the workflow step")?,
                    None => None,
                };
                let mut value = serde_json::to_value(&job)?;
                value["attempts"] = serde_json::to_value(&attempts)?;
                value["workflow_step"] = serde_json::to_value(&step)?;
                println!("{}", serde_json::to_string_pretty(&value)?);
            }
            Action::Cancel(id) => match due_work::cancel(pool, id).await {
                Ok(due_work::CancelResult::Cancelled) => println!("cancelled {id}"),
                Ok(due_work::CancelResult::Requested) => {
                    println!("cancel requested for running job {id}")
                }
                Ok(due_work::CancelResult::AlreadyFinished(state)) => {
                    bail!("job {id} already finished ({state})")
                }
                Err(db::Error::NotFound { .. }) => bail!("job {id} not found"),
                Err(e) => return Err(e).context("while cancelling"),
            },
            Action::Retry(id) => match due_work::retry(pool, id).await {
                Ok(()) => println!("re-enqueued {id}"),
                Err(e @ (db::Error::NotFound { .. } | db::Error::Conflict(_))) => bail!("{e}"),
                Err(e) => return Err(e).context("while retrying"),
            },
        }
        Ok(())
    }
}

/// The text of `--payload`: as given, from a file (`@path`) or from stdin (`-`).
fn payload_text(args: &EnqueueArgs) -> anyhow::Result<String> {
    Ok(match args.payload.as_str() {
        "-" => std::io::read_to_string(std::io::stdin())
            .map_err(|e| anyhow::anyhow!("invalid --payload: reading stdin: {e}"))?,
        p if p.starts_with('@') => std::fs::read_to_string(&p[1..])
            .map_err(|e| anyhow::anyhow!("invalid --payload: reading {}: {e}", &p[1..]))?,
        p => p.to_owned(),
    })
}

/// Builds a job from CLI arguments and the payload's `text`, validating every field;
/// the kind's defaults and payload schema come from `kinds`.
pub fn job_from_args(
    args: &EnqueueArgs,
    config: &Config,
    kinds: &KindsView,
    text: &str,
) -> anyhow::Result<NewJob> {
    model::check_name("--kind", &args.kind).map_err(invalid)?;
    let (queue, defaults) = kinds.resolve(&args.kind, args.queue.clone());
    model::check_name("--queue", &queue).map_err(invalid)?;
    if text.len() > config.max_payload_bytes {
        bail!(
            "invalid --payload: {} bytes exceeds the limit of {} bytes",
            text.len(),
            config.max_payload_bytes
        );
    }
    let payload: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| anyhow::anyhow!("invalid --payload: not valid JSON: {e}"))?;
    let priority = model::validate_priority(args.priority.or(defaults.priority).unwrap_or(0))
        .map_err(|r| anyhow::anyhow!("invalid --priority: {r}"))?;
    let run_at: Option<DateTime<Utc>> = match (&args.run_at, &args.delay) {
        (Some(t), _) => Some(
            DateTime::parse_from_rfc3339(t)
                .map_err(|e| {
                    anyhow::anyhow!("invalid --run-at {t:?}: not an RFC 3339 timestamp ({e})")
                })?
                .with_timezone(&Utc),
        ),
        (None, Some(d)) => {
            let d =
                model::parse_duration(d).map_err(|r| anyhow::anyhow!("invalid --delay: {r}"))?;
            Some(Utc::now() + d)
        }
        (None, None) => None,
    };
    if let Some(n) = args.max_attempts {
        limits::check_max_attempts("--max-attempts", n).map_err(invalid)?;
    }
    if let Some(k) = &args.unique_key {
        limits::check_key("--unique-key", k).map_err(invalid)?;
    }
    let timeout = match &args.timeout {
        Some(t) => {
            let d =
                model::parse_duration(t).map_err(|r| anyhow::anyhow!("invalid --timeout: {r}"))?;
            if d < Duration::from_millis(1) {
                bail!("invalid --timeout: must be positive");
            }
            Some(d)
        }
        None => None,
    };
    kinds
        .check(
            &args.kind,
            &payload,
            config.registry.check_unknown_kinds && !args.allow_unknown_kind,
        )
        .map_err(|r| match r.field.as_str() {
            "kind" => anyhow::anyhow!("invalid --kind: {}", r.reason),
            field => anyhow::anyhow!("invalid --payload: {field} {}", r.reason),
        })?;
    let mut job = NewJob::new(&queue, &args.kind, payload);
    job.priority = priority;
    job.run_at = run_at;
    job.max_attempts = args.max_attempts.or(defaults.max_attempts);
    job.unique_key = args.unique_key.clone();
    job.timeout = timeout;
    if let Some(k) = &args.concurrency_key {
        limits::check_key("--concurrency-key", k).map_err(invalid)?;
    }
    job.concurrency_key = args.concurrency_key.clone();
    Ok(job)
}
