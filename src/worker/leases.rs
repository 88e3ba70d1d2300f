//! The leases this worker holds, by job id: which attempt each is for (the fence every
//! outcome and extension carries), whether its handler is running, and the token that
//! cancels it. Shared by the claimer, executors, completer, heartbeat and listener.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::model::ClaimedJob;

/// One job this worker holds a lease on: the attempt the lease is for and the token
/// that cancels that attempt's execution.
struct Lease {
    attempt: i32,
    token: CancellationToken,
    /// The attempt whose handler is running now, if any. After a re-claim this is the
    /// older attempt until its execution ends: the new one waits for it.
    running: Option<i32>,
    /// Which claim this lease came from, unique in the process: after a crash that
    /// lost a claim's commit, the same job can be claimed again here under the same
    /// attempt number, and only this tells the two executions apart.
    epoch: u64,
    /// The heartbeat found the lease gone: this execution's outcome is not to be
    /// written (it would be refused, or, after a lost commit, land on a new claim).
    lost: bool,
}

/// Whether a claimed attempt may start now.
pub(crate) enum Start {
    /// Run it with this cancel token.
    Now(CancellationToken),
    /// An older attempt of the job is still executing here: start it later.
    Wait,
    /// Its lease is no longer ours at this attempt (claimed again since): drop it.
    Stale,
}

/// Jobs this worker holds a lease on (running or awaiting their outcome write).
#[derive(Default)]
pub(crate) struct Leases {
    owned: Mutex<HashMap<Uuid, Lease>>,
    /// Source of [`Lease::epoch`].
    next_epoch: AtomicU64,
}

impl Leases {
    fn owned(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Lease>> {
        // A poisoned lock only means another task panicked mid-insert; the map is
        // still a valid map.
        self.owned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leases held now.
    pub(crate) fn len(&self) -> usize {
        self.owned().len()
    }

    /// Takes a freshly claimed attempt in. A job id still held for an older attempt
    /// (rescued, then claimed again by us) supersedes it: the old execution is
    /// cancelled (its outcome will be refused) and the new attempt starts once it ends.
    pub(crate) fn adopt(&self, job: &ClaimedJob) {
        let mut owned = self.owned();
        let running = match owned.get(&job.id) {
            Some(old) => {
                tracing::warn!(job_id = %job.id, attempt = job.attempt, stale_attempt = old.attempt,
                    "job claimed again while an older attempt is held here; stopping the older one");
                old.token.cancel();
                old.running
            }
            None => None,
        };
        owned.insert(
            job.id,
            Lease {
                attempt: job.attempt,
                token: CancellationToken::new(),
                running,
                epoch: self.next_epoch.fetch_add(1, Ordering::Relaxed),
                lost: false,
            },
        );
    }

    /// The claim `id`'s current lease came from.
    pub(crate) fn epoch(&self, id: Uuid) -> Option<u64> {
        self.owned().get(&id).map(|l| l.epoch)
    }

    /// Whether the outcome of the execution started under `epoch` is to be written: not
    /// when its lease was lost (the lease is dropped here) or superseded by a new claim.
    pub(crate) fn settle(&self, id: Uuid, epoch: Option<u64>) -> bool {
        let mut owned = self.owned();
        match owned.get(&id) {
            Some(l) if Some(l.epoch) == epoch && l.lost => {
                owned.remove(&id);
                false
            }
            Some(l) => Some(l.epoch) == epoch,
            // Nothing held: the outcome goes to the database, whose fence decides.
            None => true,
        }
    }

    /// Marks `job`'s attempt as executing, if it may start.
    pub(crate) fn start(&self, job: &ClaimedJob) -> Start {
        match self.owned().get_mut(&job.id) {
            Some(lease) if lease.attempt == job.attempt => {
                if lease.running.is_some() {
                    Start::Wait
                } else {
                    lease.running = Some(job.attempt);
                    Start::Now(lease.token.clone())
                }
            }
            _ => Start::Stale,
        }
    }

    /// Whether `id`'s lease is held at `attempt`.
    pub(crate) fn holds(&self, id: Uuid, attempt: i32) -> bool {
        self.owned().get(&id).is_some_and(|l| l.attempt == attempt)
    }

    /// The execution of `id`'s `attempt` has ended (its outcome is on its way).
    pub(crate) fn stopped(&self, id: Uuid, attempt: i32) {
        if let Some(lease) = self.owned().get_mut(&id)
            && lease.running == Some(attempt)
        {
            lease.running = None;
        }
    }

    /// Drops the leases of these (job id, attempt) pairs, once their outcomes are
    /// written; a newer attempt of the same job is kept.
    pub(crate) fn forget(&self, attempts: &[(Uuid, i32)]) {
        let mut owned = self.owned();
        for (id, attempt) in attempts {
            if owned.get(id).is_some_and(|l| l.attempt == *attempt) {
                owned.remove(id);
            }
        }
    }

    /// Every held lease as (job id, attempt), for the heartbeat's extension.
    pub(crate) fn attempts(&self) -> Vec<(Uuid, i32)> {
        self.owned()
            .iter()
            .map(|(id, l)| (*id, l.attempt))
            .collect()
    }

    /// Stops the current attempt of `id`, if held (operator cancel).
    pub(crate) fn cancel(&self, id: &Uuid) -> bool {
        match self.owned().get(id) {
            Some(lease) => {
                lease.token.cancel();
                true
            }
            None => false,
        }
    }

    /// Stops `id` only if its held attempt is still `attempt` (lease lost at that
    /// attempt): a newer attempt claimed meanwhile is left running.
    pub(crate) fn cancel_attempt(&self, id: &Uuid, attempt: i32) -> bool {
        match self.owned().get_mut(id) {
            Some(lease) if lease.attempt == attempt => {
                lease.lost = true;
                lease.token.cancel();
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: Uuid, attempt: i32) -> ClaimedJob {
        ClaimedJob {
            id,
            queue: "q".into(),
            kind: "k".into(),
            payload: serde_json::Value::Null,
            attempt,
            max_attempts: 4,
            timeout: None,
            metadata: serde_json::Value::Null,
            schedule_id: None,
            run_at: chrono::Utc::now(),
            attempted_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_reclaim_waits_for_the_older_execution_and_cancels_it() {
        let leases = Leases::default();
        let id = Uuid::now_v7();
        leases.adopt(&job(id, 1));
        let Start::Now(old) = leases.start(&job(id, 1)) else {
            panic!("a fresh lease starts at once")
        };
        let old_epoch = leases.epoch(id);
        leases.adopt(&job(id, 2));
        assert!(old.is_cancelled(), "the superseded execution is stopped");
        assert!(matches!(leases.start(&job(id, 2)), Start::Wait));
        assert!(matches!(leases.start(&job(id, 1)), Start::Stale));
        assert!(
            !leases.settle(id, old_epoch),
            "the old execution's outcome is dropped"
        );
        leases.stopped(id, 1);
        assert!(matches!(leases.start(&job(id, 2)), Start::Now(_)));
        assert!(leases.settle(id, leases.epoch(id)));
        leases.forget(&[(id, 1)]);
        assert!(leases.holds(id, 2), "forgetting attempt 1 keeps attempt 2");
        leases.forget(&[(id, 2)]);
        assert_eq!(leases.len(), 0);
    }

    #[test]
    fn a_lost_lease_drops_its_outcome_and_spares_a_newer_attempt() {
        let leases = Leases::default();
        let id = Uuid::now_v7();
        leases.adopt(&job(id, 3));
        let epoch = leases.epoch(id);
        assert!(
            !leases.cancel_attempt(&id, 2),
            "another attempt is untouched"
        );
        assert!(leases.cancel_attempt(&id, 3));
        assert!(!leases.settle(id, epoch));
        assert_eq!(leases.len(), 0, "the lost lease is dropped when settled");
        assert!(
            leases.settle(Uuid::now_v7(), None),
            "unknown: the fence decides"
        );
        assert!(!leases.cancel(&id));
    }
}
