//! `due_work`: the live jobs. Enqueue, claim, heartbeat, finish, rescue, cancel, retry.
//!
//! This is the hot path's SQL. Its write budget per batch of n jobs is one claim
//! statement and one finish statement; nothing here writes once per job.
//!
//! One file per step of a job's live life: `enqueue`, `claim`, `finish`, `lease`
//! (heartbeat and rescue), `cancel` (and retry).

mod cancel;
mod claim;
mod enqueue;
mod finish;
mod lease;

pub(super) use cancel::{CANCEL_WAITING_MANY, REQUEST_CANCEL_MANY, RETRY_MANY};
pub use cancel::{CancelResult, cancel, retry};
pub use claim::{claim_due, claim_limited};
pub(crate) use enqueue::insert_jobs;
pub use enqueue::{Enqueued, NewJob, enqueue_many};
pub use finish::{Applied, Finish, FinishKind, finish_many};
pub use lease::{Extended, LiveAttempt, Rescued, extend_leases, live_attempts, rescue_many};
