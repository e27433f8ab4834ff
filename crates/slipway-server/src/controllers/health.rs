use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::app::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

/// Prometheus text format. Like `/healthz` it needs no token, so a scraper needs no secret;
/// it carries app names and counts, nothing more.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
