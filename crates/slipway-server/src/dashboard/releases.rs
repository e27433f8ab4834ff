//! Releases, and a rollback to one of them.

use askama::Template;
use axum::Form;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use slipway_types::api::{ReleaseInfo, ReleaseStatus, RollbackRequest};

use super::{AppNav, Layout, PageResult, Session, inline, machine_time, render, when};
use crate::app::AppState;
use crate::controllers;
use crate::extract::ApiJson;

/// A release as the page shows it.
pub struct ReleaseRow {
    pub version: String,
    pub status: String,
    /// The status as a CSS class word.
    pub status_class: &'static str,
    pub reason: Option<String>,
    pub description: String,
    pub by: String,
    pub at: String,
    pub at_machine: String,
    pub current: bool,
    /// Offered only where the API would accept it: a release that went live, not the one
    /// running.
    pub can_roll_back: bool,
}

impl From<ReleaseInfo> for ReleaseRow {
    fn from(release: ReleaseInfo) -> Self {
        let went_live = matches!(
            release.status,
            ReleaseStatus::Succeeded | ReleaseStatus::RolledBack
        );
        Self {
            status: release.status.to_string(),
            status_class: release.status.as_str(),
            reason: release.status_reason,
            description: release.description,
            by: release.created_by,
            at: when(release.created_at),
            at_machine: machine_time(release.created_at),
            can_roll_back: went_live && !release.current,
            current: release.current,
            version: release.version,
        }
    }
}

#[derive(Template)]
#[template(path = "releases.html")]
struct ReleasesPage {
    layout: Layout,
    nav: AppNav,
    notice: Option<String>,
    error: Option<String>,
    releases: Vec<ReleaseRow>,
}

async fn page(
    state: &AppState,
    session: &Session,
    name: &str,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> PageResult {
    let Json(releases) = controllers::releases::list(
        State(state.clone()),
        session.caller.clone(),
        Path(name.to_owned()),
    )
    .await?;
    let page = ReleasesPage {
        layout: session.layout(format!("{name} releases")),
        nav: AppNav::new(name, "/releases"),
        notice,
        error,
        releases: releases.into_iter().map(ReleaseRow::from).collect(),
    };
    Ok(render(status, &page))
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> PageResult {
    page(&state, &session, &name, StatusCode::OK, None, None).await
}

#[derive(Deserialize)]
pub struct RollbackForm {
    #[serde(default)]
    version: String,
}

/// Rolls back through the API's own code and shows the release it cut.
pub async fn rollback(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    Form(form): Form<RollbackForm>,
) -> PageResult {
    let request = RollbackRequest {
        version: Some(form.version.clone()).filter(|v| !v.is_empty()),
    };
    let outcome = controllers::releases::rollback(
        State(state.clone()),
        session.caller.clone(),
        Path(name.clone()),
        ApiJson(request),
    )
    .await;
    match outcome {
        Ok(Json(release)) => {
            let notice = format!(
                "Rolled back to {}: release {} is live",
                form.version, release.version
            );
            page(&state, &session, &name, StatusCode::OK, Some(notice), None).await
        }
        Err(error) => {
            let (status, message) = inline(error);
            page(&state, &session, &name, status, None, Some(message)).await
        }
    }
}
