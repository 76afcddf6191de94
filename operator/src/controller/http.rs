//! The operator's own HTTP endpoint: `/metrics`, `/healthz` (the process runs), `/readyz` (every
//! watch has listed and the first configuration is published).

use std::future::Future;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::watch;

use crate::metrics::Metrics;

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    ready: watch::Receiver<bool>,
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    ready: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(s): State<AppState>| async move { s.metrics.render() }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(s): State<AppState>| async move {
                if *s.ready.borrow() {
                    (StatusCode::OK, "ready\n")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not ready: waiting for the initial sync\n",
                    )
                }
            }),
        )
        .with_state(AppState { metrics, ready });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
