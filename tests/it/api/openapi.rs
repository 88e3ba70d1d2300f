//! The OpenAPI document against the real router: every documented operation is served,
//! and every served operation on a documented path is documented.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;

use super::{App, TOKEN};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn concrete(path: &str) -> String {
    path.replace("{id}", &uuid::Uuid::now_v7().to_string())
        .replace("{name}", "q")
}

#[tokio::test]
async fn openapi_document_matches_the_router() {
    let app = App::new().await;
    let doc = app.get("/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");
    for expected in [
        "/v1/jobs",
        "/v1/jobs/batch",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/cancel",
        "/v1/jobs/{id}/retry",
        "/v1/jobs/{id}/attempts",
        "/v1/queues",
        "/v1/queues/{name}",
        "/v1/queues/{name}/pause",
        "/v1/queues/{name}/resume",
        "/v1/workers",
        "/v1/pull/claim",
        "/v1/pull/heartbeat",
        "/v1/pull/jobs/{id}/complete",
        "/v1/pull/jobs/{id}/fail",
        "/v1/events",
        "/v1/workflows",
        "/v1/workflows/{id}",
        "/v1/workflows/{id}/cancel",
        "/v1/workflows/{id}/retry",
        "/v1/workflows/{id}/jobs",
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    // A workflow step waiting for its dependencies is a job state like the others.
    assert_eq!(
        doc["components"]["schemas"]["StateName"]["enum"],
        serde_json::json!(
            "waiting scheduled available running completed failed cancelled"
                .split(' ')
                .collect::<Vec<_>>()
        ),
        "{}",
        doc["components"]["schemas"]["StateName"]
    );
    let detail = doc["components"]["schemas"]["JobDetail"].to_string();
    assert!(detail.contains("\"workflow_step\""), "{detail}");
    assert!(doc["components"]["schemas"]["StepOfJob"].is_object());
    let mut problems = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            let documented = item.get(method).is_some();
            // The events stream never ends; it is probed by its own tests.
            if path == "/v1/events" && method == "get" {
                continue;
            }
            let req = Request::builder()
                .method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap())
                .uri(concrete(path))
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let r = app.send(req).await;
            let unrouted = matches!(r.body["error"]["code"].as_str(), Some("method_not_allowed"))
                || (r.status == StatusCode::NOT_FOUND && r.text.contains("no such route"));
            if documented && unrouted {
                problems.push(format!("{method} {path} is documented but not served"));
            }
            if !documented && !unrouted {
                problems.push(format!(
                    "{method} {path} is served but not documented ({})",
                    r.status
                ));
            }
        }
        for (method, op) in item.as_object().unwrap() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            check_operation(path, method, op, &mut problems);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every operation documents its errors in our shape, and path parameters.
fn check_operation(path: &str, method: &str, op: &Value, problems: &mut Vec<String>) {
    let responses = op["responses"].as_object().expect("responses");
    for (status, response) in responses {
        if status.starts_with('4') || status.starts_with('5') {
            let schema = &response["content"]["application/json"]["schema"]["$ref"];
            if schema != "#/components/schemas/ErrorBody" {
                problems.push(format!("{method} {path} {status} does not use ErrorBody"));
            }
        }
    }
    if path.starts_with("/v1") && !responses.contains_key("401") {
        problems.push(format!("{method} {path} does not document 401"));
    }
    for name in ["id", "name"] {
        if path.contains(&format!("{{{name}}}")) {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            if !params
                .iter()
                .any(|p| p["name"] == name && p["in"] == "path")
            {
                problems.push(format!(
                    "{method} {path} does not document path parameter {name}"
                ));
            }
        }
    }
}
