//! The apps list (with creating an app) and an app's overview.

use askama::Template;
use axum::Form;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use slipway_store::App;
use slipway_types::api::{
    AppInfo, CreateApp, FormationView, ProcessInfo, ProcessState, ReleaseStatus,
};
use slipway_types::{AppName, Stage};

use super::{
    AppNav, Layout, PageError, PageResult, Session, graphs, inline, ok, render, see_other,
};
use crate::app::AppState;
use crate::controllers;
use crate::error::ApiError;

/// One row of the apps list.
pub struct AppRow {
    pub name: String,
    pub web_url: String,
    pub release: String,
    /// `web=2 worker=1`, counting processes that are up.
    pub processes: String,
    /// running, deploying, canary, failed, crashed, idle or new.
    pub status: &'static str,
}

/// A process as a page shows it.
pub struct ProcessRow {
    pub dyno: String,
    pub release: String,
    pub state: &'static str,
    pub started: String,
    pub restarts: u32,
}

impl From<&ProcessInfo> for ProcessRow {
    fn from(process: &ProcessInfo) -> Self {
        Self {
            dyno: process.dyno.clone(),
            release: if process.canary {
                format!("{} (canary)", process.release)
            } else {
                process.release.clone()
            },
            state: match process.state {
                ProcessState::Up => "up",
                ProcessState::Crashed => "crashed",
            },
            started: process.started_at.clone().unwrap_or_default(),
            restarts: process.restarts,
        }
    }
}

/// What an app is doing, in one word: a deploy under way or just failed, a crashed process,
/// or its processes running.
async fn status(
    state: &AppState,
    app: &App,
    processes: &[ProcessInfo],
) -> Result<&'static str, ApiError> {
    let latest = state.store.releases(app.id).await?.into_iter().next();
    let deploying = state.deployer.try_lock(&app.name).is_none();
    Ok(match latest.map(|release| release.status) {
        _ if deploying => "deploying",
        _ if state.deployer.canary_release_id(&app.name).is_some() => "canary",
        Some(ReleaseStatus::Pending) => "deploying",
        Some(ReleaseStatus::Failed) => "failed",
        None => "new",
        Some(_) if processes.iter().any(|p| p.state == ProcessState::Crashed) => "crashed",
        Some(_) if processes.is_empty() => "idle",
        Some(_) => "running",
    })
}

/// `web=2 worker=1`: the processes up, by type.
fn counts(processes: &[ProcessInfo]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for process in processes.iter().filter(|p| p.state == ProcessState::Up) {
        let kind = process.dyno.split('.').next().unwrap_or_default();
        match counts.iter_mut().find(|(name, _)| *name == kind) {
            Some((_, count)) => *count += 1,
            None => counts.push((kind, 1)),
        }
    }
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(kind, count)| format!("{kind}={count}"))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn store_app(state: &AppState, name: &str) -> Result<App, ApiError> {
    let parsed: AppName = name.parse()?;
    state
        .store
        .app(&parsed)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("app `{name}` not found")))
}

async fn row(state: &AppState, info: AppInfo) -> Result<AppRow, ApiError> {
    let app = store_app(state, &info.name).await?;
    let processes = state
        .deployer
        .processes(&app)
        .await
        .map_err(ApiError::internal)?;
    Ok(AppRow {
        status: status(state, &app, &processes).await?,
        processes: counts(&processes),
        release: info.current_release.unwrap_or_else(|| "none".to_owned()),
        name: info.name,
        web_url: info.web_url,
    })
}

#[derive(Template)]
#[template(path = "apps.html")]
struct AppsPage {
    layout: Layout,
    apps: Vec<AppRow>,
    name: String,
    error: Option<String>,
}

async fn apps_page(state: &AppState, session: &Session) -> Result<AppsPage, PageError> {
    let Json(infos) = controllers::apps::list(State(state.clone()), session.caller.clone()).await?;
    let mut apps = Vec::with_capacity(infos.len());
    for info in infos {
        apps.push(row(state, info).await?);
    }
    Ok(AppsPage {
        layout: session.layout("Apps"),
        apps,
        name: String::new(),
        error: None,
    })
}

pub async fn list(State(state): State<AppState>, session: Session) -> PageResult {
    ok(&apps_page(&state, &session).await?)
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
}

/// Creates the app through the API's own code, then shows it.
pub async fn create(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<CreateForm>,
) -> PageResult {
    let name = form.name.trim().to_owned();
    let created = controllers::apps::create(
        State(state.clone()),
        session.caller.clone(),
        crate::extract::ApiJson(CreateApp { name: name.clone() }),
    )
    .await;
    match created {
        Ok((_, Json(info))) => Ok(see_other(&format!("/apps/{}", info.name))),
        Err(error) => {
            let (status, message) = inline(error);
            let mut page = apps_page(&state, &session).await?;
            page.name = name;
            page.error = Some(message);
            Ok(render(status, &page))
        }
    }
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    nav: AppNav,
    notice: Option<String>,
    error: Option<String>,
    info: AppInfo,
    domains: Vec<String>,
    current: String,
    last_deploy: String,
    status: &'static str,
    processes: Vec<ProcessRow>,
    /// The app's pipeline and stage, if it is in one.
    pipeline: Option<(String, Stage)>,
    alerts: Vec<AlertRow>,
    /// Inline SVG charts of the last hour.
    graphs: Vec<String>,
}

/// A firing alert as the overview lists it.
pub struct AlertRow {
    pub rule: String,
    pub since: String,
    pub message: String,
}

async fn alert_rows(state: &AppState, app: &App) -> Result<Vec<AlertRow>, ApiError> {
    let firing = state.store.firing_alerts(app.id).await?;
    Ok(firing
        .into_iter()
        .map(|alert| AlertRow {
            rule: alert.rule.to_string(),
            since: alert
                .since
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            message: alert.message,
        })
        .collect())
}

pub async fn overview(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> PageResult {
    overview_page(&state, &session, &name, StatusCode::OK, None, None).await
}

/// The overview, with what a form on it just did.
pub(super) async fn overview_page(
    state: &AppState,
    session: &Session,
    name: &str,
    code: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> PageResult {
    let caller = session.caller.clone();
    let path = || Path(name.to_owned());
    let Json(info) = controllers::apps::show(State(state.clone()), caller.clone(), path()).await?;
    let Json(FormationView { processes, .. }) =
        controllers::formation::show(State(state.clone()), caller.clone(), path()).await?;
    let Json(domains) = controllers::domains::list(State(state.clone()), caller, path()).await?;
    let app = store_app(state, name).await?;
    let releases = state.store.releases(app.id).await.map_err(ApiError::from)?;
    let canary = state.deployer.canary_release_id(&app.name);
    let last_deploy = releases.first().map_or_else(
        || "never deployed: push to deploy".to_owned(),
        |release| {
            let status = if canary == Some(release.id) {
                ReleaseStatus::Canary
            } else {
                release.status
            };
            let mut text = format!("{} {status}: {}", release.version, release.description);
            if let Some(reason) = &release.status_reason {
                text.push_str(&format!(" ({reason})"));
            }
            text
        },
    );
    let pipeline = state
        .store
        .app_pipeline(app.id)
        .await
        .map_err(ApiError::from)?
        .map(|(pipeline, stage)| (pipeline.name.to_string(), stage));
    let page = OverviewPage {
        layout: session.layout(format!("{name} overview")),
        nav: AppNav::new(name, ""),
        notice,
        error,
        pipeline,
        status: status(state, &app, &processes).await?,
        current: info
            .current_release
            .clone()
            .unwrap_or_else(|| "none".to_owned()),
        domains: domains.into_iter().map(|d| d.hostname).collect(),
        info,
        last_deploy,
        processes: processes.iter().map(ProcessRow::from).collect(),
        alerts: alert_rows(state, &app).await?,
        graphs: graphs::app_charts(
            &controllers::metrics::app_metrics(state, &app, controllers::metrics::DEFAULT_SINCE)
                .await?,
        )
        .iter()
        .map(graphs::Chart::svg)
        .collect(),
    };
    Ok(render(code, &page))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(dyno: &str, state: ProcessState) -> ProcessInfo {
        ProcessInfo {
            dyno: dyno.to_owned(),
            release: "1.0.0".to_owned(),
            state,
            started_at: None,
            exit_code: None,
            restarts: 0,
            canary: false,
        }
    }

    #[test]
    fn process_counts_are_by_type_and_only_up_ones() {
        assert_eq!(counts(&[]), "none");
        let processes = [
            process("web.1", ProcessState::Up),
            process("worker.1", ProcessState::Up),
            process("web.2", ProcessState::Up),
            process("web.3", ProcessState::Crashed),
        ];
        assert_eq!(counts(&processes), "web=2 worker=1");
    }
}
