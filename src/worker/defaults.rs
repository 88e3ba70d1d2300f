//! Queue defaults (timeouts, backoff, whether flow control limits a queue), cached.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::db::{self, queues::QueueDefaults};

/// How often queue defaults are re-read.
const QUEUE_DEFAULTS_TTL: Duration = Duration::from_secs(2);

/// Queue defaults, re-read every [`QUEUE_DEFAULTS_TTL`].
#[derive(Default)]
pub(crate) struct QueueDefaultsCache {
    by_name: HashMap<String, QueueDefaults>,
    fetched: Option<Instant>,
}

impl QueueDefaultsCache {
    /// Re-reads the defaults of `queues` if the cached ones are older than the TTL.
    pub(crate) async fn refresh(&mut self, pool: &PgPool, queues: &[String]) {
        if self
            .fetched
            .is_some_and(|t| t.elapsed() < QUEUE_DEFAULTS_TTL)
        {
            return;
        }
        match db::queues::queue_defaults(pool, queues).await {
            Ok(rows) => {
                self.by_name = rows.into_iter().map(|q| (q.name.clone(), q)).collect();
                self.fetched = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading queue settings failed; using the previous ones")
            }
        }
    }

    /// The defaults of `queue`, if it has a row.
    pub(crate) fn get(&self, queue: &str) -> Option<&QueueDefaults> {
        self.by_name.get(queue)
    }

    /// Queues with flow-control limits, claimed one by one through claim_limited.
    pub(crate) fn limited(&self) -> Vec<String> {
        self.by_name
            .values()
            .filter(|q| q.limited)
            .map(|q| q.name.clone())
            .collect()
    }
}
