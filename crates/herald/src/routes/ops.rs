//! Operations: `/healthz` (the process answers), `/readyz` (the event log and the app's
//! database answer too) and `/metrics` (Prometheus).

use std::sync::Arc;

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use herald_app::App;
use herald_hub::Hub;

use crate::{error::ApiError, metrics::ServerMetrics, state::ServerState};

/// The operations routes, to merge into the server's router.
pub fn routes() -> Router<ServerState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn readyz(State(hub): State<Hub>, State(app): State<App>) -> impl IntoResponse {
    if let Err(error) = hub.check_log().await {
        return ApiError::unavailable(format!("the event log is unavailable: {error}"))
            .into_response();
    }
    if let Err(error) = app.check_db().await {
        return ApiError::unavailable(format!("the app's database is unavailable: {error}"))
            .into_response();
    }
    (StatusCode::OK, "ready").into_response()
}

/// `GET /metrics`.
async fn metrics(State(metrics): State<Arc<ServerMetrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}
