//! Vacuums `due_work` as soon as its dead rows are worth it and can be removed.
//!
//! Every job leaves two dead row versions in `due_work` (its claim and its finish), and
//! the claim's index scan steps over them until a vacuum removes them. Autovacuum visits
//! a database once per `autovacuum_naptime` (a minute by default), so after a long
//! transaction that kept vacuum from removing anything ends, claims stayed slow for up
//! to that minute (docs/BENCHMARKS.md, "Sustained and bloat"). This service looks every
//! second and vacuums when dead rows outnumber live ones (and at least [`MIN_DEAD`]),
//! unless a snapshot older than the last vacuum is still open: then nothing new could
//! be removed, and it waits for that snapshot to end instead of scanning in vain. What
//! it cannot see (a standby's feedback, a replication slot, another role's sessions)
//! shows as a vacuum that removed little: the pause before the next one then doubles,
//! up to [`MAX_GAP`] (a minute), until one removes most of what it found.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db::{self, vacuum::DueWorkDead};
use crate::model::jittered;

/// Time between looks at `due_work`'s dead rows.
const INTERVAL: Duration = Duration::from_secs(1);
/// Fewest dead rows worth a vacuum (a hundred milliseconds of work at full speed).
pub const MIN_DEAD: i64 = 20_000;
/// Shortest time between two vacuums started here.
pub const MIN_GAP: Duration = Duration::from_secs(5);
/// A vacuum that took at least this long is logged at info (shorter ones at debug).
const LONG_VACUUM: Duration = Duration::from_secs(1);
/// Longest, after vacuums in a row that removed less than half of the dead rows: no
/// longer than autovacuum's own default visit interval, so a horizon this service
/// cannot see (another role's sessions are hidden from it) never leaves `due_work`
/// waiting longer than autovacuum alone would.
pub const MAX_GAP: Duration = Duration::from_secs(60);

/// What one look decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Vacuumed `due_work`.
    Vacuumed,
    /// Too few dead rows.
    Clean,
    /// Vacuumed less than the current gap ago ([`MIN_GAP`], doubled after a vacuum in vain).
    TooSoon,
    /// A snapshot older than the last vacuum is open: nothing new is removable.
    Held,
    /// This role does not own `due_work`, so it cannot vacuum it.
    NotOwner,
}

/// Decides from what `due_work` holds whether a vacuum now would remove anything worth it.
pub fn decide(state: &DueWorkDead, since_ours: Option<Duration>, gap: Duration) -> Decision {
    if !state.may_vacuum {
        return Decision::NotOwner;
    }
    if state.dead < MIN_DEAD.max(state.live) {
        return Decision::Clean;
    }
    if since_ours.is_some_and(|d| d < gap) {
        return Decision::TooSoon;
    }
    if held(state.oldest_snapshot, state.last_vacuum) {
        return Decision::Held;
    }
    Decision::Vacuumed
}

/// A snapshot taken before the last vacuum (ended) still hides every row version that
/// died after it started, and the ones that died before were removed by that vacuum
/// (but for those that died while it ran: seconds' worth, left for the next one).
fn held(oldest_snapshot: Option<DateTime<Utc>>, last_vacuum: Option<DateTime<Utc>>) -> bool {
    matches!((oldest_snapshot, last_vacuum), (Some(s), Some(v)) if s < v)
}

/// The vacuum service.
pub struct Vacuumer {
    pool: PgPool,
    last: Option<Instant>,
    gap: Duration,
}

impl Vacuumer {
    /// A vacuumer over `pool`.
    pub fn new(pool: PgPool) -> Vacuumer {
        Vacuumer {
            pool,
            last: None,
            gap: MIN_GAP,
        }
    }

    /// Looks every second until `shutdown`; stops for good when the role cannot vacuum.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut failures: u64 = 0;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(jittered(INTERVAL)) => {}
                _ = shutdown.cancelled() => return,
            }
            let started = Instant::now();
            let look = tokio::select! {
                r = self.run_once() => r,
                _ = shutdown.cancelled() => return,
            };
            match look {
                Ok((Decision::Vacuumed, state)) => {
                    failures = 0;
                    let took = started.elapsed();
                    // Under steady load this runs every few seconds: only a long one
                    // (after a held snapshot, say) is worth an operator's attention.
                    if took >= LONG_VACUUM {
                        tracing::info!(
                            dead = state.dead,
                            live = state.live,
                            took_ms = took.as_millis() as u64,
                            "vacuumed due_work"
                        );
                    } else {
                        tracing::debug!(
                            dead = state.dead,
                            live = state.live,
                            took_ms = took.as_millis() as u64,
                            "vacuumed due_work"
                        );
                    }
                }
                Ok((Decision::NotOwner, _)) => {
                    tracing::warn!(
                        "this role does not own due_work, so it cannot vacuum it; autovacuum alone keeps it clean"
                    );
                    return;
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    // One line per failure streak step, not per second.
                    if failures.is_power_of_two() {
                        tracing::warn!(error = %e, failures, "vacuum of due_work failed; will retry");
                    }
                }
            }
        }
    }

    /// One look: reads `due_work`'s dead rows and vacuums it if [`decide`] says so.
    pub async fn run_once(&mut self) -> db::Result<(Decision, DueWorkDead)> {
        let state = db::vacuum::due_work_dead(&self.pool).await?;
        let decision = decide(&state, self.last.map(|t| t.elapsed()), self.gap);
        if decision == Decision::Vacuumed {
            self.last = Some(Instant::now());
            db::vacuum::vacuum_due_work(&self.pool).await?;
            // A vacuum reports the dead rows it had to leave as it ends.
            let left = db::vacuum::due_work_dead(&self.pool).await?.dead;
            self.gap = next_gap(self.gap, state.dead, left);
        }
        Ok((decision, state))
    }
}

/// The pause before the next vacuum: doubled (up to [`MAX_GAP`]) when this one left
/// more than half of the `found` dead rows, else back to [`MIN_GAP`].
fn next_gap(gap: Duration, found: i64, left: i64) -> Duration {
    if left > found / 2 {
        (gap * 2).min(MAX_GAP)
    } else {
        MIN_GAP
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(dead: i64, live: i64) -> DueWorkDead {
        DueWorkDead {
            dead,
            live,
            last_vacuum: None,
            oldest_snapshot: None,
            may_vacuum: true,
        }
    }

    #[test]
    fn vacuums_when_dead_rows_outnumber_live_ones_and_are_many() {
        assert_eq!(
            decide(&state(MIN_DEAD, 0), None, MIN_GAP),
            Decision::Vacuumed
        );
        assert_eq!(
            decide(&state(MIN_DEAD - 1, 0), None, MIN_GAP),
            Decision::Clean
        );
        assert_eq!(
            decide(&state(50_000, 60_000), None, MIN_GAP),
            Decision::Clean
        );
        assert_eq!(
            decide(&state(60_000, 50_000), None, MIN_GAP),
            Decision::Vacuumed
        );
    }

    #[test]
    fn waits_between_its_own_vacuums() {
        let s = state(100_000, 0);
        assert_eq!(
            decide(&s, Some(Duration::from_secs(1)), MIN_GAP),
            Decision::TooSoon
        );
        assert_eq!(decide(&s, Some(MIN_GAP), MIN_GAP), Decision::Vacuumed);
    }

    #[test]
    fn a_vacuum_in_vain_doubles_the_gap_and_one_that_works_resets_it() {
        assert_eq!(next_gap(MIN_GAP, 100_000, 90_000), MIN_GAP * 2);
        assert_eq!(next_gap(MAX_GAP, 100_000, 90_000), MAX_GAP);
        assert_eq!(next_gap(MIN_GAP * 8, 100_000, 10), MIN_GAP);
        let s = state(100_000, 0);
        assert_eq!(decide(&s, Some(MIN_GAP), MIN_GAP * 2), Decision::TooSoon);
    }

    #[test]
    fn waits_while_a_snapshot_older_than_the_last_vacuum_is_open() {
        let now = Utc::now();
        let mut s = state(100_000, 0);
        s.last_vacuum = Some(now);
        s.oldest_snapshot = Some(now - chrono::Duration::seconds(30));
        assert_eq!(decide(&s, None, MIN_GAP), Decision::Held);
        s.oldest_snapshot = Some(now + chrono::Duration::seconds(1));
        assert_eq!(decide(&s, None, MIN_GAP), Decision::Vacuumed);
        s.oldest_snapshot = None;
        assert_eq!(decide(&s, None, MIN_GAP), Decision::Vacuumed);
    }

    #[test]
    fn a_role_that_does_not_own_the_table_does_not_try() {
        let mut s = state(100_000, 0);
        s.may_vacuum = false;
        assert_eq!(decide(&s, None, MIN_GAP), Decision::NotOwner);
    }
}
