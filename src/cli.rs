//! The command line: clap definitions and the bodies of the operator commands.
//!
//! Command bodies are startup glue: they use anyhow with context, call the library,
//! and print. They hold no SQL.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Config;
use crate::db::{self, DbConfig, due_work, due_work::NewJob, history, queues};
use crate::model::{self, JobState};
use crate::pg_local::{LocalPg, StartOptions};
use crate::scheduler::{Rescuer, RescuerOptions};
use crate::worker::{Handlers, Worker, WorkerOptions};

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
    /// Run maintenance: rescue dead workers' jobs and expired leases.
    Scheduler,
    /// Worker and scheduler in one process, on a local Postgres if DATABASE_URL is unset.
    Dev(WorkerArgs),
    /// Enqueue, inspect, cancel and retry jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// List queues with live counts, pause, resume, set defaults.
    Queues {
        /// What to do (default: list).
        #[command(subcommand)]
        command: Option<QueuesCommand>,
    },
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
}

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
        /// Only this state (scheduled, available, running, completed, failed, cancelled).
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
    /// Queue name.
    #[arg(long)]
    pub queue: String,
    /// Job kind (as declared in ordinaut.toml).
    #[arg(long)]
    pub kind: String,
    /// JSON payload; `@path` reads it from a file, `-` from stdin.
    #[arg(long, default_value = "{}")]
    pub payload: String,
    /// Priority, -100..=100; lower runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
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
}

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
    },
}

/// Runs the parsed command.
pub async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate => {
            let db = db_config(&config)?;
            db::migrate(&db)
                .await
                .with_context(|| format!("while migrating {}", redact(&db.url)))?;
            tracing::info!(schema = %db.schema, version = db::latest_known_migration(), "database migrated");
            Ok(())
        }
        Command::Api => api(&config).await,
        Command::Worker(args) => {
            let config = apply_worker_args(config, &args)?;
            let db = db_config(&config)?;
            let pool = start(&db).await?;
            let shutdown = crate::shutdown::on_signal();
            run_worker_and_rescuer(&config, db, pool, shutdown, true).await
        }
        Command::Scheduler => {
            let db = db_config(&config)?;
            let pool = start(&db).await?;
            let shutdown = crate::shutdown::on_signal();
            tracing::info!("scheduler started");
            Rescuer::new(pool, RescuerOptions::from_config(&config))
                .run(shutdown)
                .await;
            tracing::info!("scheduler stopped");
            Ok(())
        }
        Command::Dev(args) => dev(apply_worker_args(config, &args)?).await,
        Command::Jobs(cmd) => jobs(cmd, &config).await,
        Command::Queues { command } => {
            queues_cmd(command.unwrap_or(QueuesCommand::List), &config).await
        }
    }
}

fn apply_worker_args(mut config: Config, args: &WorkerArgs) -> anyhow::Result<Config> {
    if let Some(q) = &args.queues {
        config.worker.queues = q
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
    }
    if let Some(c) = args.concurrency {
        config.worker.concurrency = c;
    }
    config.validate()?;
    Ok(config)
}

fn db_config(config: &Config) -> anyhow::Result<DbConfig> {
    let Some(url) = config.database_url.clone() else {
        bail!("DATABASE_URL is not set (or use `ordinaut dev`, which starts a local Postgres)");
    };
    Ok(DbConfig {
        url,
        schema: config.schema.clone(),
        max_connections: 10,
    })
}

/// `ordinaut api`: migrate, bind, serve until a signal, then shut down gracefully.
async fn api(config: &Config) -> anyhow::Result<()> {
    let db = db_config(config)?;
    let pool = start(&db).await?;
    let addr = format!("{}:{}", config.api.host, config.api.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("while binding the API to {addr}"))?;
    let local = listener
        .local_addr()
        .context("while reading the bound address")?;
    tracing::info!(address = %local, "api listening");
    let state =
        crate::api::AppState::new(pool.clone(), crate::api::ApiSettings::from_config(config));
    let shutdown = crate::shutdown::on_signal();
    crate::api::serve(listener, state, shutdown)
        .await
        .context("while serving the API")?;
    pool.close().await;
    tracing::info!("api stopped");
    Ok(())
}

/// Connects, checks the schema version and migrates. The error names the target.
async fn start(db: &DbConfig) -> anyhow::Result<db::Pool> {
    db::migrate(db)
        .await
        .with_context(|| format!("while connecting to and migrating {}", redact(&db.url)))?;
    db.connect()
        .await
        .with_context(|| format!("while connecting to {}", redact(&db.url)))
}

async fn run_worker_and_rescuer(
    config: &Config,
    db: DbConfig,
    pool: db::Pool,
    shutdown: CancellationToken,
    rescue: bool,
) -> anyhow::Result<()> {
    let handlers = Handlers::from_config(config);
    let worker = Worker::new(
        WorkerOptions::from_config(config),
        db,
        pool.clone(),
        handlers,
    );
    let rescuer = rescue.then(|| Rescuer::new(pool.clone(), RescuerOptions::from_config(config)));
    let rescuer_task = rescuer.map(|r| tokio::spawn(r.run(shutdown.clone())));
    let result = worker.run(shutdown.clone()).await;
    shutdown.cancel();
    if let Some(task) = rescuer_task {
        let _ = task.await;
    }
    pool.close().await;
    result.context("while running the worker")
}

async fn dev(mut config: Config) -> anyhow::Result<()> {
    if config.kinds.is_empty() {
        // No ordinaut.toml: give the printed example something visible to run.
        config.kinds.insert(
            "echo".to_owned(),
            crate::config::KindConfig::Command {
                program: "cat".to_owned(),
                args: Vec::new(),
                timeout: Some(Duration::from_secs(60)),
                env: Default::default(),
                cwd: None,
            },
        );
        config.kinds.insert(
            "noop".to_owned(),
            crate::config::KindConfig::Noop { timeout: None },
        );
        tracing::info!("no kinds configured; using the example kinds `echo` (runs cat) and `noop`");
    }
    let local = match &config.database_url {
        Some(_) => None,
        None => {
            let base = PathBuf::from(".ordinaut/pg");
            tracing::info!(path = %base.display(), "starting local PostgreSQL");
            let pg = tokio::task::spawn_blocking(move || {
                LocalPg::start(&base, &StartOptions::default())
            })
            .await
            .context("while starting local PostgreSQL")?
            .context("while starting local PostgreSQL")?;
            config.database_url = Some(pg.url("postgres"));
            Some(pg)
        }
    };
    let result = async {
        let db = db_config(&config)?;
        let pool = start(&db).await?;
        eprintln!("ordinaut dev: database {}", redact(&db.url));
        eprintln!(
            "ordinaut dev: in another terminal, enqueue a job and look at it:\n  \
             export DATABASE_URL={}\n  \
             cargo run --release -- jobs enqueue --queue default --kind echo --payload '{{\"hello\":\"world\"}}'\n  \
             cargo run --release -- jobs show <printed id>",
            db.url
        );
        let shutdown = crate::shutdown::on_signal();
        run_worker_and_rescuer(&config, db, pool, shutdown, true).await
    }
    .await;
    if let Some(pg) = local {
        tracing::info!("stopping local PostgreSQL");
        if let Err(e) = tokio::task::spawn_blocking(move || pg.stop()).await? {
            tracing::warn!(error = %e, "stopping local PostgreSQL failed");
        }
    }
    result
}

async fn connect_only(config: &Config) -> anyhow::Result<db::Pool> {
    let db = db_config(config)?;
    let pool = db
        .connect()
        .await
        .with_context(|| format!("while connecting to {}", redact(&db.url)))?;
    let mut conn = pool.acquire().await.context("while checking the schema")?;
    match db::applied_version(&mut conn)
        .await
        .context("while checking the schema")?
    {
        None => bail!(
            "database schema {} is not migrated; run `ordinaut migrate`",
            db.schema
        ),
        Some(v) if v > db::latest_known_migration() => bail!(
            "database schema is at migration {v}, newer than this ordinaut knows (up to {}); upgrade ordinaut",
            db::latest_known_migration()
        ),
        Some(_) => Ok(pool.clone()),
    }
}

/// Builds a job from CLI arguments, validating every field.
pub fn job_from_args(args: &EnqueueArgs, config: &Config) -> anyhow::Result<NewJob> {
    model::validate_name(&args.queue).map_err(|r| anyhow::anyhow!("invalid --queue: {r}"))?;
    model::validate_name(&args.kind).map_err(|r| anyhow::anyhow!("invalid --kind: {r}"))?;
    let text = match args.payload.as_str() {
        "-" => std::io::read_to_string(std::io::stdin())
            .map_err(|e| anyhow::anyhow!("invalid --payload: reading stdin: {e}"))?,
        p if p.starts_with('@') => std::fs::read_to_string(&p[1..])
            .map_err(|e| anyhow::anyhow!("invalid --payload: reading {}: {e}", &p[1..]))?,
        p => p.to_owned(),
    };
    if text.len() > config.max_payload_bytes {
        bail!(
            "invalid --payload: {} bytes exceeds the limit of {} bytes",
            text.len(),
            config.max_payload_bytes
        );
    }
    let payload: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("invalid --payload: not valid JSON: {e}"))?;
    let priority = model::validate_priority(args.priority)
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
    if let Some(n) = args.max_attempts
        && !(1..=1000).contains(&n)
    {
        bail!("invalid --max-attempts: {n} is out of range 1..=1000");
    }
    if let Some(k) = &args.unique_key
        && (k.is_empty() || k.len() > 512)
    {
        bail!("invalid --unique-key: must be 1 to 512 characters");
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
    let mut job = NewJob::new(&args.queue, &args.kind, payload);
    job.priority = priority;
    job.run_at = run_at;
    job.max_attempts = args.max_attempts;
    job.unique_key = args.unique_key.clone();
    job.timeout = timeout;
    Ok(job)
}

async fn jobs(cmd: JobsCommand, config: &Config) -> anyhow::Result<()> {
    // Validate arguments before touching the database.
    let job = match &cmd {
        JobsCommand::Enqueue(args) => Some(job_from_args(args, config)?),
        _ => None,
    };
    let pool = connect_only(config).await?;
    match cmd {
        JobsCommand::Enqueue(_) => {
            let job = job.expect("built above for Enqueue");
            let result = due_work::enqueue_many(&pool, &[job], config.default_max_attempts())
                .await
                .context("while enqueueing")?;
            println!("{}", result[0].id);
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
            let filter = history::JobFilter {
                queue,
                kind,
                state: state.map(|s| s.as_str().to_owned()),
                limit,
                ..Default::default()
            };
            let rows = history::list_jobs(&pool, &filter)
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
        JobsCommand::Show { id } => {
            let Some(job) = history::get_job(&pool, id)
                .await
                .context("while reading the job")?
            else {
                bail!("job {id} not found");
            };
            let attempts = db::attempts::list_attempts(&pool, id)
                .await
                .context("while reading attempts")?;
            let mut value = serde_json::to_value(&job)?;
            value["attempts"] = serde_json::to_value(&attempts)?;
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        JobsCommand::Cancel { id } => match due_work::cancel(&pool, id).await {
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
        JobsCommand::Retry { id } => match due_work::retry(&pool, id).await {
            Ok(()) => println!("re-enqueued {id}"),
            Err(e @ (db::Error::NotFound { .. } | db::Error::Conflict(_))) => bail!("{e}"),
            Err(e) => return Err(e).context("while retrying"),
        },
    }
    pool.close().await;
    Ok(())
}

async fn queues_cmd(cmd: QueuesCommand, config: &Config) -> anyhow::Result<()> {
    let name = match &cmd {
        QueuesCommand::List => None,
        QueuesCommand::Pause { name }
        | QueuesCommand::Resume { name }
        | QueuesCommand::Set { name, .. } => Some(name),
    };
    if let Some(name) = name {
        model::validate_name(name).map_err(|r| anyhow::anyhow!("invalid queue name: {r}"))?;
    }
    let settings = match &cmd {
        QueuesCommand::Set {
            max_attempts,
            timeout,
            backoff_base,
            backoff_max,
            keep_completed,
            ..
        } => {
            let dur = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<Duration>> {
                v.as_deref()
                    .map(|t| match model::parse_duration(t) {
                        Ok(d) if d > Duration::ZERO => Ok(d),
                        Ok(_) => Err(anyhow::anyhow!("invalid {flag}: must be positive")),
                        Err(r) => Err(anyhow::anyhow!("invalid {flag}: {r}")),
                    })
                    .transpose()
            };
            if let Some(n) = max_attempts
                && !(1..=1000).contains(n)
            {
                bail!("invalid --max-attempts: {n} is out of range 1..=1000");
            }
            Some(queues::QueueSettings {
                max_attempts: *max_attempts,
                timeout: dur("--timeout", timeout)?,
                backoff_base: dur("--backoff-base", backoff_base)?,
                backoff_max: dur("--backoff-max", backoff_max)?,
                keep_completed: *keep_completed,
            })
        }
        _ => None,
    };
    let pool = connect_only(config).await?;
    match cmd {
        QueuesCommand::List => {
            let rows = queues::queue_stats(&pool, None)
                .await
                .context("while reading queues")?;
            println!(
                "{:<24}  {:>6}  {:>9}  {:>9}  {:>7}  {:>10}  {:>12}",
                "QUEUE", "PAUSED", "AVAILABLE", "SCHEDULED", "RUNNING", "FAILED_24H", "OLDEST_WAIT"
            );
            for q in rows {
                let oldest = q
                    .oldest_wait_seconds
                    .map(|s| format!("{s:.1}s"))
                    .unwrap_or_else(|| "-".to_owned());
                println!(
                    "{:<24}  {:>6}  {:>9}  {:>9}  {:>7}  {:>10}  {:>12}",
                    q.name,
                    if q.paused { "yes" } else { "no" },
                    q.available,
                    q.scheduled,
                    q.running,
                    q.failed_recently,
                    oldest
                );
            }
        }
        QueuesCommand::Pause { name } => {
            queues::set_paused(&pool, &name, true)
                .await
                .context("while pausing")?;
            println!("paused {name}");
        }
        QueuesCommand::Resume { name } => {
            queues::set_paused(&pool, &name, false)
                .await
                .context("while resuming")?;
            println!("resumed {name}");
        }
        QueuesCommand::Set { name, .. } => {
            let settings = settings.expect("built above for Set");
            queues::upsert_settings(&pool, &name, &settings)
                .await
                .context("while updating the queue")?;
            println!("updated {name}");
        }
    }
    pool.close().await;
    Ok(())
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparseable DATABASE_URL>".to_owned(),
    }
}
