//! The endpoint a worker exposes with `--metrics-addr`: `/metrics` (this process's
//! recorder), `/health` and `/ready` (ready while the worker can claim).

/// Serves `/metrics` (this process's recorder), `/health` and `/ready` on `listener` until
/// `shutdown`: the endpoint a worker exposes with `--metrics-addr`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    use axum::routing::get;
    let handle = crate::metrics::install();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        handle.render(),
                    )
                }
            }),
        )
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        // Ready while the worker holds its lock on a writable primary (claiming).
        .route(
            "/ready",
            get(|| async {
                if super::is_ready() {
                    (axum::http::StatusCode::OK, axum::Json(serde_json::json!({"status": "ready"})))
                } else {
                    (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(serde_json::json!({"error": {"code": "unavailable",
                            "message": "worker has no confirmed lock on a primary; not claiming"}})),
                    )
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
