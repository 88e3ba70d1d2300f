//! Flow control with real worker processes: cluster-wide concurrency limits, rate
//! limits and per-key concurrency, measured by the handlers themselves.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::jobs::jobs;
use common::procs::{self, Proc};
use common::{TestDb, eventually};
use ordinaut::db::due_work::{self, NewJob};
use ordinaut::db::queues::{self, Change, QueueSettings, RateLimit};
use serde_json::json;
use uuid::Uuid;

/// A work dir with an ordinaut.toml whose `timed` kind logs start/end times per job.
fn workdir(sleep: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("flow-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("intervals.log");
    let script = format!(
        "echo \"$ORDINAUT_JOB_ID start $(date +%s%N)\" >> {log}; sleep {sleep}; echo \"$ORDINAUT_JOB_ID end $(date +%s%N)\" >> {log}",
        log = log.display()
    );
    let toml = format!(
        "[kinds.timed]\ntype = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", {script:?}]\n\n[kinds.nap]\ntype = \"noop\"\n"
    );
    std::fs::write(dir.join("ordinaut.toml"), toml).unwrap();
    dir
}

fn spawn_worker(dir: &Path, url: &str, concurrency: usize) -> Proc {
    procs::ordinaut(dir, &["worker"])
        .env("DATABASE_URL", url)
        .env("WORKER_QUEUES", "q")
        .env("WORKER_CONCURRENCY", concurrency.to_string())
        .env("WORKER_POLL_INTERVAL", "0.2")
        .env("LOG_LEVEL", "info")
        .start()
}

/// `n` workers of `concurrency` slots each.
fn spawn_workers(dir: &Path, url: &str, n: usize, concurrency: usize) -> Vec<Proc> {
    (0..n)
        .map(|_| spawn_worker(dir, url, concurrency))
        .collect()
}

/// Settings of queue `q` with only a concurrency limit.
fn concurrency_limit(n: i32) -> QueueSettings {
    QueueSettings {
        concurrency_limit: Change::Set(n),
        ..Default::default()
    }
}

/// The scene of a flow test: a database whose queue `q` has `settings`, and a work dir
/// whose `timed` jobs sleep `sleep` seconds.
async fn scene(sleep: &str, settings: QueueSettings) -> (TestDb, PathBuf) {
    let db = TestDb::new().await;
    set_queue(&db, settings).await;
    (db, workdir(sleep))
}

/// Applies `settings` to queue `q`.
async fn set_queue(db: &TestDb, settings: QueueSettings) {
    queues::upsert_settings(&db.pool, "q", &settings)
        .await
        .expect("set queue q");
}

/// (job id, start ns, end ns) from the handlers' own log.
fn intervals(dir: &Path) -> Vec<(String, i128, i128)> {
    let text = std::fs::read_to_string(dir.join("intervals.log")).unwrap_or_default();
    let mut starts = HashMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() != 3 {
            continue;
        }
        let t: i128 = parts[2].parse().unwrap();
        match parts[1] {
            "start" => {
                starts.insert(parts[0].to_owned(), t);
            }
            _ => {
                if let Some(s) = starts.remove(parts[0]) {
                    out.push((parts[0].to_owned(), s, t));
                }
            }
        }
    }
    out
}

/// Most intervals overlapping at any instant.
fn max_overlap(iv: &[(i128, i128)]) -> usize {
    let mut events: Vec<(i128, i32)> = iv.iter().flat_map(|(s, e)| [(*s, 1), (*e, -1)]).collect();
    // Ends before starts at the same instant.
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    max as usize
}

async fn drained(db: &TestDb, n: i64, limit: Duration) {
    eventually(limit, "queue drained", || async {
        (db.ended_in("completed").await >= n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn concurrency_limit_holds_across_four_workers() {
    let (db, dir) = scene("0.3", concurrency_limit(7)).await;
    jobs("q", "timed").enqueue_n(&db.pool, 60).await;
    let _workers = spawn_workers(&dir, &db.url, 4, 50);
    drained(&db, 60, Duration::from_secs(90)).await;
    let iv: Vec<(i128, i128)> = intervals(&dir)
        .into_iter()
        .map(|(_, s, e)| (s, e))
        .collect();
    assert_eq!(iv.len(), 60);
    let max = max_overlap(&iv);
    assert!(
        max <= 7,
        "{max} jobs ran at once with concurrency_limit = 7"
    );
    assert!(max >= 5, "the limit is used, not starved ({max})");
}

#[tokio::test]
async fn rate_limit_spaces_starts_and_keeps_up_with_the_rate() {
    let rate = RateLimit {
        limit: 20,
        period: Duration::from_secs(1),
        burst: Some(5),
    };
    let settings = QueueSettings {
        rate_limit: Change::Set(rate),
        ..Default::default()
    };
    let (db, dir) = scene("0", settings).await;
    jobs("q", "nap").enqueue_n(&db.pool, 240).await;
    let _workers = spawn_workers(&dir, &db.url, 2, 50);
    drained(&db, 240, Duration::from_secs(60)).await;
    let starts: Vec<f64> = db
        .column("SELECT extract(epoch FROM attempted_at)::float8 FROM job_history ORDER BY attempted_at")
        .await;
    let first = starts[0];
    let span = starts[starts.len() - 1] - first;
    // Any one-second window holds at most rate + burst starts.
    for (i, t) in starts.iter().enumerate() {
        let in_window = starts[i..].iter().take_while(|u| **u < t + 1.0).count();
        assert!(
            in_window <= 25,
            "{in_window} starts within one second at {:.2}s",
            t - first
        );
    }
    let average = (starts.len() - 1) as f64 / span;
    assert!(span >= 10.0, "backlog lasted {span:.1}s");
    assert!(
        average > 16.0 && average <= 21.0,
        "average {average:.1} starts/s for 20/s"
    );
}

#[tokio::test]
async fn key_concurrency_runs_one_job_per_key_and_interleaves_keys() {
    let settings = QueueSettings {
        key_concurrency: Change::Set(1),
        ..Default::default()
    };
    let (db, dir) = scene("0.1", settings).await;
    // Enqueued key by key, so interleaving has to come from the claim.
    let mut jobs = Vec::new();
    for key in 0..5 {
        for _ in 0..20 {
            let mut job = NewJob::new("q", "timed", json!({}));
            job.concurrency_key = Some(format!("target-{key}"));
            jobs.push(job);
        }
    }
    due_work::enqueue_many(&db.pool, &jobs, 4).await.unwrap();
    let _workers = spawn_workers(&dir, &db.url, 2, 20);
    drained(&db, 100, Duration::from_secs(90)).await;
    let keys: HashMap<String, String> = db
        .rows::<(Uuid, String)>("SELECT id, concurrency_key FROM job_history")
        .await
        .into_iter()
        .map(|(id, k)| (id.to_string(), k))
        .collect();
    let iv = intervals(&dir);
    assert_eq!(iv.len(), 100);
    let mut by_key: HashMap<&str, Vec<(i128, i128)>> = HashMap::new();
    for (id, s, e) in &iv {
        by_key.entry(keys[id].as_str()).or_default().push((*s, *e));
    }
    for (key, list) in &by_key {
        assert_eq!(max_overlap(list), 1, "two jobs of {key} ran at once");
    }
    let all: Vec<(i128, i128)> = iv.iter().map(|(_, s, e)| (*s, *e)).collect();
    assert!(max_overlap(&all) >= 3, "keys ran side by side");
}

#[tokio::test]
async fn killed_worker_does_not_leak_a_slot() {
    let (db, dir) = scene("2", concurrency_limit(3)).await;
    jobs("q", "timed").enqueue_n(&db.pool, 9).await;
    let victim = spawn_worker(&dir, &db.url, 50);
    eventually(Duration::from_secs(20), "three running", || async {
        (db.running_jobs().await == 3).then_some(())
    })
    .await;
    drop(victim); // SIGKILL
    let _survivor = spawn_worker(&dir, &db.url, 50);
    eventually(
        Duration::from_secs(30),
        "the survivor runs three at once",
        || async {
            (db.count(
                "due_work d JOIN workers w ON w.id = d.lease_owner WHERE d.state = 'running'",
            )
            .await
                == 3)
                .then_some(())
        },
    )
    .await;
    drained(&db, 9, Duration::from_secs(60)).await;
}

#[tokio::test]
async fn lowering_the_limit_at_run_time_takes_effect_without_overrun() {
    let (db, dir) = scene("0.3", concurrency_limit(10)).await;
    jobs("q", "timed").enqueue_n(&db.pool, 80).await;
    let _workers = spawn_workers(&dir, &db.url, 2, 50);
    eventually(Duration::from_secs(20), "work under way", || async {
        (db.ended_jobs().await >= 10).then_some(())
    })
    .await;
    set_queue(&db, concurrency_limit(2)).await;
    let changed_at: i128 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    drained(&db, 80, Duration::from_secs(120)).await;
    // Jobs started before the change may still be running for up to 0.3 s.
    let settle = changed_at + 400_000_000;
    let after: Vec<(i128, i128)> = intervals(&dir)
        .into_iter()
        .filter(|(_, _, e)| *e > settle)
        .map(|(_, s, e)| (s.max(settle), e))
        .collect();
    assert!(!after.is_empty());
    let max = max_overlap(&after);
    assert!(
        max <= 2,
        "{max} ran at once after the limit was lowered to 2"
    );
}
