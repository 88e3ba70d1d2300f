//! Executor slots (how many handlers run, woken claimer when one frees) and the timing
//! that steers prefetch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use uuid::Uuid;

use super::Shared;

/// Jobs faster than this on average are prefetched beyond the free slots.
const FAST_JOB_MICROS: u64 = 5_000;

/// Handlers running now, and the signal that one finished.
#[derive(Default)]
pub(crate) struct Slots {
    executing: AtomicUsize,
    /// Signalled when an executor finishes.
    pub freed: Notify,
}

impl Slots {
    /// Handlers running now.
    pub(crate) fn busy(&self) -> usize {
        self.executing.load(Ordering::Acquire)
    }

    /// Takes a slot; the busy count after.
    fn take(&self) -> usize {
        self.executing.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Frees a slot; the busy count after.
    fn free(&self) -> usize {
        self.executing.fetch_sub(1, Ordering::AcqRel) - 1
    }
}

/// Moving average of recent execution times.
#[derive(Default)]
pub(crate) struct Timing {
    avg_exec_micros: AtomicU64,
}

impl Timing {
    /// Folds one execution time into the average.
    pub(crate) fn record(&self, took: Duration) {
        // Racy read-modify-write is fine: it only steers how much to prefetch.
        let sample = took.as_micros().min(u128::from(u32::MAX)) as u64;
        let avg = self.avg_exec_micros.load(Ordering::Relaxed);
        self.avg_exec_micros.store(
            if avg == 0 {
                sample
            } else {
                (avg * 15 + sample) / 16
            },
            Ordering::Relaxed,
        );
    }

    /// Whether recent jobs ran under [`FAST_JOB_MICROS`] on average.
    pub(crate) fn jobs_are_fast(&self) -> bool {
        let avg = self.avg_exec_micros.load(Ordering::Relaxed);
        avg > 0 && avg < FAST_JOB_MICROS
    }
}

/// One executor slot, freed when dropped (also when its task unwinds): the attempt is
/// marked stopped, the busy count drops and the claimer is woken.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    id: Uuid,
    attempt: i32,
}

impl Slot {
    /// Takes a slot for `id`'s `attempt`.
    pub(crate) fn take(shared: &Arc<Shared>, id: Uuid, attempt: i32) -> Slot {
        let busy = shared.slots.take();
        shared.gauges.busy.set(busy as f64);
        Slot {
            shared: shared.clone(),
            id,
            attempt,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.leases.stopped(self.id, self.attempt);
        let busy = self.shared.slots.free();
        self.shared.gauges.busy.set(busy as f64);
        self.shared.slots.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_follows_the_moving_average() {
        let t = Timing::default();
        assert!(!t.jobs_are_fast(), "nothing measured yet");
        t.record(Duration::from_micros(100));
        assert!(t.jobs_are_fast());
        for _ in 0..64 {
            t.record(Duration::from_millis(50));
        }
        assert!(!t.jobs_are_fast());
    }
}
