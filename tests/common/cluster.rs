//! A Postgres cluster of one test's own, for faults that hit every session of a server
//! (restarts, crashes, promotions): the shared test cluster must never see them.

use std::path::PathBuf;

use ordinaut::db::DbConfig;
use ordinaut::pg_local::{LocalPg, StartOptions};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use super::cluster_dir;

/// Whether the cluster flushes to disk.
#[derive(Clone, Copy)]
pub enum Durability {
    /// fsync off: for faults that do not replay WAL.
    Fast,
    /// As in production: crash recovery must replay real WAL.
    Durable,
}

/// A private cluster, stopped (and, when the test passed, removed) on drop.
pub struct PrivateCluster {
    /// The server.
    pub pg: LocalPg,
    base: PathBuf,
}

impl PrivateCluster {
    /// Starts a fresh cluster named after `name`.
    pub async fn start(name: &str, durability: Durability) -> PrivateCluster {
        let base = cluster_dir(&format!("{name}-{}", Uuid::now_v7()));
        let b = base.clone();
        let pg = tokio::task::spawn_blocking(move || {
            LocalPg::start(
                &b,
                &StartOptions {
                    unsafe_fast: matches!(durability, Durability::Fast),
                    max_connections: 100,
                    ..Default::default()
                },
            )
        })
        .await
        .expect("join the cluster start")
        .expect("start a private cluster");
        PrivateCluster { pg, base }
    }

    /// A streaming standby of this cluster.
    pub async fn standby(&self) -> PrivateCluster {
        let base = self.base.with_extension("standby");
        let (pg, b) = (self.pg.clone(), base.clone());
        let standby = tokio::task::spawn_blocking(move || pg.start_standby(&b))
            .await
            .expect("join the standby start")
            .expect("start a standby");
        PrivateCluster { pg: standby, base }
    }

    /// URL of its `postgres` database.
    pub fn url(&self) -> String {
        self.pg.url("postgres")
    }

    /// Connection settings for its `postgres` database.
    pub fn db_config(&self, max_connections: u32) -> DbConfig {
        DbConfig {
            url: self.url(),
            schema: "public".into(),
            max_connections,
            hot_path: false,
        }
    }

    /// Migrates its `postgres` database and opens a pool on it.
    pub async fn migrated_pool(&self, max_connections: u32) -> PgPool {
        let cfg = self.db_config(max_connections);
        ordinaut::db::migrate(&cfg).await.expect("migrate");
        cfg.connect().await.expect("connect")
    }

    /// One plain connection.
    pub async fn admin(&self) -> PgConnection {
        PgConnection::connect(&self.url())
            .await
            .expect("connect to the private cluster")
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self.pg.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}
