//! Live job events: the process listener's (`db::listen`) job events fanned out to
//! `GET /v1/events` (Server-Sent Events), `?wait=` and pull waits, and the event gate
//! that opens the database's event triggers while anyone here subscribes.
//!
//! The listener's channel never blocks its sender: a subscriber that falls more than
//! the buffer behind misses events and is told so (`event: lagged`), so a slow client
//! can slow neither the listener nor, through it, the database or the workers.

use std::convert::Infallible;
use std::time::Duration;

use tokio::time::Instant;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Query;
use super::openapi::InvalidFilter;
use crate::db::events::Received;
use crate::model::validate_name;

/// How often the gate is renewed while anyone subscribes, or closed once nobody does.
const GATE_TICK: Duration = Duration::from_secs(15);
/// How long after opening the gate waiters are told to re-read: a statement that
/// started before the gate opened sends no events even if it commits afterwards.
const GATE_SETTLE: Duration = Duration::from_secs(1);

/// This process's row in `event_subscribers`: open while anyone here subscribes to
/// events, so the database's event triggers only do their work when someone reads it.
pub(crate) struct Gate {
    id: Uuid,
    /// Until when the row is surely current (renewed well before it expires); `None`
    /// when closed. Held across the database write so that opening, renewing and
    /// closing never interleave with a subscribe.
    open_until: tokio::sync::Mutex<Option<Instant>>,
}

impl Gate {
    pub(crate) fn new() -> Gate {
        Gate {
            id: Uuid::now_v7(),
            open_until: tokio::sync::Mutex::new(None),
        }
    }

    /// A receiver on `tx` with the gate open. If the database cannot be written, the
    /// receiver is returned anyway: events then arrive once it can (waits end at
    /// their deadline, streams see `resync`).
    pub(crate) async fn subscribe(
        &self,
        pool: &crate::db::Pool,
        tx: &broadcast::Sender<Received>,
    ) -> broadcast::Receiver<Received> {
        let mut open_until = self.open_until.lock().await;
        let rx = tx.subscribe();
        if open_until.is_some_and(|t| t > Instant::now()) {
            return rx;
        }
        match crate::db::events::open_gate(pool, self.id).await {
            Ok(()) => {
                *open_until = Some(Instant::now() + renew_margin());
                let tx = tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(GATE_SETTLE).await;
                    let _ = tx.send(Received::Resync);
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot open the event gate; events may be late"),
        }
        rx
    }

    /// Renews the row while anyone subscribes, removes it once nobody does, until
    /// `stop`; then removes it.
    pub(crate) async fn run(
        &self,
        pool: crate::db::Pool,
        tx: broadcast::Sender<Received>,
        stop: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(GATE_TICK) => {}
            }
            let mut open_until = self.open_until.lock().await;
            if tx.receiver_count() > 0 {
                match crate::db::events::open_gate(&pool, self.id).await {
                    Ok(()) => *open_until = Some(Instant::now() + renew_margin()),
                    Err(e) => tracing::warn!(error = %e, "cannot renew the event gate"),
                }
            } else if open_until.is_some() {
                match crate::db::events::close_gate(&pool, self.id).await {
                    Ok(()) => *open_until = None,
                    Err(e) => tracing::warn!(error = %e, "cannot close the event gate"),
                }
            }
        }
        let _ = crate::db::events::close_gate(&pool, self.id).await;
    }
}

/// How long an opened row is trusted: comfortably inside its database-side lifetime.
fn renew_margin() -> Duration {
    Duration::from_secs(crate::db::events::SUBSCRIPTION_TTL_SECS as u64) / 2
}

/// Filters of the event stream.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events of this queue.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
    pub queue: Option<String>,
    /// Only events of this job.
    pub job_id: Option<Uuid>,
}

/// One job state change, the data of an `event: job` message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobEventBody {
    /// Job id.
    pub id: Uuid,
    /// Queue.
    pub queue: String,
    /// State after the change: scheduled, available, running, completed, failed or
    /// cancelled.
    pub state: String,
}

/// A running job's progress report, the data of an `event: progress` message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgressEventBody {
    /// Job id.
    pub id: Uuid,
    /// Queue.
    pub queue: String,
    /// `{"attempt", "percent", "message", "at"}`, as in the job's `progress`.
    #[schema(value_type = Object)]
    pub progress: serde_json::Value,
}

/// Stream job state changes (Server-Sent Events).
///
/// Each change is an `event: job` with a JSON [`JobEventBody`]; a running job's
/// progress report (at most one per second per job) is an `event: progress` with a
/// [`ProgressEventBody`]. `event: lagged` (data:
/// how many batches were missed) means this client was too slow and missed changes;
/// `event: resync` means the server's database connection was re-established and
/// changes may have been missed. In both cases re-read what you care about.
#[utoipa::path(
    get, path = "/v1/events", tag = "events",
    params(EventsQuery),
    responses(
        (status = 200, description = "An endless stream of events", content_type = "text/event-stream", body = JobEventBody),
        InvalidFilter,
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn stream(
    State(state): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    if let Some(queue) = &q.queue {
        validate_name(queue).map_err(|r| ApiError::invalid("queue", r))?;
    }
    let rx = state.subscribe().await;
    let stop = state.stopping().clone();
    // unfold keeps the receiver inside the stream; each poll takes the next batch.
    let batches = futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(message) => Some((Ok(message), rx)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some((Err(n), rx)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    });
    let events = batches
        .flat_map(move |item| {
            let out: Vec<Event> = match item {
                Ok(Received::Events(batch)) => batch
                    .into_iter()
                    .filter(|e| q.queue.as_ref().is_none_or(|queue| &e.queue == queue))
                    .filter(|e| q.job_id.is_none_or(|id| e.id == id))
                    .filter_map(|e| match e.progress {
                        Some(progress) => Event::default()
                            .event("progress")
                            .json_data(ProgressEventBody {
                                id: e.id,
                                queue: e.queue,
                                progress,
                            })
                            .ok(),
                        None => Event::default()
                            .event("job")
                            .json_data(JobEventBody {
                                id: e.id,
                                queue: e.queue,
                                state: e.state,
                            })
                            .ok(),
                    })
                    .collect(),
                Ok(Received::Resync) => vec![Event::default().event("resync").data("{}")],
                Err(n) => {
                    crate::metrics::events_dropped(n);
                    vec![
                        Event::default()
                            .event("lagged")
                            .data(format!("{{\"missed\":{n}}}")),
                    ]
                }
            };
            futures_util::stream::iter(out.into_iter().map(Ok))
        })
        // Ends the stream on shutdown so graceful shutdown does not wait for clients.
        .take_until(stop.cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
