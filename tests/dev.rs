//! `ordinaut dev`, the README's first command, as a new user runs it: no DATABASE_URL,
//! a fresh directory, a curl-style enqueue, Ctrl-C, and a second start on the same data.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{binary, eventually};
use serde_json::{Value, json};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_dev(dir: &Path, log: &str) -> Proc {
    let file = std::fs::File::create(dir.join(log)).unwrap();
    Proc(
        Command::new(binary())
            .arg("dev")
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("API_PORT", "0")
            .env("API_HOST", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap(),
    )
}

async fn api_port(dir: &Path, log: &str) -> u16 {
    eventually(
        Duration::from_secs(90),
        "dev to print its API address",
        || async {
            let text = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
            let at = text.find("API on http://127.0.0.1:")? + "API on http://127.0.0.1:".len();
            text[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        },
    )
    .await
}

#[tokio::test]
async fn dev_starts_everything_on_its_own_postgres_and_keeps_data_across_restarts() {
    let dir = common::cluster_dir(&format!("dev-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let dev = start_dev(&dir, "first.log");
    let port = api_port(&dir, "first.log").await;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let created: Value = client
        .post(format!("{base}/v1/jobs"))
        .json(&json!({"queue": "default", "kind": "echo", "payload": {"hello": "world"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let done: Value = client
        .get(format!("{base}/v1/jobs/{id}?wait=20s"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["state"], "completed", "{done}");
    let attempts: Value = client
        .get(format!("{base}/v1/jobs/{id}/attempts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        attempts.to_string().contains(r#"{\"hello\":\"world\"}"#),
        "the example echo kind printed the payload: {attempts}"
    );
    // One process, one /metrics: the worker's counters show on the API's endpoint.
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains(
            r#"ordinaut_jobs_finished_total{queue="default",kind="echo",outcome="completed"} 1"#,
        ) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        metrics.contains(
            r#"ordinaut_jobs_finished_total{queue="default",kind="echo",outcome="completed"} 1"#
        ) && metrics.contains("ordinaut_worker_slots_total"),
        "{metrics}"
    );

    // The dashboard it announced answers (open: no token is configured).
    let log = std::fs::read_to_string(dir.join("first.log")).unwrap_or_default();
    assert!(
        log.contains(&format!("dashboard on http://127.0.0.1:{port}/ui")),
        "{log}"
    );
    let ui = client.get(format!("{base}/ui")).send().await.unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("workers alive"));

    // Ctrl-C: everything stops, Postgres included.
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(dev.0.id() as i32, libc::SIGINT);
    }
    let mut dev = dev;
    let status = tokio::task::spawn_blocking(move || {
        let s = dev.0.wait();
        (s, dev)
    })
    .await
    .unwrap();
    assert!(status.0.unwrap().success());
    assert!(
        !dir.join(".ordinaut/pg/data/postmaster.pid").exists(),
        "postgres stopped"
    );

    // A second start reuses the data.
    let _again = start_dev(&dir, "second.log");
    let port = api_port(&dir, "second.log").await;
    let job: Value = client
        .get(format!("http://127.0.0.1:{port}/v1/jobs/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["state"], "completed");
    drop(_again);
    // SIGKILLed above: stop its Postgres by hand before removing the directory.
    if let Ok(pg) =
        ordinaut::pg_local::LocalPg::start(&dir.join(".ordinaut/pg"), &Default::default())
    {
        let _ = pg.stop();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
