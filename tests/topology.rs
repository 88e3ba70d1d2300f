//! The production topology without Docker: one api, two schedulers and four workers as
//! separate processes on one database, with a worker and a scheduler killed and
//! restarted along the way.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::procs::{self, Proc};
use common::{TestDb, eventually};
use serde_json::{Value, json};
use uuid::Uuid;

const TOKEN: &str = "topology-token";

fn spawn(dir: &Path, db: &TestDb, args: &[&str], port: u16) -> Proc {
    procs::ordinaut(dir, args)
        .env("DATABASE_URL", &db.url)
        .env("API_HOST", "127.0.0.1")
        .env("API_PORT", port.to_string())
        .env("API_TOKENS", TOKEN)
        .env("WORKER_QUEUES", "work")
        .env("WORKER_CONCURRENCY", "8")
        .env("WORKER_POLL_INTERVAL", "0.2")
        .env("LOG_LEVEL", "info")
        .start()
}

#[tokio::test]
async fn api_two_schedulers_and_four_workers_run_everything_exactly_once() {
    let db = TestDb::new().await;
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("topology-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ordinaut.toml"), "[kinds.nap]\ntype = \"noop\"\n").unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _api = spawn(&dir, &db, &["api"], port);
    let mut schedulers: Vec<Proc> = (0..2)
        .map(|_| spawn(&dir, &db, &["scheduler"], port))
        .collect();
    let mut workers: Vec<Proc> = (0..4)
        .map(|_| spawn(&dir, &db, &["worker"], port))
        .collect();
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    eventually(Duration::from_secs(30), "the api to be ready", || {
        let client = client.clone();
        let u = url("/ready");
        async move {
            client
                .get(u)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        }
    })
    .await;

    let schedule = client
        .post(url("/v1/schedules"))
        .bearer_auth(TOKEN)
        .json(
            &json!({"name": "every-second", "cron": "* * * * * *", "queue": "work", "kind": "nap"}),
        )
        .send()
        .await
        .unwrap();
    assert!(
        schedule.status().is_success(),
        "{}",
        schedule.text().await.unwrap_or_default()
    );
    let mut ids = Vec::new();
    for _ in 0..3 {
        let jobs: Vec<Value> = (0..200)
            .map(|i| json!({"queue": "work", "kind": "nap", "payload": {"i": i, "sleep_ms": 30}}))
            .collect();
        let reply = client
            .post(url("/v1/jobs/batch"))
            .bearer_auth(TOKEN)
            .json(&json!({"jobs": jobs}))
            .send()
            .await
            .unwrap();
        assert!(reply.status().is_success());
        let body: Value = reply.json().await.unwrap();
        ids.extend(
            body["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_owned()),
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        // Chaos along the way: a worker is killed and replaced, a scheduler restarted.
        workers[0].signal(libc::SIGKILL);
        workers[0] = spawn(&dir, &db, &["worker"], port);
        schedulers[0].signal(libc::SIGTERM);
        schedulers[0] = spawn(&dir, &db, &["scheduler"], port);
    }
    assert_eq!(ids.len(), 600);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let pause = client
        .post(url("/v1/schedules/every-second/pause"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(pause.status().is_success());
    eventually(Duration::from_secs(60), "every job finished", || async {
        (db.live_jobs().await == 0).then_some(())
    })
    .await;

    db.assert_rows(
        "job_history WHERE schedule_id IS NULL AND state = 'completed'",
        600,
    )
    .await;
    assert_eq!(
        db.ended_jobs().await,
        db.scalar_i64("SELECT count(DISTINCT id) FROM job_history")
            .await,
        "no job finished twice"
    );
    let fired = db
        .count("job_history WHERE schedule_id IS NOT NULL AND state = 'completed'")
        .await;
    assert!(fired >= 4, "scheduled jobs ran ({fired})");
    assert_eq!(
        db.scalar_i64(
            "SELECT count(DISTINCT scheduled_for) FROM job_history WHERE schedule_id IS NOT NULL"
        )
        .await,
        fired,
        "one job per fire time"
    );
    let reply = client
        .get(url(&format!("/v1/jobs/{}", ids[0])))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let job: Value = reply.json().await.unwrap();
    assert_eq!(job["state"], "completed");
}
