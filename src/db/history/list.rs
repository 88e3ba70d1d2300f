//! The job list: live, finished and waiting jobs under one filter, newest first by a
//! keyset cursor, with JSON path and text search under a scan budget.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use super::JobView;
use crate::db::Result;

/// What the job list and the bulk actions ([`crate::db::bulk::BulkFilter`]) filter
/// jobs on; all optional.
#[derive(Debug, Clone, Default)]
pub struct JobMatch {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this effective state.
    pub state: Option<String>,
    /// Created at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before.
    pub created_before: Option<DateTime<Utc>>,
}

/// Filters for [`list_jobs`]; all optional.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Queue, kind, state and creation time.
    pub matching: JobMatch,
    /// Only jobs fired by this schedule.
    pub schedule_id: Option<Uuid>,
    /// Only jobs whose payload matches this SQL/JSON path (see [`JSON_PATH_MATCH`]).
    pub payload_path: Option<String>,
    /// Only jobs whose metadata matches this SQL/JSON path.
    pub metadata_path: Option<String>,
    /// Only jobs with this text (case-insensitive) in payload, metadata or last error.
    pub text: Option<String>,
    /// Keyset cursor: only ids below this one (ids are time-ordered UUIDv7).
    pub before_id: Option<Uuid>,
    /// Page size.
    pub limit: i64,
}

/// How a JSON path matches a document (`{column}` is replaced by the column; the path, cast
/// to jsonpath, and a closing parenthesis follow): a predicate (`$.port > 1024`) matches when it is true, any
/// other path (`$.tags[*] ? (@ == "prod")`) when it finds something. Errors inside the
/// document (a missing key in strict mode, a type mismatch) do not match instead of
/// failing the query.
pub const JSON_PATH_MATCH: &str = "ordinaut_json_path_match({column}, ";

/// `text` with LIKE's wildcards escaped, to be matched literally.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether `path` is a valid SQL/JSON path (Postgres's own parser), and why not.
pub async fn check_json_path(pool: &PgPool, path: &str) -> Result<std::result::Result<(), String>> {
    match sqlx::query("SELECT $1::jsonpath")
        .bind(path)
        .execute(pool)
        .await
    {
        Ok(_) => Ok(Ok(())),
        Err(sqlx::Error::Database(e))
            if e.code()
                .is_some_and(|c| c.starts_with("42") || c.starts_with("22")) =>
        {
            Ok(Err(e.message().to_owned()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Columns of a live job as a [`JobView`] (`state` is the effective one).
const LIVE_COLUMNS: &str = "\
SELECT id, queue, kind,
       CASE WHEN state = 'scheduled' AND run_at <= now() THEN 'available' ELSE state END AS state,
       payload, priority, attempt, max_attempts, run_at, unique_key, lease_owner, schedule_id, metadata,
       NULL::jsonb AS output, last_error, created_at, attempted_at, NULL::timestamptz AS finished_at,
       workflow_id
FROM due_work WHERE true";

/// Columns of a finished job as a [`JobView`].
const FINISHED_COLUMNS: &str = "\
SELECT id, queue, kind, state, payload, priority, attempt, max_attempts, run_at, unique_key,
       NULL::uuid AS lease_owner, schedule_id, metadata, output, last_error, created_at, attempted_at, finished_at,
       workflow_id
FROM job_history WHERE true";

/// Columns of a waiting workflow step as a [`JobView`]. Found through the running
/// workflows (a partial index; a waiting step's workflow is always running), then each
/// one's steps by primary key, so the list's third side costs one probe of an empty
/// index when no workflow runs. The fence (OFFSET 0) keeps the planner from scanning
/// every step ever kept instead.
const WAITING_COLUMNS: &str = "\
SELECT * FROM (
    SELECT s.job_id AS id, s.queue, s.kind, 'waiting'::text AS state, s.payload, s.priority,
           0 AS attempt, s.max_attempts, s.created_at AS run_at, NULL::text AS unique_key,
           NULL::uuid AS lease_owner, NULL::uuid AS schedule_id, s.metadata, NULL::jsonb AS output,
           NULL::text AS last_error, s.created_at, NULL::timestamptz AS attempted_at,
           NULL::timestamptz AS finished_at, s.workflow_id
    FROM workflows w
    CROSS JOIN LATERAL (SELECT * FROM workflow_steps x
                        WHERE x.workflow_id = w.id AND x.state = 'waiting' OFFSET 0) s
    WHERE w.state = 'running') AS waiting
WHERE true";

/// Whether `filter` searches inside documents (payload, metadata or text): the
/// filters no index serves, which [`list_jobs_budgeted`] bounds.
fn searches(filter: &JobFilter) -> bool {
    filter.payload_path.is_some() || filter.metadata_path.is_some() || filter.text.is_some()
}

/// Builds the list statement: each side (live, finished) only with the predicates the
/// filter has, ordered by id and limited on its own, so that each is an ordered index
/// scan that stops after a page: `due_work`'s primary key (or its claim index for a
/// queue), and per history partition `(queue, id)` / `(kind, id)` (migration 0010) or
/// the id index; the waiting workflow steps through the running workflows (see
/// [`WAITING_COLUMNS`]). A side that cannot match the state filter is left out.
///
/// With a `budget` (and a search), each side examines at most `budget` rows passing
/// the indexed filters, newest first: the search is evaluated over them
/// (`matched`), numbered (`scan_rank`), and a side returns its matches plus its
/// `budget`-th row whether it matches or not, which marks how far it searched.
fn list_jobs_query(
    filter: &JobFilter,
    explain: bool,
    budget: Option<i64>,
) -> sqlx::QueryBuilder<sqlx::Postgres> {
    let live_states = ["scheduled", "available", "running"];
    let state = filter.matching.state.as_deref();
    let live = state.is_none_or(|s| live_states.contains(&s));
    // A step never comes from a schedule: a schedule filter leaves waiting steps out
    // (unless they are asked for, and then none matches).
    let waiting = match state {
        Some(s) => s == "waiting",
        None => filter.schedule_id.is_none(),
    };
    let finished = state.is_none_or(|s| !live_states.contains(&s) && s != "waiting");
    let budget = budget.filter(|_| searches(filter));
    let mut q = sqlx::QueryBuilder::new(if explain {
        "EXPLAIN SELECT * FROM ("
    } else {
        "SELECT * FROM ("
    });
    // The filters the indexes serve.
    let indexed = |q: &mut sqlx::QueryBuilder<sqlx::Postgres>| {
        if let Some(queue) = &filter.matching.queue {
            q.push(" AND queue = ").push_bind(queue.clone());
        }
        if let Some(kind) = &filter.matching.kind {
            q.push(" AND kind = ").push_bind(kind.clone());
        }
        if let Some(t) = filter.matching.created_after {
            q.push(" AND created_at >= ").push_bind(t);
        }
        if let Some(t) = filter.matching.created_before {
            q.push(" AND created_at < ").push_bind(t);
        }
        if let Some(id) = filter.schedule_id {
            q.push(" AND schedule_id = ").push_bind(id);
        }
        if let Some(id) = filter.before_id {
            q.push(" AND id < ").push_bind(id);
        }
    };
    // The search inside documents, as one boolean expression after `true`. The text
    // is compared with last_error first: the cheapest, and where most searched text
    // (error messages) is.
    let search = |q: &mut sqlx::QueryBuilder<sqlx::Postgres>| {
        q.push("true");
        for (column, path) in [
            ("payload", &filter.payload_path),
            ("metadata", &filter.metadata_path),
        ] {
            if let Some(path) = path {
                q.push(" AND ")
                    .push(JSON_PATH_MATCH.replace("{column}", column))
                    .push_bind(path.clone())
                    .push("::jsonpath)");
            }
        }
        if let Some(text) = &filter.text {
            let pattern = format!("%{}%", like_escape(text));
            q.push(" AND (last_error ILIKE ")
                .push_bind(pattern.clone())
                .push(" OR metadata::text ILIKE ")
                .push_bind(pattern.clone())
                .push(" OR payload::text ILIKE ")
                .push_bind(pattern)
                .push(")");
        }
    };
    let side = |q: &mut sqlx::QueryBuilder<sqlx::Postgres>, columns: &str, live_side: bool| {
        q.push("(");
        if budget.is_some() {
            // coalesce: a NULL (no last_error, a silent path error) is no match.
            q.push("SELECT * FROM (SELECT s.*, row_number() OVER (ORDER BY id DESC) AS scan_rank, coalesce(");
            search(q);
            q.push(", false) AS matched FROM (");
        }
        q.push(columns);
        if live_side {
            match state {
                Some("available") => {
                    q.push(" AND state <> 'running' AND run_at <= now()");
                }
                Some("scheduled") => {
                    q.push(" AND state = 'scheduled' AND run_at > now()");
                }
                Some("running") => {
                    q.push(" AND state = 'running'");
                }
                _ => {}
            }
        } else if let Some(s) = state {
            q.push(" AND state = ").push_bind(s.to_owned());
        }
        indexed(q);
        match budget {
            Some(budget) => {
                q.push(" ORDER BY id DESC LIMIT ").push_bind(budget);
                q.push(") AS s) AS scanned WHERE matched OR scan_rank = ")
                    .push_bind(budget);
                // The page's matches and, when the scan reaches it first, the mark.
                q.push(" ORDER BY id DESC LIMIT ")
                    .push_bind(filter.limit + 1);
            }
            None => {
                q.push(" AND ");
                search(q);
                q.push(" ORDER BY id DESC LIMIT ").push_bind(filter.limit);
            }
        }
        q.push(")");
    };
    // The sides present, joined by UNION ALL. The waiting side's own `state` is the
    // literal 'waiting', so the finished side's state predicate fits it too.
    let sides = [
        (live, LIVE_COLUMNS, true),
        (finished, FINISHED_COLUMNS, false),
        (waiting, WAITING_COLUMNS, false),
    ];
    for (i, (_, columns, live_side)) in sides.iter().filter(|s| s.0).enumerate() {
        if i > 0 {
            q.push(" UNION ALL ");
        }
        side(&mut q, columns, *live_side);
    }
    q.push(") AS jobs ORDER BY id DESC");
    if budget.is_none() {
        q.push(" LIMIT ").push_bind(filter.limit);
    }
    q
}

/// Jobs matching `filter`, newest first, live and finished together (see
/// [`list_jobs_query`] for the indexes each side walks). A rare search walks every
/// job the indexed filters leave; [`list_jobs_budgeted`] bounds that.
pub async fn list_jobs(pool: &PgPool, filter: &JobFilter) -> Result<Vec<JobView>> {
    Ok(list_jobs_query(filter, false, None)
        .build_query_as()
        .fetch_all(pool)
        .await?)
}

/// A row of a budgeted search: the job, whether it matches, and its place in its
/// side's scan.
#[derive(FromRow)]
struct ScannedRow {
    #[sqlx(flatten)]
    job: JobView,
    matched: bool,
    scan_rank: i64,
}

/// A page of [`list_jobs_budgeted`].
#[derive(Debug, Clone)]
pub struct JobsPage {
    /// Matching jobs, newest first.
    pub jobs: Vec<JobView>,
    /// Set when the search stopped at its budget before filling the page: every job
    /// newer than or equal to this id was searched, older ones were not (continue
    /// with it as `before_id`). None when the page is full or nothing is left.
    pub searched_to: Option<Uuid>,
}

/// [`list_jobs`] with a scan budget: a search (payload, metadata or text) examines at
/// most `budget` rows of each side (live, finished) that pass the indexed filters. When
/// that ends the scan before a page is found, the page holds the matches found so far
/// (possibly none) and [`JobsPage::searched_to`] says where to continue, so a search
/// that matches nothing answers in bounded time instead of walking every row. Without
/// a search it is [`list_jobs`].
pub async fn list_jobs_budgeted(
    pool: &PgPool,
    filter: &JobFilter,
    budget: i64,
) -> Result<JobsPage> {
    if !searches(filter) {
        return Ok(JobsPage {
            jobs: list_jobs(pool, filter).await?,
            searched_to: None,
        });
    }
    let rows: Vec<ScannedRow> = list_jobs_query(filter, false, Some(budget))
        .build_query_as()
        .fetch_all(pool)
        .await?;
    // A side that reached its budget-th row searched down to it and no further; the
    // other side searched at least as far down. Below the higher of the two marks
    // nothing is known, so matches there are left for the next page.
    let mark = rows
        .iter()
        .filter(|r| r.scan_rank == budget)
        .map(|r| r.job.id)
        .max();
    let mut jobs: Vec<JobView> = rows
        .into_iter()
        .filter(|r| r.matched && mark.is_none_or(|m| r.job.id >= m))
        .map(|r| r.job)
        .collect();
    if jobs.len() as i64 >= filter.limit {
        jobs.truncate(filter.limit as usize);
        return Ok(JobsPage {
            jobs,
            searched_to: None,
        });
    }
    Ok(JobsPage {
        jobs,
        searched_to: mark,
    })
}

/// The plan Postgres picks for [`list_jobs`] with `filter` (EXPLAIN, not run): for
/// operators checking that a filter is served by an index, and for tests.
pub async fn explain_list_jobs(pool: &PgPool, filter: &JobFilter) -> Result<String> {
    let rows: Vec<String> = list_jobs_query(filter, true, None)
        .build_query_scalar()
        .fetch_all(pool)
        .await?;
    Ok(rows.join("\n"))
}
