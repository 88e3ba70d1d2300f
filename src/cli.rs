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
use crate::scheduler::{Firer, Rescuer, RescuerOptions, Retention, ScheduleInput};
use crate::worker::{Handlers, Worker, WorkerOptions};

mod workflows;

/// The example configuration `ordinaut dev` uses when there is no ordinaut.toml.
const EXAMPLE_CONFIG: &str = include_str!("../ordinaut.example.toml");

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
    /// Jobs sharing this key obey their queue's key_concurrency (e.g. one scan per target).
    #[arg(long)]
    pub concurrency_key: Option<String>,
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
            let shutdown = crate::shutdown::on_signal();
            let Some(pool) = start_waiting(&db, &config, &shutdown).await? else {
                return Ok(());
            };
            let result = run_worker_and_rescuer(&config, db, pool.clone(), shutdown, true).await;
            pool.close().await;
            result
        }
        Command::Scheduler => {
            let db = db_config(&config)?;
            let shutdown = crate::shutdown::on_signal();
            let Some(pool) = start_waiting(&db, &config, &shutdown).await? else {
                return Ok(());
            };
            let heartbeat = crate::scheduler::heartbeat::path(&config);
            tracing::info!(heartbeat = %heartbeat.display(), "scheduler started");
            run_scheduler(&config, pool.clone(), shutdown, Some(heartbeat)).await?;
            pool.close().await;
            tracing::info!("scheduler stopped");
            Ok(())
        }
        Command::Schedules(cmd) => schedules_cmd(cmd, &config).await,
        Command::Dev(args) => dev(apply_worker_args(config, &args)?).await,
        Command::Jobs(cmd) => jobs(cmd, &config).await,
        Command::Workflows(cmd) => workflows::run(cmd, &config).await,
        Command::Bench(args) => crate::bench::run(args, config.database_url.clone()).await,
        Command::Queues { command } => {
            queues_cmd(command.unwrap_or(QueuesCommand::List), &config).await
        }
        Command::Healthcheck(args) => crate::healthcheck::run(&args, &config).await,
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
    if let Some(addr) = &args.metrics_addr {
        config.worker.metrics_addr = Some(addr.clone());
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
        hot_path: false,
    })
}

/// `ordinaut api`: migrate, bind, serve until a signal, then shut down gracefully.
async fn api(config: &Config) -> anyhow::Result<()> {
    let db = DbConfig {
        max_connections: config.api.db_pool_size,
        ..db_config(config)?
    };
    let shutdown = crate::shutdown::on_signal();
    let listener = bind_api(config).await?;
    let Some(pool) = wait_for_primary(&db, &shutdown, || start(&db)).await? else {
        return Ok(());
    };
    serve_api(config, pool.clone(), listener, shutdown).await?;
    pool.close().await;
    Ok(())
}

async fn bind_api(config: &Config) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = format!("{}:{}", config.api.host, config.api.port);
    tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("while binding the API to {addr}"))
}

async fn serve_api(
    config: &Config,
    pool: db::Pool,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let local = listener
        .local_addr()
        .context("while reading the bound address")?;
    tracing::info!(address = %local, "api listening");
    let state = crate::api::AppState::new(pool, crate::api::ApiSettings::from_config(config));
    crate::api::serve(listener, state, shutdown)
        .await
        .context("while serving the API")?;
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

/// [`start_with`], waiting with backoff while servers answer but none is a writable
/// primary (a failover, a standby listed first); None when `shutdown` fires first.
async fn start_waiting(
    db: &DbConfig,
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<db::Pool>> {
    wait_for_primary(db, shutdown, || start_with(db, config)).await
}

/// Runs `attempt` until it succeeds, fails for another reason than a missing primary,
/// or `shutdown` fires (None). One log line per backoff step, with a count.
async fn wait_for_primary<F, Fut>(
    db: &DbConfig,
    shutdown: &CancellationToken,
    mut attempt: F,
) -> anyhow::Result<Option<db::Pool>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<db::Pool>>,
{
    let mut delay = Duration::from_millis(250);
    let mut failures: u64 = 0;
    loop {
        let result = tokio::select! {
            r = attempt() => r,
            _ = shutdown.cancelled() => return Ok(None),
        };
        match result {
            Ok(pool) => {
                if failures > 0 {
                    tracing::info!(failures, "writable primary found");
                }
                return Ok(Some(pool));
            }
            Err(e)
                if e.chain().any(|c| {
                    c.downcast_ref::<db::Error>()
                        .is_some_and(db::Error::waits_for_primary)
                }) =>
            {
                failures += 1;
                tracing::warn!(
                    target_db = %db.redacted(),
                    error = %format!("{e:#}"),
                    failures,
                    retry_in_ms = delay.as_millis() as u64,
                    "no writable primary yet; waiting"
                );
                tokio::select! {
                    _ = tokio::time::sleep(crate::worker::jittered(delay)) => {}
                    _ = shutdown.cancelled() => return Ok(None),
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Connects, migrates, and applies the queues declared in ordinaut.toml.
async fn start_with(db: &DbConfig, config: &Config) -> anyhow::Result<db::Pool> {
    let pool = start(db).await?;
    queues::apply_declared(&pool, &config.queues)
        .await
        .context("while applying the queues declared in ordinaut.toml")?;
    Ok(pool)
}

async fn run_worker_and_rescuer(
    config: &Config,
    db: DbConfig,
    pool: db::Pool,
    shutdown: CancellationToken,
    rescue: bool,
) -> anyhow::Result<()> {
    let handlers = Handlers::from_config(config);
    crate::metrics::allow_from_config(config);
    let metrics_server = match &config.worker.metrics_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("while binding the worker's metrics endpoint to {addr}")
            })?;
            crate::metrics::install();
            tracing::info!(address = %addr, "worker metrics listening");
            Some(tokio::spawn(crate::metrics::serve(
                listener,
                shutdown.clone(),
            )))
        }
        None => None,
    };
    // The worker's claim/finish/lease writes commit asynchronously; see DbConfig.
    let hot = DbConfig {
        hot_path: true,
        max_connections: 4,
        ..db.clone()
    };
    let hot_pool = hot
        .connect()
        .await
        .with_context(|| format!("while connecting to {}", redact(&hot.url)))?;
    let worker = Worker::new(
        WorkerOptions::from_config(config),
        hot,
        hot_pool.clone(),
        handlers,
    );
    let rescuer = rescue.then(|| Rescuer::new(pool.clone(), RescuerOptions::from_config(config)));
    let rescuer_task = rescuer.map(|r| tokio::spawn(r.run(shutdown.clone())));
    let result = worker.run(shutdown.clone()).await;
    shutdown.cancel();
    if let Some(task) = rescuer_task {
        let _ = task.await;
    }
    if let Some(task) = metrics_server
        && let Ok(Err(e)) = task.await
    {
        tracing::warn!(error = %e, "worker metrics endpoint failed");
    }
    hot_pool.close().await;
    result.context("while running the worker")
}

/// Fires schedules and runs maintenance (rescue, retention) until `shutdown`; the fire
/// loop rewrites `heartbeat` after every tick when given.
async fn run_scheduler(
    config: &Config,
    pool: db::Pool,
    shutdown: CancellationToken,
    heartbeat: Option<PathBuf>,
) -> anyhow::Result<()> {
    crate::scheduler::sync_declared(&pool, config)
        .await
        .context("while syncing the schedules declared in ordinaut.toml")?;
    let mut services = tokio::task::JoinSet::new();
    let mut fire = crate::scheduler::fire_options(config);
    fire.heartbeat = heartbeat.map(|p| std::sync::Arc::new(crate::scheduler::Heartbeat::new(p)));
    services.spawn(Firer::new(pool.clone(), fire).run(shutdown.clone()));
    services.spawn(
        Rescuer::new(pool.clone(), RescuerOptions::from_config(config)).run(shutdown.clone()),
    );
    services.spawn(
        Retention::new(pool.clone(), config.maintenance.history_retention_days)
            .run(shutdown.clone()),
    );
    while services.join_next().await.is_some() {}
    Ok(())
}

async fn dev(mut config: Config) -> anyhow::Result<()> {
    if config.kinds.is_empty() {
        // No ordinaut.toml: load the example so the printed curl does something visible.
        use figment::providers::{Format, Serialized, Toml};
        config = figment::Figment::from(Serialized::defaults(config))
            .merge(Toml::string(EXAMPLE_CONFIG))
            .extract()
            .context("while loading the example configuration")?;
        tracing::info!(
            "no ordinaut.toml found; using ordinaut.example.toml (kinds echo, ping_api, noop)"
        );
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
        // One pool for the API, scheduler and rescuer of `dev`: sized as the API's.
        let db = DbConfig {
            max_connections: config.api.db_pool_size,
            ..db_config(&config)?
        };
        let pool = start_with(&db, &config).await?;
        let listener = bind_api(&config).await?;
        let port = listener.local_addr().context("while reading the bound address")?.port();
        let token = config.api.tokens.first().map(|t| format!(" -H 'Authorization: Bearer {t}'")).unwrap_or_default();
        eprintln!("ordinaut dev: database {}", redact(&db.url));
        eprintln!("ordinaut dev: API on http://127.0.0.1:{port} (OpenAPI at /openapi.json)");
        eprintln!("ordinaut dev: dashboard on http://127.0.0.1:{port}/ui");
        eprintln!(
            "ordinaut dev: enqueue a job and wait for its result:\n  \
             curl -s{token} -X POST http://127.0.0.1:{port}/v1/jobs -H 'Content-Type: application/json' \\\n    \
             -d '{{\"queue\":\"default\",\"kind\":\"echo\",\"payload\":{{\"hello\":\"world\"}}}}'\n  \
             curl -s{token} 'http://127.0.0.1:{port}/v1/jobs/<id>?wait=10s'\n\
             ordinaut dev: or from the CLI: DATABASE_URL={} cargo run --release -- jobs list",
            db.url
        );
        // Before any part starts recording: the API's /metrics renders all three.
        crate::metrics::install();
        let shutdown = crate::shutdown::on_signal();
        let scheduler = {
            let (config, pool, shutdown) = (config.clone(), pool.clone(), shutdown.clone());
            // No heartbeat: dev has no health check, and parallel devs would share the file.
            tokio::spawn(async move { run_scheduler(&config, pool, shutdown, None).await })
        };
        let api = {
            let (config, pool, shutdown) = (config.clone(), pool.clone(), shutdown.clone());
            tokio::spawn(async move { serve_api(&config, pool, listener, shutdown).await })
        };
        let worker = run_worker_and_rescuer(&config, db, pool.clone(), shutdown.clone(), false).await;
        shutdown.cancel();
        scheduler.await.context("scheduler task")??;
        api.await.context("api task")??;
        pool.close().await;
        worker
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
    if let Some(k) = &args.concurrency_key
        && (k.is_empty() || k.len() > 512)
    {
        bail!("invalid --concurrency-key: must be 1 to 512 characters");
    }
    job.concurrency_key = args.concurrency_key.clone();
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
            concurrency_limit,
            rate_limit,
            burst,
            key_concurrency,
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
            let rate_limit = match rate_limit.as_deref() {
                None => queues::Change::Keep,
                Some("none") => queues::Change::Clear,
                Some(text) => {
                    let (limit, period) = model::parse_rate(text)
                        .map_err(|r| anyhow::anyhow!("invalid --rate-limit: {r}"))?;
                    if let Some(b) = burst
                        && *b < 1
                    {
                        bail!("invalid --burst: must be at least 1");
                    }
                    queues::Change::Set(queues::RateLimit {
                        limit,
                        period,
                        burst: *burst,
                    })
                }
            };
            Some(queues::QueueSettings {
                concurrency_limit: limit_change("--concurrency-limit", concurrency_limit)?,
                rate_limit,
                key_concurrency: limit_change("--key-concurrency", key_concurrency)?,
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

/// The connection string without its password, for messages (URL and keyword forms,
/// several hosts).
pub fn redact(url: &str) -> String {
    match db::connstr::ConnStr::parse(url) {
        Ok(c) => c.redacted(),
        Err(_) => "<unparseable DATABASE_URL>".to_owned(),
    }
}

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

async fn schedules_cmd(cmd: SchedulesCommand, config: &Config) -> anyhow::Result<()> {
    let spec = match &cmd {
        SchedulesCommand::Create(a) => {
            let payload: serde_json::Value = serde_json::from_str(&a.payload)
                .map_err(|e| anyhow::anyhow!("invalid --payload: not valid JSON: {e}"))?;
            let duration = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<Duration>> {
                v.as_deref()
                    .map(|t| {
                        model::parse_duration(t).map_err(|r| anyhow::anyhow!("invalid {flag}: {r}"))
                    })
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
            Some(
                crate::scheduler::validate(&input, config, false)
                    .map_err(|r| anyhow::anyhow!("invalid schedule: {r}"))?,
            )
        }
        _ => None,
    };
    let pool = connect_only(config).await?;
    let not_found = |name: &str, e: db::Error| match e {
        db::Error::NotFound { .. } => anyhow::anyhow!("schedule {name:?} not found"),
        e => anyhow::Error::new(e),
    };
    match cmd {
        SchedulesCommand::Create(_) => {
            let spec = spec.expect("built above for Create");
            crate::scheduler::save(&pool, &spec)
                .await
                .context("while saving the schedule")?;
            let row = db::schedules::get(&pool, &spec.name)
                .await?
                .context("schedule vanished")?;
            println!("{} next fire {}", row.name, row.next_run_at.to_rfc3339());
        }
        SchedulesCommand::List => {
            println!(
                "{:<24}  {:<20}  {:<16}  {:<16}  {:<6}  NEXT_RUN",
                "NAME", "CRON", "TZ", "QUEUE/KIND", "PAUSED"
            );
            for s in db::schedules::list(&pool).await? {
                println!(
                    "{:<24}  {:<20}  {:<16}  {:<16}  {:<6}  {}",
                    s.name,
                    s.cron,
                    s.timezone,
                    format!("{}/{}", s.queue, s.kind),
                    if s.paused { "yes" } else { "no" },
                    s.next_run_at.to_rfc3339()
                );
            }
        }
        SchedulesCommand::Show { name } => {
            let row = db::schedules::get(&pool, &name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("schedule {name:?} not found"))?;
            let fires = db::schedules::recent_fires(&pool, row.id, 20).await?;
            let mut value = serde_json::to_value(&row)?;
            value["recent_fires"] = serde_json::to_value(&fires)?;
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        SchedulesCommand::Pause { name } => {
            db::schedules::set_paused(&pool, &name, true, None)
                .await
                .map_err(|e| not_found(&name, e))?;
            println!("paused {name}");
        }
        SchedulesCommand::Resume { name } => {
            crate::scheduler::resume(&pool, &name)
                .await
                .map_err(|e| not_found(&name, e))?;
            println!("resumed {name}");
        }
        SchedulesCommand::Trigger { name } => {
            let firer = Firer::new(pool.clone(), crate::scheduler::fire_options(config));
            let id = firer
                .trigger(&name)
                .await
                .map_err(|e| not_found(&name, e))?;
            println!("{id}");
        }
        SchedulesCommand::Delete { name } => {
            db::schedules::delete(&pool, &name)
                .await
                .map_err(|e| not_found(&name, e))?;
            println!("deleted {name}");
        }
    }
    pool.close().await;
    Ok(())
}

#[cfg(test)]
mod redact_tests {
    use super::redact;

    #[test]
    fn redact_hides_passwords_in_the_user_part_and_the_query() {
        // The redacted form is the parsed string written back (scheme `postgresql://`).
        assert_eq!(
            redact("postgres://app:hunter2@db:5432/jobs"),
            "postgresql://app:***@db:5432/jobs"
        );
        let shown =
            redact("postgres://app@db/jobs?sslmode=require&password=hunter2&sslpassword=k3y");
        assert!(
            !shown.contains("hunter2") && !shown.contains("k3y"),
            "{shown}"
        );
        assert!(shown.contains("app:***@db"), "{shown}");
        let plain = redact("postgres://db/jobs?sslmode=disable");
        assert!(plain.contains("db/jobs"), "{plain}");
        assert!(!plain.contains("***"), "{plain}");
    }
}
