//! One claim round: how many jobs to ask for, from which queues, and the statements
//! that lease them. The decisions are pure functions ([`claim_size`], [`Apportion`]);
//! [`ClaimPlan::run_once`] runs one round against the database and can be driven alone.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::db::{self, due_work};
use crate::model::ClaimedJob;

/// What the claimer holds when deciding whether to claim.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Holding {
    /// Handlers running.
    pub executing: usize,
    /// Claimed jobs not started yet (prefetched, or waiting for an older attempt).
    pub buffered: usize,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Jobs claimed beyond the free slots while jobs are fast.
    pub prefetch: usize,
    /// Whether recent jobs were fast.
    pub jobs_fast: bool,
}

/// How much one round asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimSize {
    /// Jobs wanted in all, prefetch included.
    pub room: usize,
    /// Free executor slots (limited queues claim only within these).
    pub free: usize,
}

/// How much to claim now, or None when a round is not worth its round trip.
pub(crate) fn claim_size(h: Holding) -> Option<ClaimSize> {
    // Prefetch beyond the free slots only while jobs are fast: a buffered slow job
    // would wait here while other workers sit idle.
    let prefetch = if h.jobs_fast { h.prefetch } else { 0 };
    let held = h.executing + h.buffered;
    let capacity = h.concurrency + prefetch;
    let room = capacity.saturating_sub(held);
    // Refill once a quarter of the capacity is free while there is a backlog, so a busy
    // worker claims in batches instead of one job per finished job.
    let worth_it = room >= (capacity / 4).max(1) || (held == 0 && room > 0);
    worth_it.then_some(ClaimSize {
        room,
        // Limited queues never prefetch: a buffered job would hold one of the queue's
        // cluster-wide slots without running.
        free: h.concurrency.saturating_sub(held),
    })
}

/// How one round's asks are shared out: limited queues first, each with an even share
/// of the free slots (claimed after the unlimited ones, a backlog there left them
/// nothing, ever), then the unlimited queues in one statement with the rest.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Apportion {
    share: usize,
    size: ClaimSize,
}

impl Apportion {
    /// The split for `limited` limited queues, plus the unlimited ones if served.
    pub(crate) fn new(limited: usize, serves_unlimited: bool, size: ClaimSize) -> Apportion {
        let groups = limited + usize::from(serves_unlimited);
        Apportion {
            share: size.free.div_ceil(groups.max(1)),
            size,
        }
    }

    /// What the next limited queue asks for, `claimed` jobs into the round.
    pub(crate) fn limited_ask(&self, claimed: usize) -> usize {
        self.share.min(self.size.free.saturating_sub(claimed))
    }

    /// What the unlimited queues ask for, `claimed` jobs into the round.
    pub(crate) fn unlimited_ask(&self, claimed: usize) -> usize {
        self.size.room.saturating_sub(claimed)
    }
}

/// What one claim round asks for.
#[derive(Clone)]
pub struct ClaimPlan {
    /// Pool the claim statements run on.
    pub pool: PgPool,
    /// Queues served.
    pub queues: Vec<String>,
    /// Served queues with flow-control limits (claimed one by one).
    pub limited: Vec<String>,
    /// How much to ask for.
    pub size: ClaimSize,
    /// The claiming worker (the lease owner).
    pub worker: Uuid,
    /// Lease length.
    pub lease: Duration,
}

/// How a claim round went. Its jobs went to the round's sink, whatever happened.
#[derive(Debug, Default)]
pub struct ClaimReport {
    /// Some queue returned all it was asked for: there may be more.
    pub full: bool,
    /// The first statement that failed (the others still ran).
    pub error: Option<db::Error>,
}

impl ClaimPlan {
    /// Runs one round: each statement's jobs go to `push` right after it commits, so
    /// neither an error in a later statement nor a panic loses leased jobs.
    pub async fn run_once(&self, mut push: impl FnMut(Vec<ClaimedJob>) + Send) -> ClaimReport {
        let mut report = ClaimReport::default();
        let mut claimed = 0usize;
        let serves_unlimited = self.queues.len() > self.limited.len();
        let split = Apportion::new(self.limited.len(), serves_unlimited, self.size);
        for queue in &self.limited {
            let ask = split.limited_ask(claimed);
            if ask == 0 {
                break;
            }
            match due_work::claim_limited(&self.pool, queue, ask, self.worker, self.lease).await {
                Ok(jobs) => {
                    report.full |= jobs.len() == ask;
                    claimed += jobs.len();
                    push(jobs);
                }
                // One failing queue must not stop the others: keep going.
                Err(e) => {
                    report.error.get_or_insert(e);
                }
            }
        }
        let ask = split.unlimited_ask(claimed);
        if serves_unlimited && ask > 0 {
            match due_work::claim_due(&self.pool, &self.queues, ask, self.worker, self.lease).await
            {
                Ok(jobs) => {
                    report.full |= jobs.len() == ask;
                    push(jobs);
                }
                Err(e) => {
                    report.error.get_or_insert(e);
                }
            }
        }
        report
    }
}

/// A claim round in flight.
pub(crate) struct Claim {
    pub task: tokio::task::JoinHandle<ClaimReport>,
    /// Jobs claimed so far, pushed right after each statement commits.
    sink: Arc<Mutex<Vec<ClaimedJob>>>,
}

impl Claim {
    /// Starts `plan` as its own task.
    pub(crate) fn spawn(plan: ClaimPlan) -> Claim {
        let sink: Arc<Mutex<Vec<ClaimedJob>>> = Arc::default();
        let out = sink.clone();
        let task = tokio::spawn(async move {
            plan.run_once(|jobs| out.lock().unwrap_or_else(|p| p.into_inner()).extend(jobs))
                .await
        });
        Claim { task, sink }
    }

    /// The jobs claimed so far.
    pub(crate) fn take_jobs(&self) -> Vec<ClaimedJob> {
        std::mem::take(&mut *self.sink.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(executing: usize, buffered: usize, jobs_fast: bool) -> Holding {
        Holding {
            executing,
            buffered,
            concurrency: 32,
            prefetch: 32,
            jobs_fast,
        }
    }

    #[test]
    fn claims_in_batches_of_at_least_a_quarter() {
        // Idle: everything, prefetch included once jobs are known to be fast.
        assert_eq!(
            claim_size(holding(0, 0, true)),
            Some(ClaimSize { room: 64, free: 32 })
        );
        assert_eq!(
            claim_size(holding(0, 0, false)),
            Some(ClaimSize { room: 32, free: 32 })
        );
        // Busy: not one job per finished job, but once a quarter is free.
        assert_eq!(claim_size(holding(32, 17, true)), None);
        assert_eq!(
            claim_size(holding(32, 16, true)),
            Some(ClaimSize { room: 16, free: 0 })
        );
        assert_eq!(claim_size(holding(25, 0, false)), None);
        assert_eq!(
            claim_size(holding(24, 0, false)),
            Some(ClaimSize { room: 8, free: 8 })
        );
        // Full (slow jobs buffered beyond the slots): nothing.
        assert_eq!(claim_size(holding(32, 40, false)), None);
        // Concurrency 1: one job is worth a round.
        let one = Holding {
            concurrency: 1,
            prefetch: 0,
            ..holding(0, 0, true)
        };
        assert_eq!(claim_size(one), Some(ClaimSize { room: 1, free: 1 }));
    }

    #[test]
    fn limited_queues_share_the_free_slots_first() {
        let size = ClaimSize { room: 64, free: 32 };
        // Three limited queues and the unlimited ones: 8 free slots each.
        let split = Apportion::new(3, true, size);
        assert_eq!(split.limited_ask(0), 8);
        assert_eq!(split.limited_ask(30), 2, "never beyond the free slots");
        assert_eq!(split.limited_ask(32), 0);
        assert_eq!(split.unlimited_ask(20), 44, "the rest, prefetch included");
        // Only limited queues: the free slots split between them, no prefetch.
        let split = Apportion::new(2, false, size);
        assert_eq!(split.limited_ask(0), 16);
        // No limited queue: the unlimited claim gets the whole room.
        assert_eq!(Apportion::new(0, true, size).unlimited_ask(0), 64);
        // Odd splits round up, so a single free slot still reaches a queue.
        let split = Apportion::new(4, true, ClaimSize { room: 1, free: 1 });
        assert_eq!(split.limited_ask(0), 1);
        assert_eq!(split.limited_ask(1), 0);
    }
}
