//! Scaling: quantity and memory per process type, applied through the API's own code and
//! answered once the processes match.

use askama::Template;
use axum::Form;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use slipway_types::api::{FormationInfo, FormationPatch, FormationUpdate, FormationView};
use slipway_types::app_json::MAX_QUANTITY;

use super::apps::ProcessRow;
use super::{AppNav, Layout, PageResult, Session, inline, render};
use crate::app::AppState;
use crate::controllers;
use crate::error::ApiError;
use crate::extract::ApiJson;

#[derive(Template)]
#[template(path = "scaling.html")]
struct ScalingPage {
    layout: Layout,
    nav: AppNav,
    notice: Option<String>,
    error: Option<String>,
    formation: Vec<FormationInfo>,
    processes: Vec<ProcessRow>,
    max: u32,
}

async fn page(
    state: &AppState,
    session: &Session,
    name: &str,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> PageResult {
    let Json(FormationView {
        formation,
        processes,
    }) = controllers::formation::show(
        State(state.clone()),
        session.caller.clone(),
        Path(name.to_owned()),
    )
    .await?;
    let page = ScalingPage {
        layout: session.layout(format!("{name} scaling")),
        nav: AppNav::new(name, "/scaling"),
        notice,
        error,
        formation,
        processes: processes.iter().map(ProcessRow::from).collect(),
        max: MAX_QUANTITY,
    };
    Ok(render(status, &page))
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> PageResult {
    page(&state, &session, &name, StatusCode::OK, None, None).await
}

#[derive(Deserialize)]
pub struct ScaleForm {
    #[serde(default)]
    process: String,
    #[serde(default)]
    quantity: String,
    #[serde(default)]
    size: String,
}

fn update_of(form: &ScaleForm) -> Result<FormationUpdate, ApiError> {
    let quantity = form.quantity.trim();
    let quantity = match quantity {
        "" => None,
        text => Some(text.parse::<u32>().map_err(|_| {
            ApiError::invalid(format!(
                "quantity `{text}` must be a whole number from 0 to {MAX_QUANTITY}"
            ))
        })?),
    };
    let size = Some(form.size.trim().to_owned()).filter(|size| !size.is_empty());
    Ok(FormationUpdate {
        process: form.process.trim().to_owned(),
        quantity,
        size,
    })
}

/// Scales through `PATCH /v1/apps/{app}/formation`'s code, which answers once the processes
/// match, and shows them.
pub async fn update(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    Form(form): Form<ScaleForm>,
) -> PageResult {
    let scaled = match update_of(&form) {
        Ok(change) => {
            controllers::formation::update(
                State(state.clone()),
                session.caller.clone(),
                Path(name.clone()),
                ApiJson(FormationPatch {
                    updates: vec![change],
                }),
            )
            .await
        }
        Err(error) => Err(error),
    };
    match scaled {
        Ok(Json(view)) => {
            let kind = form.process.trim();
            let up = view
                .processes
                .iter()
                .filter(|p| p.dyno.split('.').next() == Some(kind))
                .count();
            let entry = view.formation.iter().find(|e| e.process == kind);
            let notice = match entry {
                Some(entry) => format!(
                    "Scaled {kind} to {} × {}: {up} running",
                    entry.quantity, entry.size
                ),
                None => format!("Scaled {kind}: {up} running"),
            };
            page(&state, &session, &name, StatusCode::OK, Some(notice), None).await
        }
        Err(error) => {
            let (status, message) = inline(error);
            page(&state, &session, &name, status, None, Some(message)).await
        }
    }
}
