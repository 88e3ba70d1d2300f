//! The HTTP API against a real database: through `router().oneshot()` for most tests,
//! over a bound socket for events, the pull worker and graceful shutdown.

mod auth_and_health;
mod bad_requests;
mod events;
mod jobs;
mod openapi;
mod pull;
mod pull_claim;
mod queues_workers;
mod schedules;
mod workflows;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use ordinaut::api::{self, ApiSettings, AppState};
use ordinaut::config::Config;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::common::TestDb;

/// The token tests authenticate with.
pub const TOKEN: &str = "test-token-0123456789";

/// A test application: a fresh database and a router on it.
pub struct App {
    pub db: TestDb,
    pub state: AppState,
    pub router: Router,
    listener: Option<JoinHandle<()>>,
}

/// Settings used by tests unless a test changes them.
pub fn settings() -> ApiSettings {
    let mut s = ApiSettings::from_config(&Config::default());
    s.tokens = vec![TOKEN.to_owned()];
    s.max_batch = 10;
    s.max_body_bytes = 64 * 1024;
    s.max_payload_bytes = 16 * 1024;
    s.poll_interval = std::time::Duration::from_millis(100);
    s.backoff = ordinaut::model::Backoff {
        base: std::time::Duration::from_millis(50),
        max: std::time::Duration::from_millis(100),
    };
    s
}

/// A response, decoded.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// The `id` of what the request created.
    pub fn id(&self) -> String {
        let id = self.body["id"].as_str();
        id.unwrap_or_else(|| panic!("an id in {}", self.text))
            .to_owned()
    }

    /// Asserts the request was answered `status` with `mentions` in the text.
    pub fn refused(&self, status: StatusCode, mentions: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert!(self.text.contains(mentions), "{}", self.text);
    }
}

impl App {
    pub async fn new() -> App {
        App::with(settings()).await
    }

    pub async fn with(settings: ApiSettings) -> App {
        let db = TestDb::new().await;
        let state = AppState::new(db.pool.clone(), settings);
        let router = api::router(state.clone());
        App {
            db,
            state,
            router,
            listener: None,
        }
    }

    /// Starts the LISTEN task (needed by `?wait=` and events), and waits until it is
    /// connected, so no event of the test is missed.
    pub async fn with_listener(mut self) -> App {
        let mut probe = self.state_subscribe_probe().await;
        self.listener = Some(tokio::spawn(self.state.clone().run_event_listener()));
        // The listener announces each (re)connection with a resync message.
        tokio::time::timeout(std::time::Duration::from_secs(10), probe.recv())
            .await
            .expect("event listener connects")
            .expect("event channel open");
        self
    }

    async fn state_subscribe_probe(
        &self,
    ) -> tokio::sync::broadcast::Receiver<ordinaut::db::events::Received> {
        self.state.subscribe().await
    }

    /// Sends a request with the test token.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.send(request(method, path, body)).await
    }

    /// Sends `GET path` with the test token from another task (a long poll); its
    /// answer.
    pub fn get_in_background(&self, path: &str) -> JoinHandle<Reply> {
        let req = request(Method::GET, path, None);
        tokio::spawn(send_to(self.router.clone(), req))
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// `POST path` with no body: an action on a job, workflow, queue or schedule.
    pub async fn act(&self, path: &str) -> Reply {
        self.call(Method::POST, path, None).await
    }

    /// `POST /v1/jobs`.
    pub async fn enqueue(&self, job: Value) -> Reply {
        self.post("/v1/jobs", job).await
    }

    /// `POST /v1/jobs/batch`.
    pub async fn enqueue_batch(&self, body: Value) -> Reply {
        self.post("/v1/jobs/batch", body).await
    }

    /// `POST /v1/workflows`.
    pub async fn submit_workflow(&self, workflow: Value) -> Reply {
        self.post("/v1/workflows", workflow).await
    }

    /// `POST /v1/schedules`.
    pub async fn create_schedule(&self, schedule: Value) -> Reply {
        self.post("/v1/schedules", schedule).await
    }

    /// `POST /v1/pull/claim`.
    pub async fn claim(&self, body: Value) -> Reply {
        self.post("/v1/pull/claim", body).await
    }

    /// `POST /v1/pull/jobs/{id}/{outcome}`: a pull worker reports how an attempt ended
    /// (`complete`, `fail`, …).
    pub async fn report(&self, id: impl std::fmt::Display, outcome: &str, body: Value) -> Reply {
        self.post(&format!("/v1/pull/jobs/{id}/{outcome}"), body)
            .await
    }

    /// Sends any request.
    pub async fn send(&self, req: Request<Body>) -> Reply {
        send_to(self.router.clone(), req).await
    }

    /// Row counts of the tables a request could change.
    pub async fn counts(&self) -> [i64; 5] {
        [
            self.db.live_jobs().await,
            self.db.ended_jobs().await,
            self.db.count("job_attempts").await,
            self.db.count("queues").await,
            self.db.workers().await,
        ]
    }
}

/// A request with the test token, and `body` as JSON.
fn request(method: Method, path: &str, body: Option<Value>) -> Request<Body> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {TOKEN}"));
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    req.body(body).expect("request builds")
}

/// Sends `req` through `router`; the answer, decoded.
async fn send_to(router: Router, req: Request<Body>) -> Reply {
    let response = router.oneshot(req).await.expect("router answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body reads")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.state.stopping().cancel();
        if let Some(l) = self.listener.take() {
            l.abort();
        }
    }
}

/// A server on a real socket.
pub struct Server {
    pub app: App,
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(settings()).await
    }

    pub async fn start_with(settings: ApiSettings) -> Server {
        let app = App::with(settings).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let mut probe = app.state.subscribe().await;
        let task = tokio::spawn(api::serve(listener, app.state.clone(), shutdown.clone()));
        tokio::time::timeout(std::time::Duration::from_secs(10), probe.recv())
            .await
            .expect("event listener connects")
            .expect("event channel open");
        Server {
            app,
            addr,
            shutdown,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "authorization",
            format!("Bearer {TOKEN}").parse().expect("header value"),
        );
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .expect("client")
    }

    /// Sends `POST /v1/pull/claim` with `body` from another task; its answer.
    pub fn claim_in_background(&self, body: Value) -> JoinHandle<Value> {
        let (client, url) = (self.client(), self.url("/v1/pull/claim"));
        tokio::spawn(async move { post_json(&client, url, body).await })
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(10), self.task)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("server ran");
    }
}

/// `POST url` with a JSON body over a socket; the answer's JSON.
pub async fn post_json(client: &reqwest::Client, url: String, body: Value) -> Value {
    let r = client
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("POST answers");
    r.json().await.expect("a JSON answer")
}
