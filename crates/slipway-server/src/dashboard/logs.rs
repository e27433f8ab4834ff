//! Logs, live through the API's own Server-Sent Events stream (`/apps/{app}/logs/stream` runs
//! `GET /v1/apps/{app}/logs`' handler), and builds with the latest build's output, live while
//! it builds. With JavaScript off both pages still show what has been written so far.

use askama::Template;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use slipway_types::api::{BuildOutput, BuildStatus, LogSource};

use super::{AppNav, Layout, PageResult, Session, ok, render, when};
use crate::app::AppState;
use crate::controllers;
use crate::logs::LogFilter;

/// Lines the logs page shows before the live ones.
const RECENT_LINES: usize = 200;

#[derive(Template)]
#[template(path = "logs.html")]
struct LogsPage {
    layout: Layout,
    nav: AppNav,
    notice: Option<String>,
    error: Option<String>,
    sources: Vec<&'static str>,
    source: String,
    process: String,
    /// `&source=…&process=…` for the live stream, already escaped for a URL.
    stream_query: String,
    lines: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct LogsFilter {
    #[serde(default)]
    source: String,
    #[serde(default)]
    process: String,
}

/// A process filter the stream's URL can carry as is; the stream checks it exactly.
fn plain(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    Query(filter): Query<LogsFilter>,
) -> PageResult {
    let app = state.app_for(&session.caller, &name).await?;
    let mut error = None;
    let source = match filter.source.as_str() {
        "" => None,
        text => {
            let parsed = LogSource::parse(text);
            if parsed.is_none() {
                error = Some(format!(
                    "source `{text}` must be one of app, router, build, platform"
                ));
            }
            parsed
        }
    };
    let process = filter.process.trim().to_owned();
    if !plain(&process) {
        error = Some(format!(
            "process `{process}` must be a process type like `web` or a dyno like `web.1`"
        ));
    }
    let mut stream_query = String::new();
    if let Some(source) = source {
        stream_query.push_str(&format!("&source={}", source.as_str()));
    }
    if !process.is_empty() && plain(&process) {
        stream_query.push_str(&format!("&process={process}"));
    }
    let lines = state
        .logs
        .recent(
            &app.name,
            RECENT_LINES,
            &LogFilter {
                source,
                process: Some(process.clone()).filter(|p| !p.is_empty()),
            },
        )
        .iter()
        .map(|line| line.render())
        .collect();
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = LogsPage {
        layout: session.layout(format!("{name} logs")),
        nav: AppNav::new(&name, "/logs"),
        notice: None,
        error,
        sources: LogSource::ALL.iter().map(|s| s.as_str()).collect(),
        source: source.map(|s| s.as_str().to_owned()).unwrap_or_default(),
        process,
        stream_query,
        lines,
    };
    Ok(render(status, &page))
}

pub struct BuildRow {
    pub at: String,
    pub commit: String,
    pub status: String,
    pub release: String,
}

#[derive(Template)]
#[template(path = "builds.html")]
struct BuildsPage {
    layout: Layout,
    nav: AppNav,
    notice: Option<String>,
    error: Option<String>,
    builds: Vec<BuildRow>,
    latest_status: String,
    output: String,
    building: bool,
}

pub async fn builds(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> PageResult {
    let caller = session.caller.clone();
    let Json(list) =
        controllers::builds::list(State(state.clone()), caller.clone(), Path(name.clone())).await?;
    let latest = if list.is_empty() {
        None
    } else {
        let Json(output) = controllers::builds::show(
            State(state.clone()),
            caller,
            Path((name.clone(), "latest".to_owned())),
        )
        .await?;
        Some(output)
    };
    let (latest_status, output, building) = match latest {
        Some(BuildOutput { status, output, .. }) => {
            (status.to_string(), output, status == BuildStatus::Pending)
        }
        None => (String::new(), String::new(), false),
    };
    let page = BuildsPage {
        layout: session.layout(format!("{name} builds")),
        nav: AppNav::new(&name, "/builds"),
        notice: None,
        error: None,
        builds: list
            .into_iter()
            .map(|build| BuildRow {
                at: when(build.created_at),
                commit: build.commit.chars().take(12).collect(),
                status: build.status.to_string(),
                release: build.release.unwrap_or_default(),
            })
            .collect(),
        latest_status,
        output,
        building,
    };
    ok(&page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_process_names_go_into_the_stream_url() {
        assert!(plain("web.1"));
        assert!(plain(""));
        assert!(!plain("web&source=app"));
        assert!(!plain("web 1"));
    }
}
