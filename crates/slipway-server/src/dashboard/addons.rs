//! Add-ons: created, described with how their server is doing, and destroyed.

use askama::Template;
use axum::Form;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use slipway_types::api::{AddonChanged, AddonDetail, CreateAddon};

use super::{AppNav, Layout, PageResult, Session, inline, render};
use crate::app::AppState;
use crate::controllers;
use crate::extract::ApiJson;

pub struct AddonRow {
    pub name: String,
    pub kind: String,
    pub config_var: String,
    /// Running or not, its version, size and connections.
    pub info: String,
}

fn describe(detail: &AddonDetail) -> String {
    let mut parts = vec![
        if detail.running {
            "running"
        } else {
            "not running"
        }
        .to_owned(),
    ];
    if let Some(version) = &detail.version {
        parts.push(format!("version {version}"));
    }
    if let Some(size) = detail.size_bytes {
        parts.push(format!("{} KiB on disk", size / 1024));
    }
    if let Some(connections) = detail.connections {
        parts.push(format!("{connections} connections"));
    }
    if let Some(error) = &detail.error {
        parts.push(error.clone());
    }
    parts.join(", ")
}

#[derive(Template)]
#[template(path = "addons.html")]
struct AddonsPage {
    layout: Layout,
    nav: AppNav,
    notice: Option<String>,
    error: Option<String>,
    addons: Vec<AddonRow>,
}

async fn page(
    state: &AppState,
    session: &Session,
    name: &str,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> PageResult {
    let caller = session.caller.clone();
    let Json(list) =
        controllers::addons::list(State(state.clone()), caller.clone(), Path(name.to_owned()))
            .await?;
    let mut addons = Vec::with_capacity(list.len());
    for addon in list {
        let shown = controllers::addons::show(
            State(state.clone()),
            caller.clone(),
            Path((name.to_owned(), addon.name.clone())),
        )
        .await;
        let info = match shown {
            Ok(Json(detail)) => describe(&detail),
            Err(error) => error.message().to_owned(),
        };
        addons.push(AddonRow {
            name: addon.name,
            kind: addon.kind,
            config_var: addon.config_var,
            info,
        });
    }
    let page = AddonsPage {
        layout: session.layout(format!("{name} add-ons")),
        nav: AppNav::new(name, "/addons"),
        notice,
        error,
        addons,
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

fn released(verb: &str, changed: &AddonChanged) -> String {
    let addon = &changed.addon;
    match &changed.release {
        Some(version) => format!(
            "{verb} {} ({}): release {version} is live",
            addon.name, addon.config_var
        ),
        None => format!("{verb} {} ({})", addon.name, addon.config_var),
    }
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
}

pub async fn create(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    Form(form): Form<CreateForm>,
) -> PageResult {
    let request = CreateAddon {
        kind: form.kind,
        name: Some(form.name.trim().to_owned()).filter(|n| !n.is_empty()),
    };
    let created = controllers::addons::create(
        State(state.clone()),
        session.caller.clone(),
        Path(name.clone()),
        ApiJson(request),
    )
    .await;
    let (status, notice, error) = match created {
        Ok((_, Json(changed))) => (StatusCode::OK, Some(released("Created", &changed)), None),
        Err(error) => {
            let (status, message) = inline(error);
            (status, None, Some(message))
        }
    };
    page(&state, &session, &name, status, notice, error).await
}

#[derive(Deserialize)]
pub struct DestroyForm {
    #[serde(default)]
    name: String,
}

pub async fn destroy(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    Form(form): Form<DestroyForm>,
) -> PageResult {
    let destroyed = controllers::addons::destroy(
        State(state.clone()),
        session.caller.clone(),
        Path((name.clone(), form.name)),
    )
    .await;
    let (status, notice, error) = match destroyed {
        Ok(Json(changed)) => (StatusCode::OK, Some(released("Destroyed", &changed)), None),
        Err(error) => {
            let (status, message) = inline(error);
            (status, None, Some(message))
        }
    };
    page(&state, &session, &name, status, notice, error).await
}
