//! A client for a running `ordinaut` process's HTTP API: typed JSON reads, no auth.

use std::time::Duration;

use serde_json::Value;

use super::eventually;

/// A local port nothing listens on: bound and released at once.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The API of a process listening on `base` (`http://host:port`).
pub struct Http {
    pub client: reqwest::Client,
    pub base: String,
}

impl Http {
    /// The API on 127.0.0.1:`port`.
    pub fn local(port: u16) -> Http {
        Http {
            client: reqwest::Client::new(),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits up to `limit` for `GET /health` to answer 2xx.
    pub async fn wait_healthy(&self, limit: Duration) {
        eventually(limit, "the api to answer", || async {
            let r = self.client.get(format!("{}/health", self.base)).send();
            r.await.ok()?.status().is_success().then_some(())
        })
        .await;
    }

    /// `GET path`, the answer.
    async fn get(&self, path: &str) -> reqwest::Response {
        let r = self.client.get(format!("{}{path}", self.base)).send();
        r.await.expect("GET answers")
    }

    /// `GET path`, its body as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).await.json().await.expect("JSON body")
    }

    /// `GET path`, its body as text.
    pub async fn get_text(&self, path: &str) -> String {
        self.get(path).await.text().await.expect("text body")
    }

    /// `POST path` with a JSON body, the answer's body as JSON.
    pub async fn post_json(&self, path: &str, body: &Value) -> Value {
        let r = self.client.post(format!("{}{path}", self.base)).json(body);
        let r = r.send().await.expect("POST answers");
        r.json().await.expect("JSON body")
    }

    /// Enqueues `job`, waits (up to 20 s, server side) for it to finish and returns its
    /// id and the job as then shown.
    pub async fn enqueue_and_wait(&self, job: &Value) -> (String, Value) {
        let created = self.post_json("/v1/jobs", job).await;
        let id = created["id"].as_str().expect("an id").to_owned();
        let done = self.get_json(&format!("/v1/jobs/{id}?wait=20s")).await;
        (id, done)
    }
}
