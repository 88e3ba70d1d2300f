//! Progress reports of running jobs: handlers report as often as they like
//! ([`ProgressSink::report`]); one writer task per worker keeps the latest report per
//! attempt and stores the pending ones every [`FLUSH_INTERVAL`] in one statement, so
//! a job's row is written at most once per second however fast its program reports.
//!
//! A report is advisory: one the database refuses, or one that arrives after the
//! attempt ended, is dropped (logged at debug), never retried.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::kinds::{ProgressRow, set_progress};
use crate::kinds::registry::MAX_PROGRESS_MESSAGE;

/// Shortest time between two stored reports of one job.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

struct Report {
    id: Uuid,
    attempt: i32,
    progress: serde_json::Value,
}

/// Where handlers send progress. Cheap to clone; a sink with no writer (a handler
/// run outside a worker) drops reports.
#[derive(Debug, Clone, Default)]
pub struct ProgressSink {
    tx: Option<mpsc::UnboundedSender<Report>>,
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Report").field("id", &self.id).finish()
    }
}

impl ProgressSink {
    /// A sink and the receiving end for [`write`].
    pub(crate) fn channel() -> (ProgressSink, ProgressReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ProgressSink { tx: Some(tx) }, ProgressReceiver(rx))
    }

    /// Reports attempt `attempt` of job `id` at `percent` (clamped to 0..=100) with
    /// `message` (cut to [`MAX_PROGRESS_MESSAGE`] characters, control characters
    /// replaced by spaces).
    pub fn report(&self, id: Uuid, attempt: i32, percent: Option<f64>, message: Option<&str>) {
        let Some(tx) = &self.tx else { return };
        let percent = percent
            .filter(|p| p.is_finite())
            .map(|p| (p.clamp(0.0, 100.0) * 10.0).round() / 10.0);
        let message = message.map(|m| {
            m.chars()
                .take(MAX_PROGRESS_MESSAGE)
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>()
        });
        let progress = serde_json::json!({
            "attempt": attempt,
            "percent": percent,
            "message": message,
            "at": chrono::Utc::now(),
        });
        let _ = tx.send(Report {
            id,
            attempt,
            progress,
        });
    }
}

/// The writer's end of a [`ProgressSink`].
pub(crate) struct ProgressReceiver(mpsc::UnboundedReceiver<Report>);

/// Stores reports until `stop`, at most one write per job per [`FLUSH_INTERVAL`].
pub(crate) async fn write(
    pool: PgPool,
    worker_id: Uuid,
    mut rx: ProgressReceiver,
    stop: CancellationToken,
) {
    let mut pending: HashMap<Uuid, Report> = HashMap::new();
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            report = rx.0.recv() => match report {
                // The latest report of the newest attempt wins.
                Some(r) => {
                    if pending.get(&r.id).is_none_or(|p| p.attempt <= r.attempt) {
                        pending.insert(r.id, r);
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                if pending.is_empty() {
                    continue;
                }
                let rows: Vec<ProgressRow> = pending
                    .drain()
                    .map(|(_, r)| ProgressRow { id: r.id, attempt: r.attempt, progress: r.progress })
                    .collect();
                if let Err(e) = set_progress(&pool, worker_id, &rows).await {
                    tracing::debug!(error = %e, jobs = rows.len(), "progress reports dropped");
                }
            }
            _ = stop.cancelled() => break,
        }
    }
}

/// Parses one line a program wrote to its progress channel: a JSON object
/// (`{"percent": 40, "message": "cloning"}`), or text starting with a number, with
/// or without `%` (`40 cloning`, `40% cloning`), or plain text (a message only).
pub fn parse_line(line: &str) -> Option<(Option<f64>, Option<String>)> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    if line.starts_with('{')
        && let Ok(serde_json::Value::Object(map)) = serde_json::from_str(line)
    {
        let percent = map.get("percent").and_then(|v| v.as_f64());
        let message = map
            .get("message")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        return Some((percent, message));
    }
    let (head, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    match head.trim_end_matches('%').parse::<f64>() {
        Ok(p) if p.is_finite() => Some((
            Some(p),
            Some(rest.trim().to_owned()).filter(|m| !m.is_empty()),
        )),
        _ => Some((None, Some(line.to_owned()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_as_json_number_or_text() {
        assert_eq!(
            parse_line(r#"{"percent": 40, "message": "cloning"}"#),
            Some((Some(40.0), Some("cloning".to_owned())))
        );
        assert_eq!(
            parse_line("55% analysing contracts"),
            Some((Some(55.0), Some("analysing contracts".to_owned())))
        );
        assert_eq!(parse_line("7"), Some((Some(7.0), None)));
        assert_eq!(
            parse_line("warming up"),
            Some((None, Some("warming up".to_owned())))
        );
        assert_eq!(parse_line("  "), None);
    }
}
