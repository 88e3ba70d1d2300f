//! A worker process's own Prometheus endpoint (`--metrics-addr`): what it counts after
//! real jobs, and how a bad address is refused.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ordinaut::db::due_work::{self, NewJob};
use serde_json::json;

use crate::common::http::free_port;
use crate::common::{TestDb, binary, eventually};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of the one sample of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let (series, _) = l.rsplit_once(' ').unwrap_or((l, ""));
            let series_name = series.split('{').next().unwrap_or("");
            series_name == name && labels.iter().all(|want| series.contains(want))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .reduce(|a, b| a + b)
}

#[tokio::test]
async fn a_worker_exports_job_outcomes_durations_waits_and_slots() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("metrics-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ordinaut.toml"), "[kinds.nap]\ntype = \"noop\"\n").unwrap();
    let port = free_port();
    let _worker = Proc(
        Command::new(binary())
            .args(["worker", "--queues", "m", "--concurrency", "7"])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .current_dir(&dir)
            .env("DATABASE_URL", &db.url)
            .env("WORKER_POLL_INTERVAL", "0.2")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually(
        Duration::from_secs(20),
        "worker /health answers",
        || async {
            let r = http.get(format!("{base}/health")).send().await.ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;

    let mut jobs: Vec<NewJob> = (0..20)
        .map(|_| NewJob::new("m", "nap", json!({})))
        .collect();
    for _ in 0..5 {
        let mut ghost = NewJob::new("m", "ghost", json!({}));
        ghost.max_attempts = Some(1);
        jobs.push(ghost);
    }
    due_work::enqueue_many(&db.pool, &jobs, 3).await.unwrap();

    let text = eventually(
        Duration::from_secs(20),
        "all 25 outcomes counted",
        || async {
            let text = http
                .get(format!("{base}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let done = sample(&text, "ordinaut_jobs_finished_total", &["queue=\"m\""])?;
            (done == 25.0).then_some(text)
        },
    )
    .await;

    let completed = ["queue=\"m\"", "kind=\"nap\"", "outcome=\"completed\""];
    // `ghost` is declared nowhere: counted under `other`, so callers' kind names cannot
    // grow the series without bound.
    assert!(!text.contains("ghost"), "{text}");
    let failed = ["queue=\"m\"", "kind=\"other\"", "outcome=\"failed\""];
    assert_eq!(
        sample(&text, "ordinaut_jobs_finished_total", &completed),
        Some(20.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "ordinaut_jobs_finished_total", &failed),
        Some(5.0)
    );
    assert_eq!(
        sample(&text, "ordinaut_job_duration_seconds_count", &completed),
        Some(20.0)
    );
    assert_eq!(
        sample(
            &text,
            "ordinaut_jobs_claimed_total",
            &["queue=\"m\"", "claimer=\"worker\""]
        ),
        Some(25.0)
    );
    assert_eq!(
        sample(
            &text,
            "ordinaut_job_queue_wait_seconds_count",
            &["queue=\"m\""]
        ),
        Some(25.0)
    );
    let batches = sample(
        &text,
        "ordinaut_claim_batch_size_count",
        &["claimer=\"worker\""],
    )
    .unwrap();
    let claimed = sample(
        &text,
        "ordinaut_claim_batch_size_sum",
        &["claimer=\"worker\""],
    )
    .unwrap();
    assert!(batches >= 1.0 && claimed == 25.0, "{batches} {claimed}");
    assert_eq!(sample(&text, "ordinaut_worker_slots_total", &[]), Some(7.0));
    assert_eq!(sample(&text, "ordinaut_worker_slots_busy", &[]), Some(0.0));
    assert_eq!(
        sample(&text, "ordinaut_worker_prefetched_jobs", &[]),
        Some(0.0)
    );
}

#[tokio::test]
async fn a_bad_or_taken_metrics_address_stops_the_worker_with_one_line() {
    let db = TestDb::new().await;
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(binary());
        cmd.args(args)
            .current_dir(std::env::temp_dir())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", &db.url);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let bad = run(&["worker"], &[("WORKER_METRICS_ADDR", "localhost")]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("WORKER_METRICS_ADDR") && err.contains("localhost"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let busy = run(&["worker", "--metrics-addr", &addr], &[]);
    assert!(!busy.status.success());
    let err = String::from_utf8_lossy(&busy.stderr);
    assert!(err.contains(&addr), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
