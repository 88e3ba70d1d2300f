//! The command line: clap definitions and dispatch. Each operator command group lives in
//! its own file ([`jobs`], [`queues`], [`schedules`], [`workflows`]) and turns its arguments into a
//! validated action before it connects; the long-running subcommands (`api`, `worker`,
//! `scheduler`, `dev`) are wired in [`crate::app`].
//!
//! Command bodies are startup glue: they use anyhow with context, call the library,
//! and print. They hold no SQL.

pub mod jobs;
pub mod kinds;
pub mod queues;
pub mod schedules;
pub mod workflows;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;

pub use jobs::{EnqueueArgs, JobsCommand, job_from_args};
pub use queues::QueuesCommand;
pub use schedules::{ScheduleArgs, SchedulesCommand};

/// Ordinaut: a job queue and scheduler whose only dependency is PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "ordinaut", version, about)]
pub struct Cli {
    /// Configuration file (default: $ORDINAUT_CONFIG, else ./ordinaut.toml if present).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (API_HOST:API_PORT) until SIGTERM/SIGINT.
    Api,
    /// Apply database migrations and exit.
    Migrate,
    /// Claim and run jobs.
    Worker(WorkerArgs),
    /// Fire cron schedules and run maintenance (lease rescue, history retention).
    Scheduler,
    /// API, scheduler and worker in one process, on a local Postgres if DATABASE_URL is unset.
    Dev(WorkerArgs),
    /// Enqueue, inspect, cancel and retry jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Create, list, pause, resume, trigger and delete cron schedules.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Submit, show, list, cancel, retry and append to workflows (jobs with dependencies).
    #[command(subcommand)]
    Workflows(workflows::WorkflowsCommand),
    /// Measure throughput and latency on a real Postgres (a local one if DATABASE_URL is unset).
    Bench(crate::bench::BenchArgs),
    /// List queues with live counts, pause, resume, set defaults.
    Queues {
        /// What to do (default: list).
        #[command(subcommand)]
        command: Option<QueuesCommand>,
    },
    /// Probe health for container and Kubernetes checks: exit 0 if healthy, 1 if not.
    Healthcheck(crate::healthcheck::HealthcheckArgs),
    /// List the kinds workers serve, with their defaults and serving workers.
    Kinds(kinds::KindsArgs),
}

/// Worker overrides.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Queues to serve, comma-separated (overrides WORKER_QUEUES).
    #[arg(long, value_delimiter = ',')]
    pub queues: Option<Vec<String>>,
    /// Jobs run at once (overrides WORKER_CONCURRENCY).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Serve this process's `/metrics` and `/health` on HOST:PORT (overrides WORKER_METRICS_ADDR).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
}

/// Runs the parsed command.
pub async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate => crate::app::migrate(&config).await,
        Command::Api => crate::app::api(&config).await,
        Command::Worker(args) => crate::app::worker(&args.apply(config)?).await,
        Command::Scheduler => crate::app::scheduler(&config).await,
        Command::Dev(args) => crate::app::dev(args.apply(config)?).await,
        Command::Jobs(cmd) => jobs::run(cmd, &config).await,
        Command::Schedules(cmd) => schedules::run(cmd, &config).await,
        Command::Workflows(cmd) => workflows::run(cmd, &config).await,
        Command::Queues { command } => {
            queues::run(command.unwrap_or(QueuesCommand::List), &config).await
        }
        Command::Bench(args) => crate::bench::run(args, config.database_url.clone()).await,
        Command::Healthcheck(args) => crate::healthcheck::run(&args, &config).await,
        Command::Kinds(args) => kinds::run(&args, &config).await,
    }
}

/// A command-line value that breaks a rule, as the one-line error the CLI prints
/// (`invalid --max-attempts: 0 is out of range 1..=1000`).
fn invalid(e: crate::model::Invalid) -> anyhow::Error {
    anyhow::anyhow!("invalid {e}")
}

impl WorkerArgs {
    /// `config` with these overrides, validated again.
    fn apply(&self, mut config: Config) -> anyhow::Result<Config> {
        if let Some(q) = &self.queues {
            config.worker.queues = q
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(c) = self.concurrency {
            config.worker.concurrency = c;
        }
        if let Some(addr) = &self.metrics_addr {
            config.worker.metrics_addr = Some(addr.clone());
        }
        config.validate()?;
        Ok(config)
    }
}
