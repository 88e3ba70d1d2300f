//! `ordinaut healthcheck`: the probe container health checks and Kubernetes exec probes
//! run, so images need no curl or shell.
//!
//! Three checks: an HTTP GET that must answer 2xx (the api's `/ready` by default); with
//! `--db`, a direct look at the database (reachable, schema at this build's migration,
//! a writable primary) for processes that serve no HTTP (the worker); with
//! `--scheduler`, the database check plus the scheduler's heartbeat file, which its fire
//! loop rewrites after every tick (`crate::scheduler::heartbeat`), so a scheduler whose
//! loop has stopped is unhealthy. It only reads: it never migrates, and it names no
//! table (the schema check is `db::applied_version`).

use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::config::Config;
use crate::db::{self, DbConfig};

/// How long a check may take unless `--timeout` says otherwise. Docker's and
/// Kubernetes' own probe timeouts are set a little above it (ops/), so the probe reports
/// its own one-line reason instead of being killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// Most characters of a failing response's message repeated in the one-line report.
const MESSAGE_LIMIT: usize = 200;

/// Arguments of `ordinaut healthcheck`.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// URL to GET; healthy on a 2xx answer [default: http://127.0.0.1:$API_PORT/ready].
    #[arg(long, value_name = "URL", conflicts_with = "db")]
    pub url: Option<String>,
    /// Check the database instead: DATABASE_URL answers and its schema is at this
    /// build's migration (for the worker and scheduler, which serve no HTTP).
    #[arg(long)]
    pub db: bool,
    /// Check a scheduler: the database as with --db, and its fire loop ticked within
    /// --max-age (the heartbeat file SCHEDULER_HEARTBEAT_FILE, default
    /// $TMPDIR/ordinaut-scheduler.heartbeat).
    #[arg(long, conflicts_with_all = ["url", "db"])]
    pub scheduler: bool,
    /// With --scheduler: the oldest heartbeat still healthy (30s, 2m).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, requires = "scheduler")]
    pub max_age: Duration,
    /// Give up after this long (3s, 500ms).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Why a check failed, in words for the one-line report.
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    /// The URL answered, but not with 2xx.
    #[error("GET {url} answered {status}{}", detail(message))]
    Status {
        url: String,
        status: reqwest::StatusCode,
        message: Option<String>,
    },
    /// The request did not get an answer (refused, reset, bad URL).
    #[error("GET {url} failed: {reason}")]
    Request { url: String, reason: String },
    /// No answer within the timeout.
    #[error("{what} did not answer within {timeout:?}")]
    Timeout { what: String, timeout: Duration },
    /// The database could not be reached or queried.
    #[error("database {target} unreachable: {source}")]
    Database {
        target: String,
        #[source]
        source: db::Error,
    },
    /// The database answers but is a standby or read-only.
    #[error("database {target} is {state}, not a writable primary")]
    NotWritable { target: String, state: &'static str },
    /// The scheduler's heartbeat is missing or older than allowed.
    #[error("{0}")]
    Heartbeat(String),
    /// The database answers but its schema is not at this build's migration.
    #[error(
        "database {target} schema {schema} is {found}, this ordinaut expects migration {known}"
    )]
    Schema {
        target: String,
        schema: String,
        found: String,
        known: i64,
    },
}

fn detail(message: &Option<String>) -> String {
    message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

/// Runs the check the arguments ask for and prints one line on success; the error is
/// the one line main prints on failure (exit 1).
pub async fn run(args: &HealthcheckArgs, config: &Config) -> anyhow::Result<()> {
    // The heartbeat first: it needs no connection, and a stuck loop is the likelier news.
    let ticked = if args.scheduler {
        let path = crate::scheduler::heartbeat::path(config);
        Some(check_heartbeat(&path, args.max_age).context("unhealthy")?)
    } else {
        None
    };
    let report = if args.db || args.scheduler {
        let Some(url) = config.database_url.clone() else {
            anyhow::bail!("unhealthy: DATABASE_URL is not set");
        };
        let target = DbConfig {
            url,
            schema: config.schema.clone(),
            max_connections: 1,
            hot_path: false,
        };
        check_db(&target, args.timeout).await
    } else {
        let url = args
            .url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}/ready", config.api.port));
        check_url(&url, args.timeout).await
    };
    let line = report.context("unhealthy")?;
    match ticked {
        Some(tick) => println!("healthy: {line}; {tick}"),
        None => println!("healthy: {line}"),
    }
    Ok(())
}

/// GETs `url`; Ok (with a description) on a 2xx answer within `timeout`.
///
/// Proxies from the environment are ignored: the probe targets the container itself.
pub async fn check_url(url: &str, timeout: Duration) -> Result<String, Unhealthy> {
    let request_failed = |e: reqwest::Error| Unhealthy::Request {
        url: url.to_owned(),
        reason: chain(&e),
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .map_err(request_failed)?;
    let response = client.get(url).send().await.map_err(|e| {
        if e.is_timeout() {
            Unhealthy::Timeout {
                what: format!("GET {url}"),
                timeout,
            }
        } else {
            request_failed(e)
        }
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(format!("GET {url} answered {status}"));
    }
    // Our API explains itself as {"error":{"message"}}; repeat that (bounded).
    let message = response
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(one_line));
    Err(Unhealthy::Status {
        url: url.to_owned(),
        status,
        message,
    })
}

/// Ok (with a description) when the heartbeat at `path` was written within `max_age`.
pub fn check_heartbeat(path: &std::path::Path, max_age: Duration) -> Result<String, Unhealthy> {
    let age = crate::scheduler::heartbeat::age(path).map_err(Unhealthy::Heartbeat)?;
    if age > max_age {
        return Err(Unhealthy::Heartbeat(format!(
            "scheduler heartbeat {} is {:.0?} old (limit {max_age:?}): the fire loop has stopped",
            path.display(),
            age
        )));
    }
    Ok(format!("scheduler ticked {age:.1?} ago"))
}

/// Connects to the database once; Ok when its schema is at this build's migration.
pub async fn check_db(target: &DbConfig, timeout: Duration) -> Result<String, Unhealthy> {
    let shown = target.redacted();
    let work = async {
        // The first listed server that satisfies target_session_attrs.
        let mut conn = target.connect_one().await?;
        let answer = match db::not_writable(&mut conn).await {
            Ok(None) => db::applied_version(&mut conn).await.map(Ok),
            Ok(Some(state)) => Ok(Err(state)),
            Err(e) => Err(e),
        };
        // Closing politely is best effort; the answer is already in hand.
        let _ = sqlx::Connection::close(conn).await;
        answer
    };
    let version = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| Unhealthy::Timeout {
            what: format!("database {shown}"),
            timeout,
        })?
        .map_err(|source| Unhealthy::Database {
            target: shown.clone(),
            source,
        })?
        .map_err(|state| Unhealthy::NotWritable {
            target: shown.clone(),
            state,
        })?;
    let known = db::latest_known_migration();
    match version {
        Some(v) if v == known => Ok(format!(
            "database {shown} schema {} at migration {v}",
            target.schema
        )),
        other => Err(Unhealthy::Schema {
            target: shown,
            schema: target.schema.clone(),
            found: match other {
                None => "not migrated".to_owned(),
                Some(v) => format!("at migration {v}"),
            },
            known,
        }),
    }
}

/// An error and its sources on one line (reqwest hides the useful part in a source).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    one_line(&text)
}

fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(MESSAGE_LIMIT) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}
