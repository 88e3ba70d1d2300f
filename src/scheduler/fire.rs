//! Turns due schedules into jobs. Any number of schedulers may run this at once: due
//! schedules are locked FOR UPDATE SKIP LOCKED, the job is inserted and `next_run_at`
//! advanced in one transaction, and `schedule_fires`' primary key (schedule, fire time)
//! makes a double fire impossible even if that lock were bypassed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::cron::{CronExpr, parse_timezone};
use crate::db::schedules::{self, Fire, FireOutcome, ScheduleRow};
use crate::db::{self, due_work, due_work::NewJob};
use crate::model::jittered;

/// Most fire records per misfire (the rest are counted in `skipped`).
const SCHEDULES_PER_TICK: i64 = 100;

/// Settings of the fire loop.
#[derive(Debug, Clone)]
pub struct FireOptions {
    /// Time between ticks.
    pub tick: Duration,
    /// A fire missed by more than this is skipped and recorded.
    pub misfire_grace: Duration,
    /// max_attempts for jobs whose schedule names none.
    pub default_max_attempts: i32,
    /// Written after every tick, for `ordinaut healthcheck --scheduler`.
    pub heartbeat: Option<std::sync::Arc<super::Heartbeat>>,
}

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FireReport {
    /// Jobs enqueued.
    pub enqueued: u64,
    /// Fire times skipped as misfires.
    pub misfired: u64,
    /// Fires skipped because the previous job was live (overlap = skip).
    pub overlapped: u64,
}

/// The fire loop.
pub struct Firer {
    pool: PgPool,
    options: FireOptions,
}

impl Firer {
    /// A fire loop over `pool`.
    pub fn new(pool: PgPool, options: FireOptions) -> Firer {
        Firer { pool, options }
    }

    /// Ticks until `shutdown`; errors are logged and retried.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.run_once().await {
                Ok(r) if r != FireReport::default() => tracing::info!(
                    enqueued = r.enqueued,
                    misfired = r.misfired,
                    overlapped = r.overlapped,
                    "schedules fired"
                ),
                Ok(_) => tracing::trace!("no schedule due"),
                Err(e) => tracing::warn!(error = %e, "firing schedules failed; will retry"),
            }
            if let Some(heartbeat) = &self.options.heartbeat {
                heartbeat.beat().await;
            }
            tokio::select! {
                _ = tokio::time::sleep(jittered(self.options.tick)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Fires every due schedule once (and records misfires), in one transaction.
    pub async fn run_once(&self) -> db::Result<FireReport> {
        let mut report = FireReport::default();
        let mut tx = self.pool.begin().await?;
        let due = schedules::lock_due(&mut tx, SCHEDULES_PER_TICK).await?;
        // The database's clock, which selected `due`: with the host's, a skewed clock
        // fired early (host ahead) or found nothing to fire in a due schedule and
        // selected it again on every tick (host behind).
        let now = schedules::db_now(&mut tx).await?;
        for row in due {
            self.fire_one(&mut tx, &row, now, &mut report).await?;
        }
        tx.commit().await?;
        Ok(report)
    }

    async fn fire_one(
        &self,
        tx: &mut sqlx::PgConnection,
        row: &ScheduleRow,
        now: DateTime<Utc>,
        report: &mut FireReport,
    ) -> db::Result<()> {
        let (cron, tz) = match (
            CronExpr::parse(&row.spec.cron),
            parse_timezone(&row.spec.timezone),
        ) {
            (Ok(c), Ok(t)) => (c, t),
            (Err(e), _) | (_, Err(e)) => {
                // Stored rows were validated on the way in; pause rather than spin.
                tracing::error!(schedule = %row.spec.name, error = %e, "schedule cannot be evaluated; pausing it");
                schedules::pause_by_id(tx, row.id).await?;
                return Ok(());
            }
        };
        let grace = row
            .spec
            .misfire_grace()
            .unwrap_or(self.options.misfire_grace);
        let mut fire = row.state.next_run_at;
        let mut missed: Option<(DateTime<Utc>, i32)> = None;
        let mut last_fired = None;
        while fire <= now {
            let late = (now - fire).to_std().unwrap_or(Duration::ZERO);
            if late > grace {
                let entry = missed.get_or_insert((fire, 0));
                entry.1 += 1;
                report.misfired += 1;
                // A long outage: jump to the first fire inside the grace window.
                if entry.1 >= 10_000 {
                    let resume_from = now - chrono::Duration::from_std(grace).unwrap_or_default();
                    fire = cron.next_after(resume_from, tz).unwrap_or(now);
                    continue;
                }
            } else if row.spec.overlap == "skip" && schedules::has_live_job(tx, row.id).await? {
                schedules::record_fire(
                    tx,
                    Fire {
                        schedule_id: row.id,
                        fire_time: fire,
                        outcome: FireOutcome::SkippedOverlap,
                        job_id: None,
                        skipped: 0,
                    },
                )
                .await?;
                report.overlapped += 1;
                last_fired = Some(fire);
            } else {
                self.enqueue(tx, row, fire, FireOutcome::Enqueued, report)
                    .await?;
                last_fired = Some(fire);
            }
            match cron.next_after(fire, tz) {
                Some(next) => fire = next,
                None => break,
            }
        }
        if let Some((first, count)) = missed {
            schedules::record_fire(
                tx,
                Fire {
                    schedule_id: row.id,
                    fire_time: first,
                    outcome: FireOutcome::SkippedMisfire,
                    job_id: None,
                    skipped: count,
                },
            )
            .await?;
            tracing::warn!(schedule = %row.spec.name, skipped = count, first_missed = %first, "missed fire times skipped");
        }
        schedules::advance(tx, row.id, fire, last_fired).await
    }

    /// Inserts the schedule's job for `fire` and records it, unless that fire time is
    /// already recorded.
    async fn enqueue(
        &self,
        tx: &mut sqlx::PgConnection,
        row: &ScheduleRow,
        fire: DateTime<Utc>,
        outcome: FireOutcome,
        report: &mut FireReport,
    ) -> db::Result<()> {
        let (job, span) = job_for(row, fire);
        let id = job.id;
        let record = Fire {
            schedule_id: row.id,
            fire_time: fire,
            outcome,
            job_id: Some(id),
            skipped: 0,
        };
        if !schedules::record_fire(tx, record).await? {
            return Ok(());
        }
        let inserted = due_work::insert_jobs(tx, &[job], self.options.default_max_attempts)
            .instrument(span)
            .await?;
        if inserted.is_empty() {
            // The template's unique key matched a live job: nothing new was made.
            schedules::mark_fire_deduplicated(tx, row.id, fire).await?;
        } else {
            report.enqueued += 1;
        }
        Ok(())
    }

    /// Enqueues one job from the schedule now, without moving its cadence.
    pub async fn trigger(&self, name: &str) -> db::Result<uuid::Uuid> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = schedules::lock_by_name(&mut tx, name).await? else {
            return Err(db::Error::NotFound {
                what: "schedule",
                id: name.to_owned(),
            });
        };
        let fire = schedules::db_now(&mut tx).await?;
        let (job, span) = job_for(&row, fire);
        let id = job.id;
        let record = Fire {
            schedule_id: row.id,
            fire_time: fire,
            outcome: FireOutcome::Triggered,
            job_id: Some(id),
            skipped: 0,
        };
        schedules::record_fire(&mut tx, record).await?;
        due_work::insert_jobs(&mut tx, &[job], self.options.default_max_attempts)
            .instrument(span)
            .await?;
        tx.commit().await?;
        Ok(id)
    }
}

/// The job of one fire, and its `send` span: each fire starts a trace of its own,
/// linked to nothing (the job stores the span's context while spans are exported).
fn job_for(row: &ScheduleRow, fire: DateTime<Utc>) -> (NewJob, tracing::Span) {
    let mut job = NewJob::new(&row.spec.queue, &row.spec.kind, row.spec.payload.clone());
    job.priority = row.spec.priority;
    job.max_attempts = row.spec.max_attempts;
    job.timeout = row.spec.timeout();
    job.unique_key = row.spec.unique_key.clone();
    job.schedule_id = Some(row.id);
    job.scheduled_for = Some(fire);
    let span = crate::otel::enqueue_span(
        [row.spec.queue.as_str()],
        &[job.id],
        crate::otel::Parent::Root,
    );
    let carrier = crate::otel::enqueue_context(&span, None);
    crate::otel::stamp_jobs(std::slice::from_mut(&mut job), carrier.as_ref());
    (job, span)
}
