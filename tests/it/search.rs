//! The scan budget of searches in `/v1/jobs` and the jobs page: a rare search answers
//! with a partial page and a "searched up to" cursor instead of walking every job.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::api::{App, TOKEN};
use crate::common::jobs::jobs;
use crate::ui::{app_settings, login};

/// Jobs a search page examines per side in these tests.
const BUDGET: i64 = 100;

async fn app() -> App {
    let mut s = app_settings();
    s.search_scan_budget = BUDGET;
    App::with(s).await
}

/// `count` finished jobs of queue `s` in job_history, newer than any before: payload
/// {"n": first..}, metadata team blue, no error.
async fn history(app: &App, first: i64, count: i64) {
    sqlx::query(
        "INSERT INTO job_history (id, queue, kind, payload, priority, state, attempt, max_attempts,
                                  metadata, run_at, created_at, attempted_at, finished_at)
         SELECT ordinaut_uuid_v7(), 's', 'k', jsonb_build_object('n', g), 0, 'completed', 1, 1,
                '{\"team\": \"blue\"}', now(), now(), now(), now()
         FROM generate_series($1, $1 + $2 - 1) AS g ORDER BY g",
    )
    .bind(first)
    .bind(count)
    .execute(&app.db.pool)
    .await
    .expect("history");
}

/// Follows `path`'s pages to the end: the ids of every page, and each page's body.
async fn every_page(app: &App, path: &str) -> (Vec<String>, Vec<Value>) {
    let mut ids = Vec::new();
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..50 {
        let url = match &cursor {
            Some(c) => format!("{path}&cursor={c}"),
            None => path.to_owned(),
        };
        let r = app.get(&url).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        for j in r.body["jobs"].as_array().expect("jobs") {
            ids.push(j["id"].as_str().expect("id").to_owned());
        }
        cursor = r.body["next_cursor"].as_str().map(str::to_owned);
        pages.push(r.body);
        if cursor.is_none() {
            return (ids, pages);
        }
    }
    panic!("{path}: more than 50 pages");
}

#[tokio::test]
async fn a_search_matching_nothing_recent_answers_partial_pages_until_it_reaches_the_match() {
    let app = app().await;
    // The only match is the oldest job: a failed one, in history.
    sqlx::query(
        "INSERT INTO job_history (id, queue, kind, payload, priority, state, attempt, max_attempts,
                                  metadata, last_error, run_at, created_at, attempted_at, finished_at)
         VALUES (ordinaut_uuid_v7(), 's', 'k', '{}', 0, 'failed', 1, 1, '{\"team\": \"red\"}',
                 'connection Refused by host-7', now(), now(), now(), now())",
    )
    .execute(&app.db.pool)
    .await
    .expect("the match");
    history(&app, 0, 250).await;
    jobs("s", "k")
        .enqueue_payloads(&app.db.pool, (0..350).map(|n| json!({ "n": n })))
        .await;
    for search in ["metadata=%24.team%20%3D%3D%20%22red%22", "text=refused"] {
        let path = format!("/v1/jobs?queue=s&{search}");
        let (ids, pages) = every_page(&app, &path).await;
        // 350 live jobs and 251 finished, 100 a page per side: partial pages until the
        // search reaches the oldest job.
        assert!(pages.len() >= 4, "{search}: {pages:?}");
        let first = &pages[0];
        assert_eq!(first["jobs"], json!([]), "{search}");
        assert!(first["searched_to"].is_string(), "{first}");
        assert_eq!(first["searched_to"], first["next_cursor"]);
        let (last, partial) = pages.split_last().expect("pages");
        for p in partial {
            assert!(p["searched_to"].is_string(), "{search}: {p}");
        }
        assert_eq!(last["searched_to"], Value::Null);
        assert_eq!(ids.len(), 1, "{search}: {ids:?}");
        assert_eq!(last["jobs"][0]["state"], "failed");
    }
    // The jobs page says so and links to the rest.
    let s = login(&app, TOKEN).await;
    let page = s.get(&app, "/ui/jobs?queue=s&text=refused").await;
    assert!(page.text.contains("id=\"searched-to\""), "{}", page.text);
    assert!(page.text.contains("id=\"search-further\""), "{}", page.text);
    assert!(!page.text.contains("id=\"no-jobs\""));
}

#[tokio::test]
async fn partial_pages_together_list_every_match_once_newest_first() {
    let app = app().await;
    history(&app, 0, 300).await;
    jobs("s", "k")
        .enqueue_payloads(&app.db.pool, (1000..1400).map(|n| json!({ "n": n })))
        .await;
    // One job in 30 matches: a page of 50 needs more than a budget of 100 rows.
    let path = "/v1/jobs?queue=s&payload=%24.n%20%25%2030%20%3D%3D%200&limit=50";
    let (ids, pages) = every_page(&app, path).await;
    assert!(
        pages
            .iter()
            .filter(|p| p["searched_to"].is_string())
            .count()
            >= 5,
        "{pages:?}"
    );
    let expected: Vec<String> = sqlx::query_scalar(
        "SELECT id::text FROM (SELECT id, payload FROM due_work UNION ALL
                               SELECT id, payload FROM job_history) AS j
         WHERE (payload->>'n')::int % 30 = 0 ORDER BY id DESC",
    )
    .fetch_all(&app.db.pool)
    .await
    .expect("expected");
    assert_eq!(expected.len(), 13 + 10);
    assert_eq!(ids, expected);
    // A search that finds a page within its budget is a plain full page.
    let r = app
        .get("/v1/jobs?queue=s&payload=%24.n%20%3E%3D%200&limit=10")
        .await;
    assert_eq!(r.body["jobs"].as_array().map(Vec::len), Some(10));
    assert_eq!(r.body["searched_to"], Value::Null);
    assert!(r.body["next_cursor"].is_string());
}
