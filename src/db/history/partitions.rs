//! The upkeep of the history tables' daily partitions (`job_history`, `job_attempts`):
//! create ahead, drop past retention, prune the default partition.

use sqlx::PgPool;

use crate::db::Result;

/// What one call of a partition function did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionChange {
    /// The partition was created or dropped.
    Done,
    /// Nothing to do (it already existed, or was already gone).
    Nothing,
    /// A lock was not granted within the wait: try again later.
    Deferred,
    /// The default partition holds rows of that day: the day stays there.
    Occupied,
}

impl PartitionChange {
    fn from_sql(text: &str) -> PartitionChange {
        match text {
            "created" | "dropped" => PartitionChange::Done,
            "deferred" => PartitionChange::Deferred,
            "occupied" => PartitionChange::Occupied,
            _ => PartitionChange::Nothing,
        }
    }
}

/// Creates the daily partition of `parent` (`job_history` or `job_attempts`) for
/// `current_date + day_offset` (migration 0010's `ordinaut_create_partition`): SHARE
/// UPDATE EXCLUSIVE on the parent and ACCESS EXCLUSIVE on its default partition, each
/// waited for at most `lock_wait`, in its own transaction.
pub async fn create_partition(
    pool: &PgPool,
    parent: &str,
    day_offset: i32,
    lock_wait: std::time::Duration,
) -> Result<PartitionChange> {
    let text: String = sqlx::query_scalar(
        "SELECT ordinaut_create_partition($1, current_date + $2, make_interval(secs => $3))",
    )
    .bind(parent)
    .bind(day_offset)
    .bind(lock_wait.as_secs_f64())
    .fetch_one(pool)
    .await?;
    Ok(PartitionChange::from_sql(&text))
}

/// Daily partitions of job_history and job_attempts wholly older than `keep_days` days.
pub async fn partitions_older_than(pool: &PgPool, keep_days: i32) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT ordinaut_partitions_before(current_date - $1)")
            .bind(keep_days)
            .fetch_all(pool)
            .await?,
    )
}

/// Drops one daily partition: ACCESS EXCLUSIVE on the partition first, then on its
/// parent, each waited for at most `lock_wait` (`ordinaut_drop_partition`).
pub async fn drop_partition(
    pool: &PgPool,
    partition: &str,
    lock_wait: std::time::Duration,
) -> Result<PartitionChange> {
    let text: String =
        sqlx::query_scalar("SELECT ordinaut_drop_partition($1, make_interval(secs => $2))")
            .bind(partition)
            .bind(lock_wait.as_secs_f64())
            .fetch_one(pool)
            .await?;
    Ok(PartitionChange::from_sql(&text))
}

/// Deletes up to `batch` rows older than `keep_days` from each default partition
/// (`ordinaut_prune_default_partitions`; row locks only, via their finished_at index).
pub async fn prune_default_partitions(pool: &PgPool, keep_days: i32, batch: i32) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT ordinaut_prune_default_partitions(now() - make_interval(days => $1), $2)",
    )
    .bind(keep_days)
    .bind(batch)
    .fetch_one(pool)
    .await?)
}
