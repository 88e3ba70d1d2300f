//! A Rust program running Ordinaut's worker in-process with its own handler.
//!
//! ```sh
//! DATABASE_URL=postgres://localhost/app cargo run --example rust_worker
//! ordinaut jobs enqueue --queue default --kind resize_image --payload '{"width": 640}'
//! ```

use std::time::Duration;

use anyhow::Context;
use ordinaut::config::Config;
use ordinaut::db::{self, DbConfig};
use ordinaut::model::Outcome;
use ordinaut::worker::{Handlers, Worker, WorkerOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load(None).context("while loading configuration")?;
    ordinaut::telemetry::init(&config.log_level, config.log_format);
    let url = config
        .database_url
        .clone()
        .context("DATABASE_URL is not set")?;
    let db = DbConfig {
        url,
        schema: config.schema.clone(),
        max_connections: 10,
        hot_path: false,
    };
    db::migrate(&db).await.context("while migrating")?;
    let pool = db.connect().await.context("while connecting")?;

    // Kinds from ordinaut.toml (http, command) plus our own.
    let mut handlers = Handlers::from_config(&config)?;
    handlers.register("resize_image", |ctx| async move {
        let Some(width) = ctx.job.payload["width"].as_u64() else {
            // A bad payload will not get better with retries.
            return Outcome::Failed {
                error: "payload.width must be a number".into(),
                log: None,
            };
        };
        if width > 10_000 {
            return Outcome::Snoozed {
                after: Duration::from_secs(60),
                reason: "too big for now".into(),
                log: None,
            };
        }
        tracing::info!(width, "resizing");
        Outcome::Succeeded {
            output: Some(serde_json::json!({ "width": width })),
            log: None,
        }
    });

    let worker = Worker::new(WorkerOptions::from_config(&config), db, pool, handlers);
    worker
        .run(ordinaut::shutdown::on_signal())
        .await
        .context("while running the worker")?;
    Ok(())
}
