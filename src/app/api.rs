//! `ordinaut api`: bind, connect (waiting for a writable primary), serve until a signal.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::{db_config, start, wait_for_primary};
use crate::config::Config;
use crate::db::listen::Listener;
use crate::db::{self, DbConfig};

/// `ordinaut api`: migrate, bind, serve until a signal, then shut down gracefully.
pub async fn api(config: &Config) -> anyhow::Result<()> {
    let db = DbConfig {
        max_connections: config.api.db_pool_size,
        ..db_config(config)?
    };
    let shutdown = crate::shutdown::on_signal();
    let tcp = bind(config).await?;
    let Some(pool) = wait_for_primary(&db, &shutdown, || start(&db)).await? else {
        return Ok(());
    };
    serve(config, pool.clone(), tcp, shutdown, None).await?;
    pool.close().await;
    Ok(())
}

/// Binds API_HOST:API_PORT.
pub(super) async fn bind(config: &Config) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = format!("{}:{}", config.api.host, config.api.port);
    tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("while binding the API to {addr}"))
}

/// Serves the API on `tcp` until `shutdown`; its job events come from
/// `shared_listener` when another part of the process runs one, else from a LISTEN
/// connection of its own.
pub(super) async fn serve(
    config: &Config,
    pool: db::Pool,
    tcp: tokio::net::TcpListener,
    shutdown: CancellationToken,
    shared_listener: Option<Listener>,
) -> anyhow::Result<()> {
    let local = tcp
        .local_addr()
        .context("while reading the bound address")?;
    tracing::info!(address = %local, "api listening");
    let settings = crate::api::ApiSettings::from_config(config);
    let state = match shared_listener {
        Some(l) => crate::api::AppState::sharing_listener(pool, settings, l),
        None => crate::api::AppState::new(pool, settings),
    };
    crate::api::serve(tcp, state, shutdown)
        .await
        .context("while serving the API")?;
    tracing::info!("api stopped");
    Ok(())
}
