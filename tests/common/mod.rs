//! Test harness: a real Postgres and a fresh database per test.
//!
//! The cluster is `DATABASE_URL` when set, else one throwaway cluster per run under
//! `target/`, shared by every test process through a lock file (nextest runs each test
//! in its own process). Each test gets a database cloned from a template migrated once
//! per migration set; it is dropped on success and kept (and named) on failure.

#![allow(dead_code)]

pub mod cluster;
pub mod http;
pub mod jobs;
pub mod otlp;
pub mod procs;
pub mod recorder;
pub mod schedules;

use std::fs::File;
use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ordinaut::db::{self, DbConfig};
use ordinaut::pg_local::{LocalPg, StartOptions};
use sqlx::{Connection, PgConnection, PgPool};

/// A directory for a throwaway cluster, unique to this checkout. Under the system temp
/// directory rather than target/: as root the cluster runs as `nobody`, which must be
/// able to traverse every parent directory, and a checkout may live under a private one.
pub fn cluster_dir(name: &str) -> PathBuf {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in env!("CARGO_TARGET_TMPDIR").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    std::env::temp_dir().join(format!("{name}-{h:016x}"))
}

/// Base URL of the cluster (ending in a database name we replace).
fn cluster() -> &'static (String, Option<LocalPg>) {
    static CLUSTER: OnceLock<(String, Option<LocalPg>)> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return (url, None);
        }
        let base = cluster_dir("ordinaut-test-pg");
        std::fs::create_dir_all(&base).expect("create test cluster dir under target/");
        let lock =
            File::create(base.with_extension("lock")).expect("create test cluster lock file");
        lock.lock().expect("lock test cluster lock file");
        let pg = LocalPg::start(
            &base,
            &StartOptions {
                unsafe_fast: true,
                max_connections: 500,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("cannot start the test cluster: {e}"));
        drop(lock);
        (pg.url("postgres"), Some(pg))
    })
}

fn url_for(database: &str) -> String {
    let base = &cluster().0;
    let mut url = reqwest::Url::parse(base).expect("DATABASE_URL must be a URL");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

/// Name of the template for the current migrations: a hash of their checksums.
fn template_name() -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for m in db::MIGRATOR.iter() {
        for b in m.checksum.iter().chain(m.version.to_le_bytes().iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("ordinaut_tpl_{h:016x}")
}

async fn ensure_template(admin: &mut PgConnection) -> String {
    let name = template_name();
    // Serialise template creation across test processes.
    sqlx::query("SELECT pg_advisory_lock(4242)")
        .execute(&mut *admin)
        .await
        .expect("lock template");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut *admin)
            .await
            .expect("check template");
    if !exists {
        let building = format!("{name}_building");
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {building}"
        )))
        .execute(&mut *admin)
        .await;
        // Names are generated from a hex hash: safe to interpolate.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {building}")))
            .execute(&mut *admin)
            .await
            .expect("create template");
        let cfg = DbConfig {
            url: url_for(&building),
            schema: "public".into(),
            max_connections: 2,
            hot_path: false,
        };
        db::migrate(&cfg).await.expect("migrate template");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {building} RENAME TO {name}"
        )))
        .execute(&mut *admin)
        .await
        .expect("rename template");
    }
    sqlx::query("SELECT pg_advisory_unlock(4242)")
        .execute(&mut *admin)
        .await
        .expect("unlock template");
    name
}

/// A fresh, migrated database for one test.
pub struct TestDb {
    /// Database name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// A pool on it.
    pub pool: PgPool,
}

impl TestDb {
    /// Clones the migrated template into a new database.
    pub async fn new() -> TestDb {
        let mut admin = PgConnection::connect(&url_for("postgres"))
            .await
            .expect("connect to the test cluster");
        let template = ensure_template(&mut admin).await;
        let name = format!("ordinaut_test_{}", uuid::Uuid::now_v7().simple());
        // CREATE DATABASE .. TEMPLATE fails while another session is connected to the
        // template; only the brief migration above ever is, so retry.
        let mut tries = 0;
        loop {
            let r = sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE DATABASE {name} TEMPLATE {template}"
            )))
            .execute(&mut admin)
            .await;
            match r {
                Ok(_) => break,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("create test database: {e}"),
            }
        }
        let _ = admin.close().await;
        let url = url_for(&name);
        let pool = db_config_for(&url)
            .connect()
            .await
            .expect("connect to test database");
        TestDb { name, url, pool }
    }

    /// Connection settings for this database.
    pub fn db_config(&self) -> DbConfig {
        db_config_for(&self.url)
    }

    /// Runs a scalar query.
    pub async fn scalar_i64(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
            .expect(sql)
    }

    /// Rows of `from`, which names a table and may go on with a filter:
    /// `"queues WHERE paused"`.
    pub async fn count(&self, from: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {from}");
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_one(&self.pool)
            .await
            .expect(&sql)
    }

    /// Every row `sql` returns, typed.
    pub async fn rows<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        let query = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()));
        query.fetch_all(&self.pool).await.expect(sql)
    }

    /// The one value `sql` returns, typed.
    pub async fn value<T>(&self, sql: &str) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        let query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()));
        query.fetch_one(&self.pool).await.expect(sql)
    }

    /// The one column `sql` returns, typed: a value per row.
    pub async fn column<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        let query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()));
        query.fetch_all(&self.pool).await.expect(sql)
    }

    /// Asserts that `from` (as for [`TestDb::count`]) has `n` rows.
    pub async fn assert_rows(&self, from: &str, n: i64) {
        assert_eq!(self.count(from).await, n, "rows of {from}");
    }

    /// Runs a statement that sets the scene (a queue's settings, a lock, a fault).
    pub async fn exec(&self, sql: &str) {
        let query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
        query.execute(&self.pool).await.expect(sql);
    }

    /// Opens a transaction that runs `sql` and holds what it took (a table lock) until
    /// it is dropped.
    pub async fn hold(&self, sql: &'static str) -> sqlx::Transaction<'static, sqlx::Postgres> {
        let mut tx = self.pool.begin().await.expect("begin");
        sqlx::query(sql).execute(&mut *tx).await.expect(sql);
        tx
    }
}

fn db_config_for(url: &str) -> DbConfig {
    DbConfig {
        url: url.to_owned(),
        schema: "public".into(),
        max_connections: 10,
        hot_path: false,
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "test database kept for inspection: {} ({})",
                self.name, self.url
            );
            return;
        }
        let name = self.name.clone();
        let admin_url = url_for("postgres");
        // Drop in a thread with its own runtime: Drop cannot be async.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .ok()
            })
        })
        .join();
    }
}

/// Polls `check` until it returns Some or `deadline` passes.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Path of the built `ordinaut` binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ordinaut"))
}
