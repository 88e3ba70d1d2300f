//! Job state-change events: the `ordinaut_events` NOTIFY channel fed by the statement
//! triggers of migration 0002, its payload format, and the event gate's rows.
//!
//! Owns the channel names and the payload format; it neither LISTENs (`db::listen`
//! does) nor fans events out (the API does). Each install's channels are its own: the
//! names below are bases, and `ordinaut_channel(base)` (migration 0009) gives the
//! install's channel (the base itself in the `public` schema).

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::Result;

/// The NOTIFY channel the triggers send job events on (base name).
pub const CHANNEL: &str = "ordinaut_events";
/// NOTIFY channel carrying the queue name of freshly enqueued runnable jobs (base name).
pub const CHANNEL_ENQUEUED: &str = "ordinaut_enqueued";
/// NOTIFY channel carrying the id of a job whose cancel was requested (base name).
pub const CHANNEL_CANCEL: &str = "ordinaut_cancel";

/// The install's channel for each base name, in order.
pub async fn install_channels(pool: &PgPool, bases: &[&str]) -> Result<Vec<String>> {
    let bases: Vec<String> = bases.iter().map(|b| (*b).to_owned()).collect();
    Ok(sqlx::query_scalar(
        "SELECT ordinaut_channel(b) FROM unnest($1::text[]) WITH ORDINALITY AS t(b, n) ORDER BY n",
    )
    .bind(&bases)
    .fetch_all(pool)
    .await?)
}

/// One job changing state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobEvent {
    /// Job id.
    pub id: Uuid,
    /// Queue (cut to 100 characters by the trigger).
    pub queue: String,
    /// Effective state after the change.
    pub state: String,
    /// Set for a progress report of a running job (its `due_work.progress`), not a
    /// state change.
    pub progress: Option<serde_json::Value>,
}

/// What the API's subscribers to job events receive (from `db::listen`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Changes from one notification.
    Events(Vec<JobEvent>),
    /// Changes may have been missed (the connection was lost and re-established, or the
    /// event gate just opened): anyone waiting on a change must re-read. The SSE stream
    /// sends it as a `resync` event.
    Resync,
}

/// How long an API process's row in `event_subscribers` opens the event triggers
/// without being renewed (a process killed with its row in place stops costing after
/// this).
pub const SUBSCRIPTION_TTL_SECS: i64 = 60;

/// Opens (or keeps open) the event triggers on behalf of API process `id` for
/// [`SUBSCRIPTION_TTL_SECS`]. Committed before it returns, so every statement that
/// starts afterwards sends its events.
pub async fn open_gate(pool: &PgPool, id: Uuid) -> Result<()> {
    sqlx::query(
        "INSERT INTO event_subscribers (id, expires_at)
         VALUES ($1, now() + make_interval(secs => $2))
         ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at",
    )
    .bind(id)
    .bind(SUBSCRIPTION_TTL_SECS as f64)
    .execute(pool)
    .await?;
    Ok(())
}

/// Withdraws API process `id`'s subscription (and any that expired long ago).
pub async fn close_gate(pool: &PgPool, id: Uuid) -> Result<()> {
    sqlx::query(
        "DELETE FROM event_subscribers WHERE id = $1 OR expires_at < now() - interval '1 hour'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Decodes a payload: a JSON array of `[id, queue, state]` (the triggers) or
/// `[id, queue, "running", progress]` (a worker's progress reports).
pub fn parse_payload(payload: &str) -> Option<Vec<JobEvent>> {
    // Entries read as plain values: an untagged enum would buffer numbers, which the
    // arbitrary_precision feature turns into maps.
    let entries: Vec<Vec<serde_json::Value>> = serde_json::from_str(payload).ok()?;
    entries
        .into_iter()
        .map(|entry| {
            let mut items = entry.into_iter();
            let id = items.next()?.as_str()?.parse().ok()?;
            let queue = items.next()?.as_str()?.to_owned();
            let state = items.next()?.as_str()?.to_owned();
            let progress = items.next();
            Some(JobEvent {
                id,
                queue,
                state,
                progress,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_of_the_trigger_parses() {
        let p = r#"[["0190f6f0-0000-7000-8000-000000000001","q","running"]]"#;
        let events = parse_payload(p).expect("parses");
        assert_eq!(events[0].queue, "q");
        assert_eq!(events[0].state, "running");
        assert!(parse_payload("nonsense").is_none());
        let p = r#"[["0190f6f0-0000-7000-8000-000000000001","q","running",{"percent":40}]]"#;
        let events = parse_payload(p).expect("parses");
        assert_eq!(events[0].progress, Some(serde_json::json!({"percent": 40})));
    }
}
