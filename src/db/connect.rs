//! Connecting: pools and single connections with `search_path` set, the choice of server
//! from a multi-host string by `target_session_attrs`, and moving a pool to another
//! server after a fault.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use super::connstr::{self, ConnStr, SessionAttrs};
use super::{Error, Result, fault};

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// Postgres URL.
    pub url: String,
    /// Schema holding Ordinaut's tables (already validated as a plain identifier).
    pub schema: String,
    /// Pool size.
    pub max_connections: u32,
    /// The worker's claim/finish/lease pool. Its commits return before their WAL is
    /// flushed: a write lost in a server crash makes a job run once more (at-least-once
    /// holds); enqueues always commit synchronously, and so does a claim that returns
    /// jobs (it sets `synchronous_commit` for its own transaction: see claim_due.sql). And its planner is told that every
    /// statement it runs is an ordered index scan or key lookup over cached data: right
    /// after a burst, before autovacuum has analyzed due_work, the claim was planned as
    /// a bitmap scan plus an external sort of the whole backlog (41 ms instead of 3 ms
    /// to pick 4,096 of 100,000 jobs; W1 37-52k instead of 59k jobs/s).
    pub hot_path: bool,
}

/// Statements on the worker's connections (claim, finish, heartbeat, lock) end after
/// this on the server; the heartbeat also bounds each of its calls on the client side,
/// which covers a server or network that stops answering altogether.
pub const WORKER_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one server of the list may take to accept a connection when the string
/// gives no `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Server-side TCP keepalive on every connection (seconds idle, between probes, probes):
/// the server drops a vanished client's session, and with it its advisory lock, within
/// about 25 s instead of the kernel's two hours. Ignored on Unix sockets.
const KEEPALIVE: [(&str, &str); 3] = [
    ("tcp_keepalives_idle", "10"),
    ("tcp_keepalives_interval", "5"),
    ("tcp_keepalives_count", "3"),
];

impl DbConfig {
    /// The parsed connection string (libpq URL or keyword form, several hosts allowed).
    pub fn conn_str(&self) -> Result<connstr::ConnStr> {
        Ok(connstr::ConnStr::parse(&self.url)?)
    }

    /// The connection string for messages (no password), or a placeholder.
    pub fn redacted(&self) -> String {
        match self.conn_str() {
            Ok(c) => c.redacted(),
            Err(_) => "<unparseable DATABASE_URL>".to_owned(),
        }
    }

    /// Connect options for the first server of the list, with search_path and
    /// application_name set.
    pub fn connect_options(&self) -> Result<PgConnectOptions> {
        self.options_for(&self.conn_str()?, 0)
    }

    fn options_for(&self, conn: &connstr::ConnStr, i: usize) -> Result<PgConnectOptions> {
        let mut options = conn
            .options_for(i)?
            .options([("search_path", self.schema.as_str())])
            // No JIT: every Ordinaut statement is short, and on a big partitioned
            // history the planner's estimates cross jit_above_cost, so Postgres spent
            // 30-200 ms compiling for queries that run in a few (the dashboard's
            // statistics: 207 ms with JIT, 2.5 ms without; docs/BENCHMARKS.md).
            .options([("jit", "off")])
            .options(KEEPALIVE);
        if self.hot_path {
            options = options.options([
                ("synchronous_commit", "off"),
                ("random_page_cost", "1.1"),
                ("enable_bitmapscan", "off"),
            ]);
            let timeout = format!("{}ms", WORKER_STATEMENT_TIMEOUT.as_millis());
            options = options.options([("statement_timeout", timeout.as_str())]);
        }
        let options = options
            .application_name("ordinaut")
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Debug, Duration::from_secs(1));
        Ok(options)
    }

    /// Opens a pool on the first listed server that satisfies `target_session_attrs`;
    /// the first connection is made eagerly so a bad URL fails here.
    ///
    /// Connections opened before a fault ([`fault`]) are closed instead of reused; new
    /// ones are checked against `target_session_attrs`; with several hosts a task moves
    /// the pool to whichever host satisfies it after a fault.
    pub async fn connect(&self) -> Result<PgPool> {
        let conn = Arc::new(self.conn_str()?);
        let first = if conn.endpoints.len() > 1 || conn.target != SessionAttrs::Any {
            let (i, c) = find_server(self, &conn).await?;
            let _ = c.close().await;
            i
        } else {
            0
        };
        let target = conn.target;
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |c, _| {
                Box::pin(async move {
                    if target == SessionAttrs::Any || target == SessionAttrs::PreferStandby {
                        return Ok(());
                    }
                    let (in_recovery, read_only) = server_state(c).await?;
                    if target.accepts(in_recovery, read_only) {
                        return Ok(());
                    }
                    // The pool retries the connect; give the retarget task a moment
                    // to find the right server first, so the retries are not a loop.
                    fault::retire_connections();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Err(sqlx::Error::Configuration(
                        format!(
                            "server is {} (target_session_attrs={})",
                            describe(in_recovery, read_only),
                            target.as_str()
                        )
                        .into(),
                    ))
                })
            })
            .before_acquire(|_, meta| {
                Box::pin(async move { Ok(!fault::predates_last_fault(meta.age)) })
            })
            .after_release(|_, meta| {
                Box::pin(async move { Ok(!fault::predates_last_fault(meta.age)) })
            })
            .connect_with(self.options_for(&conn, first)?)
            .await?;
        if conn.endpoints.len() > 1 {
            tokio::spawn(retarget(pool.clone(), self.clone(), conn, first));
        }
        Ok(pool)
    }

    /// Opens one connection outside any pool (advisory-lock holder) on the first listed
    /// server that satisfies `target_session_attrs`.
    pub async fn connect_one(&self) -> Result<PgConnection> {
        let conn = self.conn_str()?;
        Ok(find_server(self, &conn).await?.1)
    }
}

/// A round trip on `conn` (liveness of a dedicated session); writes nothing.
pub async fn ping(conn: &mut PgConnection) -> Result<()> {
    Ok(conn.ping().await?)
}

/// One connection outside `pool`, to the server the pool uses now.
pub async fn connect_like(pool: &PgPool) -> Result<PgConnection> {
    let options = pool.connect_options();
    Ok(PgConnection::connect_with(options.as_ref()).await?)
}

/// `(pg_is_in_recovery(), transaction_read_only)` of the connection's server: what
/// libpq looks at for `target_session_attrs`.
pub(super) async fn server_state(
    conn: &mut PgConnection,
) -> std::result::Result<(bool, bool), sqlx::Error> {
    sqlx::query_as("SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'")
        .fetch_one(conn)
        .await
}

pub(super) fn describe(in_recovery: bool, read_only: bool) -> &'static str {
    match (in_recovery, read_only) {
        (true, _) => "a standby (in recovery)",
        (false, true) => "read-only",
        (false, false) => "a read-write primary",
    }
}

/// Tries the listed servers in order (standbys first for `prefer-standby`) and returns
/// the first that accepts a connection satisfying the target, with its index.
async fn find_server(config: &DbConfig, conn: &ConnStr) -> Result<(usize, PgConnection)> {
    let target = conn.target;
    if conn.endpoints.len() == 1 && target == SessionAttrs::Any {
        // The common case keeps sqlx's own error.
        return Ok((
            0,
            PgConnection::connect_with(&config.options_for(conn, 0)?).await?,
        ));
    }
    let timeout = conn
        .connect_timeout
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let mut refused = Vec::new();
    let passes: &[SessionAttrs] = if target == SessionAttrs::PreferStandby {
        &[SessionAttrs::Standby, SessionAttrs::Any]
    } else {
        std::slice::from_ref(&conn.target)
    };
    for (pass, wanted) in passes.iter().enumerate() {
        for (i, endpoint) in conn.endpoints.iter().enumerate() {
            let options = config.options_for(conn, i)?;
            let mut c =
                match tokio::time::timeout(timeout, PgConnection::connect_with(&options)).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        if pass == 0 {
                            refused.push(format!("{endpoint}: {e}"));
                        }
                        continue;
                    }
                    Err(_) => {
                        if pass == 0 {
                            refused.push(format!(
                                "{endpoint}: no answer within {}s",
                                timeout.as_secs()
                            ));
                        }
                        continue;
                    }
                };
            if *wanted == SessionAttrs::Any {
                return Ok((i, c));
            }
            match server_state(&mut c).await {
                Ok((in_recovery, read_only)) if wanted.accepts(in_recovery, read_only) => {
                    return Ok((i, c));
                }
                Ok((in_recovery, read_only)) => {
                    refused.push(format!("{endpoint}: {}", describe(in_recovery, read_only)));
                }
                Err(e) => refused.push(format!("{endpoint}: {e}")),
            }
            let _ = c.close().await;
        }
    }
    Err(Error::Unavailable(format!(
        "no server of {} accepts a target_session_attrs={} connection ({})",
        conn.redacted(),
        target.as_str(),
        refused.join("; ")
    )))
}

/// Longest pause between looks for a server while none satisfies the target.
const RETARGET_MAX_DELAY: Duration = Duration::from_secs(5);

/// Moves `pool` to the first listed server that satisfies the target after each fault,
/// retrying with backoff and jitter while none does; ends when the pool is closed.
async fn retarget(pool: PgPool, config: DbConfig, conn: Arc<ConnStr>, mut current: usize) {
    let mut faults = fault::subscribe();
    faults.borrow_and_update();
    loop {
        tokio::select! {
            changed = faults.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                if pool.is_closed() { return }
                continue;
            }
        }
        let mut delay = Duration::from_millis(200);
        let mut failures: u64 = 0;
        loop {
            if pool.is_closed() {
                return;
            }
            match find_server(&config, &conn).await {
                Ok((i, c)) => {
                    let _ = c.close().await;
                    if i != current {
                        match config.options_for(&conn, i) {
                            Ok(options) => pool.set_connect_options(options),
                            Err(e) => {
                                tracing::error!(error = %e, "cannot build connect options");
                                return;
                            }
                        }
                        tracing::info!(
                            server = %conn.endpoints[i],
                            failures,
                            "database connections now go to this server"
                        );
                        current = i;
                        fault::retire_connections();
                    } else if failures > 0 {
                        tracing::info!(server = %conn.endpoints[i], failures, "database server available again");
                    }
                    break;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, retry_in_ms = delay.as_millis() as u64, "no database server available; retrying");
                    tokio::time::sleep(crate::model::jittered(delay)).await;
                    delay = (delay * 2).min(RETARGET_MAX_DELAY);
                }
            }
        }
        faults.borrow_and_update();
    }
}

/// The server of `conn`, if it is not a writable primary: "a standby (in recovery)" or
/// "read-only".
pub async fn not_writable(conn: &mut PgConnection) -> Result<Option<&'static str>> {
    let (in_recovery, read_only) = server_state(conn).await?;
    Ok((in_recovery || read_only).then(|| describe(in_recovery, read_only)))
}
