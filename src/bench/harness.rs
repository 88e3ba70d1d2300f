//! The bench's harness: a fresh (or reused) database on the bench server, worker
//! processes of this executable, and waiting for them to register.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::PgPool;

use super::{BenchArgs, QUEUE};
use crate::db::{self, DbConfig};

pub(super) struct FreshDb {
    pub(super) admin_url: String,
    pub(super) name: String,
    pub(super) config: DbConfig,
    pub(super) pool: PgPool,
    pub(super) dir: PathBuf,
}

/// The bench server's maintenance database, one connection (create and drop databases).
pub(super) fn admin_config(admin_url: &str) -> DbConfig {
    DbConfig {
        url: admin_url.to_owned(),
        schema: "public".into(),
        max_connections: 1,
        hot_path: false,
    }
}

/// The database `name` on the bench server of `admin_url`.
pub(super) fn database_config(admin_url: &str, name: &str) -> anyhow::Result<DbConfig> {
    let mut url = reqwest::Url::parse(admin_url).context("bench DATABASE_URL")?;
    url.set_path(&format!("/{name}"));
    Ok(DbConfig {
        url: url.to_string(),
        schema: "public".into(),
        max_connections: 4,
        hot_path: false,
    })
}

impl FreshDb {
    pub(super) async fn create(admin_url: &str) -> anyhow::Result<FreshDb> {
        let admin = admin_config(admin_url);
        let pool = admin
            .connect()
            .await
            .context("while connecting to the bench server")?;
        let name = db::bench::create_database(&pool, uuid::Uuid::now_v7()).await?;
        pool.close().await;
        let config = database_config(admin_url, &name)?;
        db::migrate(&config).await?;
        let pool = config.connect().await?;
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("ordinaut.toml"),
            "[kinds.noop]\ntype = \"noop\"\n\n[kinds.true_cmd]\ntype = \"command\"\nprogram = \"true\"\n",
        )?;
        Ok(FreshDb {
            admin_url: admin_url.to_owned(),
            name,
            config,
            pool,
            dir,
        })
    }

    /// The kept database `name` (see `--keep-db`), created and migrated if missing;
    /// true when it already holds a filled bench (its fill finished: the marker table
    /// `bench_ui_filled` is made last).
    pub(super) async fn open_or_create(
        admin_url: &str,
        name: &str,
    ) -> anyhow::Result<(FreshDb, bool)> {
        let admin = admin_config(admin_url);
        let pool = admin
            .connect()
            .await
            .context("while connecting to the bench server")?;
        db::bench::create_database_named(&pool, name).await?;
        pool.close().await;
        let config = database_config(admin_url, name)?;
        db::migrate(&config).await?;
        let mut pool = config.connect().await?;
        let filled = db::bench::ui_filled(&pool).await?;
        if !filled {
            // A fill that was interrupted: start again from an empty database.
            pool.close().await;
            let admin_pool = admin.connect().await?;
            db::bench::drop_database(&admin_pool, name).await?;
            db::bench::create_database_named(&admin_pool, name).await?;
            admin_pool.close().await;
            db::migrate(&config).await?;
            pool = config.connect().await?;
        }
        let dir = std::env::temp_dir().join(name);
        Ok((
            FreshDb {
                admin_url: admin_url.to_owned(),
                name: name.to_owned(),
                config,
                pool,
                dir,
            },
            filled,
        ))
    }

    pub(super) async fn drop_db(self) {
        self.pool.close().await;
        let _ = std::fs::remove_dir_all(&self.dir);
        let admin = admin_config(&self.admin_url);
        if let Ok(pool) = admin.connect().await {
            let _ = db::bench::drop_database(&pool, &self.name).await;
            pool.close().await;
        }
    }

    /// Spawns the run's worker processes: `--workers` of them (at least one), each at
    /// `--concurrency`.
    pub(super) fn spawn_workers(&self, args: &BenchArgs) -> anyhow::Result<Vec<WorkerProc>> {
        (0..args.workers.max(1))
            .map(|_| self.spawn_worker(args.concurrency))
            .collect()
    }

    /// Spawns the run's worker processes and waits until every one has registered.
    pub(super) async fn start_workers(&self, args: &BenchArgs) -> anyhow::Result<Vec<WorkerProc>> {
        let workers = self.spawn_workers(args)?;
        wait_for_workers(&self.pool, workers.len()).await?;
        Ok(workers)
    }

    /// `ordinaut <role>` on this run's database, quiet but for warnings on stderr.
    fn command(&self, role: &str) -> anyhow::Result<Command> {
        let exe = std::env::current_exe().context("locating the ordinaut binary")?;
        let mut command = Command::new(exe);
        command
            .arg(role)
            .current_dir(&self.dir)
            .env("DATABASE_URL", &self.config.url)
            .env("LOG_LEVEL", "warn")
            .env_remove("ORDINAUT_CONFIG")
            .env_remove("ORDINAUT_SCHEMA")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        Ok(command)
    }

    fn spawn_worker(&self, concurrency: usize) -> anyhow::Result<WorkerProc> {
        // The drain is followed through the worker's own /metrics, which costs the
        // database nothing; a `count(*)` of due_work every 100 ms took a tenth of a
        // core from the run it was timing.
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port for the worker's metrics")?
            .port();
        let child = self
            .command("worker")?
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .env("WORKER_QUEUES", QUEUE)
            .env("WORKER_CONCURRENCY", concurrency.to_string())
            .spawn()
            .context("spawning a worker")?;
        Ok(WorkerProc {
            child,
            metrics_port,
        })
    }

    /// Spawns a scheduler, as every deployment runs one: its maintenance (the vacuum
    /// of `due_work` above all) is part of what sustained load costs and of how soon
    /// latency recovers after a long transaction. Killed when dropped.
    pub(super) fn spawn_scheduler(&self) -> anyhow::Result<SchedulerProc> {
        let child = self
            .command("scheduler")?
            .spawn()
            .context("spawning a scheduler")?;
        Ok(SchedulerProc(child))
    }
}

/// A scheduler process of the run.
pub(super) struct SchedulerProc(Child);

impl Drop for SchedulerProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(super) struct WorkerProc {
    child: Child,
    pub(super) metrics_port: u16,
}

impl WorkerProc {
    /// Jobs this worker has finished for good: completed, failed or cancelled (0 until
    /// its endpoint answers). The caller checks afterwards that all completed.
    pub(super) async fn finished(&self, http: &reqwest::Client) -> u64 {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let Ok(reply) = http.get(url).send().await else {
            return 0;
        };
        let text = reply.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| {
                l.starts_with(crate::metrics::JOBS_FINISHED)
                    && ["completed", "failed", "cancelled"]
                        .iter()
                        .any(|o| l.contains(&format!("outcome=\"{o}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    pub(super) fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    pub(super) fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) async fn wait_for_workers(pool: &PgPool, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live = db::bench::count(pool, db::bench::Counted::Workers).await?;
        if live as usize >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("workers did not register within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Puts `n` finished jobs (queue `old`, spread over the last day) into history.
pub(super) async fn fill_history(db: &FreshDb, n: u64) -> anyhow::Result<()> {
    if n == 0 {
        return Ok(());
    }
    eprintln!("bench: inserting {n} finished jobs into history");
    db::bench::fill_history(&db.pool, n).await?;
    Ok(())
}
