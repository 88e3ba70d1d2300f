//! `ordinaut kinds`: the kinds registry, as `GET /v1/kinds` shows it.

use anyhow::Context;
use clap::Args;

use crate::config::Config;
use crate::kinds::registry;

/// Arguments of `ordinaut kinds`.
#[derive(Debug, Args)]
pub struct KindsArgs {
    /// Print JSON (the `kinds` array of `GET /v1/kinds`) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Lists the kinds some worker published within the registry window.
pub async fn run(args: &KindsArgs, config: &Config) -> anyhow::Result<()> {
    let pool = crate::app::connect_migrated(config).await?;
    let rows = crate::db::kinds::list(&pool, config.registry.window)
        .await
        .context("while reading the kinds registry")?;
    pool.close().await;
    let kinds = registry::listings(rows);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&kinds)?);
        return Ok(());
    }
    if kinds.is_empty() {
        println!(
            "no worker published kinds in the last {}",
            humantime::format_duration(config.registry.window)
        );
        return Ok(());
    }
    println!(
        "{:<24}  {:<8}  {:<16}  {:>9}  {:<6}  WORKERS",
        "KIND", "TYPE", "QUEUE", "TIMEOUT", "SCHEMA"
    );
    for k in kinds {
        let timeout = k
            .kind
            .timeout_ms
            .map(|ms| {
                humantime::format_duration(std::time::Duration::from_millis(ms as u64)).to_string()
            })
            .unwrap_or_else(|| "-".to_owned());
        let workers: Vec<String> = k
            .publishers
            .workers
            .iter()
            .map(|w| {
                let id = w.id.to_string();
                let short = &id[id.len() - 8..];
                if w.alive {
                    format!("{}/{short}", w.hostname)
                } else {
                    format!("{}/{short} (gone)", w.hostname)
                }
            })
            .collect();
        println!(
            "{:<24}  {:<8}  {:<16}  {:>9}  {:<6}  {}",
            k.kind.name,
            k.kind.kind_type,
            k.kind.queue.as_deref().unwrap_or("-"),
            timeout,
            if k.kind.payload_schema.is_some() {
                "yes"
            } else {
                "no"
            },
            workers.join(", ")
        );
    }
    Ok(())
}
