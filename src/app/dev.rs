//! `ordinaut dev`: API, scheduler and worker in one process, on a throwaway local
//! Postgres when DATABASE_URL is unset, with the example configuration when no
//! ordinaut.toml declares kinds.

use std::path::PathBuf;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::worker::Rescue;
use super::{db_config, start_with};
use crate::config::Config;
use crate::db::DbConfig;
use crate::db::listen::{Listener, Topics};
use crate::pg_local::{LocalPg, StartOptions};

/// The example configuration `ordinaut dev` uses when there is no ordinaut.toml.
const EXAMPLE_CONFIG: &str = include_str!("../../ordinaut.example.toml");

/// `ordinaut dev`: start everything, print how to try it, run until a signal.
pub async fn dev(mut config: Config) -> anyhow::Result<()> {
    if config.kinds.is_empty() {
        // No ordinaut.toml: load the example so the printed curl does something visible.
        use figment::providers::{Format, Serialized, Toml};
        config = figment::Figment::from(Serialized::defaults(config))
            .merge(Toml::string(EXAMPLE_CONFIG))
            .extract()
            .context("while loading the example configuration")?;
        tracing::info!(
            "no ordinaut.toml found; using ordinaut.example.toml (kinds echo, scan, ping_api, noop)"
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
    let result = run(config).await;
    if let Some(pg) = local {
        tracing::info!("stopping local PostgreSQL");
        if let Err(e) = tokio::task::spawn_blocking(move || pg.stop()).await? {
            tracing::warn!(error = %e, "stopping local PostgreSQL failed");
        }
    }
    result
}

async fn run(config: Config) -> anyhow::Result<()> {
    // One pool for the API, scheduler and rescuer of `dev`: sized as the API's.
    let db = DbConfig {
        max_connections: config.api.db_pool_size,
        ..db_config(&config)?
    };
    let pool = start_with(&db, &config).await?;
    let tcp = super::api::bind(&config).await?;
    let port = tcp
        .local_addr()
        .context("while reading the bound address")?
        .port();
    let token = config
        .api
        .tokens
        .first()
        .map(|t| format!(" -H 'Authorization: Bearer {t}'"))
        .unwrap_or_default();
    eprintln!("ordinaut dev: database {}", db.redacted());
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
    // One LISTEN connection for the whole process: the API's job events and the
    // worker's wake-ups and cancels. It stops after both, so the worker still hears
    // cancels during its shutdown grace period.
    let listener = Listener::new(pool.clone(), Topics::ALL);
    let stop_listening = CancellationToken::new();
    let listening = tokio::spawn(listener.clone().run(stop_listening.clone()));
    let scheduler = {
        let (config, pool, shutdown) = (config.clone(), pool.clone(), shutdown.clone());
        // No heartbeat: dev has no health check, and parallel devs would share the file.
        tokio::spawn(async move { super::scheduler::run(&config, pool, shutdown, None).await })
    };
    let api = {
        let (config, pool, shutdown) = (config.clone(), pool.clone(), shutdown.clone());
        let shared = Some(listener.clone());
        tokio::spawn(async move { super::api::serve(&config, pool, tcp, shutdown, shared).await })
    };
    let worker = super::worker::run(
        &config,
        db,
        pool.clone(),
        shutdown.clone(),
        Rescue::Skip,
        Some(listener),
    )
    .await;
    shutdown.cancel();
    scheduler.await.context("scheduler task")??;
    api.await.context("api task")??;
    stop_listening.cancel();
    listening.await.context("listener task")?;
    pool.close().await;
    worker
}
