//! `ordinaut workflows ...`: submit, show, list, cancel, retry and append, straight on
//! the database through db::workflows (the same SQL functions as the API).

use anyhow::{Context, bail};
use clap::Subcommand;
use uuid::Uuid;

use crate::config::Config;
use crate::db::workflows;

/// `ordinaut workflows ...`
#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// Submit a workflow from a JSON file (`-`: stdin), all or nothing; prints its id.
    Submit {
        /// Path of the workflow JSON (the body of POST /v1/workflows), or `-`.
        file: String,
    },
    /// Show a workflow with its steps, states, dependencies and outputs (JSON).
    Show {
        /// Workflow id.
        id: Uuid,
    },
    /// List workflows, newest first.
    List {
        /// Only this state (running, completed, failed, cancelled).
        #[arg(long)]
        state: Option<String>,
        /// At most this many (1..=1000).
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Cancel a workflow: waiting steps and jobs at once, running jobs are stopped.
    Cancel {
        /// Workflow id.
        id: Uuid,
    },
    /// Retry failed and cancelled steps; what was cancelled because of them runs again.
    Retry {
        /// Workflow id.
        id: Uuid,
    },
    /// Append steps to a running workflow from a JSON file (`{"jobs": [...]}`) or `-`.
    Append {
        /// Workflow id.
        id: Uuid,
        /// Path of the JSON, or `-`.
        file: String,
    },
}

fn read_json(file: &str) -> anyhow::Result<serde_json::Value> {
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("{file} is not valid JSON"))
}

/// Runs one `workflows` subcommand.
pub(super) async fn run(cmd: WorkflowsCommand, config: &Config) -> anyhow::Result<()> {
    // Read and check input before touching the database.
    let input = match &cmd {
        WorkflowsCommand::Submit { file } | WorkflowsCommand::Append { file, .. } => {
            let mut spec = read_json(file)?;
            workflows::normalize_spec(&mut spec)?;
            Some(spec)
        }
        WorkflowsCommand::List { state, limit } => {
            if !(1..=1000).contains(limit) {
                bail!("invalid --limit: {limit} is out of range 1..=1000");
            }
            if let Some(s) = state
                && !["running", "completed", "failed", "cancelled"].contains(&s.as_str())
            {
                bail!("invalid --state: {s:?} is not one of running, completed, failed, cancelled");
            }
            None
        }
        _ => None,
    };
    let input = input.unwrap_or_default();
    crate::app::with_migrated_pool(config, async |pool| execute(cmd, input, pool, config).await)
        .await
}

async fn execute(
    cmd: WorkflowsCommand,
    spec: serde_json::Value,
    pool: &crate::db::Pool,
    config: &Config,
) -> anyhow::Result<()> {
    let pool = pool.clone();
    match cmd {
        WorkflowsCommand::Submit { .. } => {
            let id = workflows::submit(&pool, &spec, config.default_max_attempts()).await?;
            println!("{id}");
        }
        WorkflowsCommand::Append { id, .. } => {
            let Some(jobs) = spec.get("jobs") else {
                bail!("invalid input: expected {{\"jobs\": [...]}}");
            };
            for s in workflows::append(&pool, id, jobs, config.default_max_attempts()).await? {
                println!("{}  {}", s.job_id, s.name);
            }
        }
        WorkflowsCommand::Show { id } => {
            let w = workflows::get(&pool, id).await?;
            println!("{}", serde_json::to_string_pretty(&w)?);
        }
        WorkflowsCommand::List { state, limit } => {
            let rows = workflows::list(&pool, state.as_deref(), None, limit).await?;
            println!(
                "{:<36}  {:<10}  {:>5}  {:<25}  NAME",
                "ID", "STATE", "STEPS", "CREATED"
            );
            for w in rows {
                println!(
                    "{:<36}  {:<10}  {:>5}  {:<25}  {}",
                    w.id,
                    w.state,
                    w.steps,
                    w.created_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    w.name
                );
            }
        }
        WorkflowsCommand::Cancel { id } => {
            workflows::cancel(&pool, id).await?;
            println!("cancelled");
        }
        WorkflowsCommand::Retry { id } => {
            let n = workflows::retry(&pool, id).await?;
            println!("retried {n} job(s)");
        }
    }
    Ok(())
}
