//! Config vars: listed with values hidden until revealed, set, edited and unset. Every save
//! goes through the API's own code, so the same keys are refused and the same release is cut.

use std::collections::BTreeMap;

use askama::Template;
use axum::Form;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use slipway_types::api::{ConfigChanged, ConfigPatch};

use super::{AppNav, Layout, PageResult, Session, inline, render};
use crate::app::AppState;
use crate::controllers;
use crate::extract::ApiJson;

#[derive(Template)]
#[template(path = "config.html")]
struct ConfigPage {
    layout: Layout,
    nav: AppNav,
    notice: Option<String>,
    error: Option<String>,
    vars: BTreeMap<String, String>,
    /// The add form's fields, kept when it is refused.
    key: String,
    value: String,
}

#[derive(Default, Deserialize)]
pub struct VarForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
}

/// What the page says after a change, and what it shows refused.
struct Outcome {
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
    form: VarForm,
}

async fn page(state: &AppState, session: &Session, name: &str, outcome: Outcome) -> PageResult {
    let Json(vars) = controllers::config::show(
        State(state.clone()),
        session.caller.clone(),
        Path(name.to_owned()),
    )
    .await?;
    let page = ConfigPage {
        layout: session.layout(format!("{name} config vars")),
        nav: AppNav::new(name, "/config"),
        notice: outcome.notice,
        error: outcome.error,
        vars,
        key: outcome.form.key,
        value: outcome.form.value,
    };
    Ok(render(outcome.status, &page))
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> PageResult {
    let outcome = Outcome {
        status: StatusCode::OK,
        notice: None,
        error: None,
        form: VarForm::default(),
    };
    page(&state, &session, &name, outcome).await
}

/// Applies one change through `PATCH /v1/apps/{app}/config`'s code and shows the result: the
/// release it cut, or the refusal beside the form with what was typed.
async fn change(
    state: AppState,
    session: Session,
    name: String,
    form: VarForm,
    value: Option<String>,
) -> PageResult {
    let key = form.key.trim().to_owned();
    let patch: ConfigPatch = BTreeMap::from([(key.clone(), value.clone())]);
    let changed = controllers::config::update(
        State(state.clone()),
        session.caller.clone(),
        Path(name.clone()),
        ApiJson(patch),
    )
    .await;
    let verb = if value.is_some() { "Set" } else { "Unset" };
    let outcome = match changed {
        Ok(Json(ConfigChanged { release, .. })) => Outcome {
            status: StatusCode::OK,
            notice: Some(match release {
                Some(version) => format!("{verb} {key}: release {version} is live"),
                None => format!(
                    "{verb} {key}: no release cut (nothing changed, or nothing deployed yet)"
                ),
            }),
            error: None,
            form: VarForm::default(),
        },
        Err(error) => {
            let (status, message) = inline(error);
            Outcome {
                status,
                notice: None,
                error: Some(message),
                form,
            }
        }
    };
    page(&state, &session, &name, outcome).await
}

pub async fn set(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    Form(form): Form<VarForm>,
) -> PageResult {
    let value = Some(form.value.clone());
    change(state, session, name, form, value).await
}

pub async fn unset(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    Form(form): Form<VarForm>,
) -> PageResult {
    change(state, session, name, form, None).await
}
