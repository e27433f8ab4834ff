//! Promoting a staging app from its overview page.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use slipway_types::pipeline::PromoteRequest;

use super::apps::overview_page;
use super::{PageResult, Session, inline};
use crate::app::AppState;
use crate::controllers;
use crate::extract::ApiJson;

/// Promotes through the API's own code, to every production app of the pipeline, and shows
/// the overview with the releases it cut or why it refused.
pub async fn promote(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> PageResult {
    let outcome = controllers::pipelines::promote(
        State(state.clone()),
        session.caller.clone(),
        Path(name.clone()),
        ApiJson(PromoteRequest::default()),
    )
    .await;
    match outcome {
        Ok(Json(result)) => {
            let cut: Vec<String> = result
                .promoted
                .iter()
                .map(|p| format!("{} runs {}", p.app, p.version))
                .collect();
            let notice = format!(
                "Promoted {} {}: {}",
                result.from,
                result.version,
                cut.join(", ")
            );
            overview_page(&state, &session, &name, StatusCode::OK, Some(notice), None).await
        }
        Err(error) => {
            let (status, message) = inline(error);
            overview_page(&state, &session, &name, status, None, Some(message)).await
        }
    }
}
