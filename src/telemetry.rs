//! Log output: pretty lines for people, JSON lines with `LOG_FORMAT=json`.
//!
//! Initialised once, by main; library code only emits tracing events.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `level` is an EnvFilter directive (validated by
/// Config). Returns false if a subscriber was already installed (tests, embedders).
pub fn init(level: &str, format: LogFormat) -> bool {
    let mut filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    if !level.contains("sqlx") {
        // Postgres NOTICEs ("schema already exists, skipping") are not news.
        if let Ok(directive) = "sqlx::postgres::notice=warn".parse() {
            filter = filter.add_directive(directive);
        }
        // The pool's own retry loop logs every failed connect and every broken idle
        // connection; during a failover that is a line per attempt. Ordinaut logs those
        // faults itself, once per backoff step (db::fault, db::retarget).
        if let Ok(directive) = "sqlx_core::pool=off".parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
            .is_ok(),
        LogFormat::Pretty => builder.with_ansi(false).try_init().is_ok(),
    }
}
