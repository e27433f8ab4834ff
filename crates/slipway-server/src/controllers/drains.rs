//! An app's log drains: `/v1/apps/{app}/drains…`. A drain starts shipping as soon as it is
//! added; its URL is only ever shown redacted.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use slipway_store::{App, Drain, parse_drain_token};
use slipway_types::drains::{AddDrain, DrainInfo, DrainUrl};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<DrainInfo>>> {
    let app = state.app_for(&caller, &name).await?;
    let drains = state.store.drains(Some(app.id)).await?;
    Ok(Json(
        drains
            .iter()
            .map(|drain| drain_info(&state, drain))
            .collect(),
    ))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<AddDrain>,
) -> ApiResult<(StatusCode, Json<DrainInfo>)> {
    let app = state.app_for(&caller, &name).await?;
    let url = DrainUrl::parse(&body.url).map_err(|error| ApiError::invalid(error.to_string()))?;
    let drain = state.store.add_drain(app.id, &url).await?;
    state.drains.start(&drain);
    let shown = format!("{} {url}", drain.token());
    state
        .audit(&caller, "drains.add", app.name.as_str(), Some(&shown))
        .await;
    state.logs.platform(
        &app.name,
        "api",
        format!("Add drain {shown} by {}", caller.user.email),
    );
    Ok((StatusCode::CREATED, Json(drain_info(&state, &drain))))
}

/// By id (`d.<uuid>`) only: a URL in the path could carry credentials into access logs. The
/// CLI finds the id of a URL itself.
pub async fn destroy(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, drain)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = state.app_for(&caller, &name).await?;
    let drain = app_drain(&state, &app, &drain).await?;
    state.store.remove_drain(app.id, drain.id).await?;
    state.drains.stop(&drain);
    let shown = format!("{} {}", drain.token(), drain.url);
    state
        .audit(&caller, "drains.remove", app.name.as_str(), Some(&shown))
        .await;
    state.logs.platform(
        &app.name,
        "api",
        format!("Remove drain {shown} by {}", caller.user.email),
    );
    Ok(StatusCode::NO_CONTENT)
}

async fn app_drain(state: &AppState, app: &App, wanted: &str) -> ApiResult<Drain> {
    let not_found = || {
        ApiError::not_found(format!(
            // Not quoted back: it may be a URL with credentials.
            "app `{}` has no such drain: see `slipway drains` for its drains' ids",
            app.name
        ))
    };
    let id = parse_drain_token(wanted).ok_or_else(not_found)?;
    match state.store.drain(id).await? {
        Some(drain) if drain.app_id == app.id => Ok(drain),
        _ => Err(not_found()),
    }
}

fn drain_info(state: &AppState, drain: &Drain) -> DrainInfo {
    let status = state.drains.status(drain).unwrap_or_default();
    DrainInfo {
        id: drain.token(),
        url: drain.url.to_string(),
        kind: drain.url.kind(),
        delivered: status.delivered,
        dropped: status.dropped,
        buffered: status.buffered,
        last_error: status.last_error,
        created_at: drain.created_at,
    }
}
