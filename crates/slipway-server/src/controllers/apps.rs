use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use slipway_store::Role;
use slipway_types::AppName;
use slipway_types::api::{AppInfo, CreateApp};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;

pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<AppInfo>>> {
    let mut infos = Vec::new();
    for app in state.store.apps().await? {
        if caller.user.role == Role::Admin || app.owner == caller.user.id {
            infos.push(state.app_info(&app).await?);
        }
    }
    Ok(Json(infos))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateApp>,
) -> ApiResult<(StatusCode, Json<AppInfo>)> {
    let name: AppName = body.name.parse()?;
    let app = state.store.create_app(&name, caller.user.id).await?;
    if let Err(error) = state.repos.ensure(&name).await {
        state.store.delete_app(app.id).await.ok();
        return Err(ApiError::internal(error));
    }
    state.deployer.set_backends(&name, Vec::new());
    state.certs.changed();
    state
        .audit(&caller, "apps.create", name.as_str(), None)
        .await;
    tracing::info!(app = %name, by = %caller.user.email, "app created");
    Ok((StatusCode::CREATED, Json(state.app_info(&app).await?)))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<AppInfo>> {
    let app = state.app_for(&caller, &name).await?;
    Ok(Json(state.app_info(&app).await?))
}

pub async fn destroy(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let app = state.app_for(&caller, &name).await?;
    // Before the deploy lock: add-on changes take the add-on's lock first, then this one.
    crate::addons::destroy_all(&state, &app).await?;
    let _deploying = state.deployer.lock(&app.name).await;
    state
        .deployer
        .destroy(&app.name)
        .await
        .map_err(ApiError::internal)?;
    state
        .repos
        .remove(&app.name)
        .await
        .map_err(ApiError::internal)?;
    state.store.delete_app(app.id).await?;
    state.logs.forget(&app.name);
    state.certs.changed();
    state
        .audit(&caller, "apps.destroy", app.name.as_str(), None)
        .await;
    tracing::info!(app = %app.name, by = %caller.user.email, "app destroyed");
    Ok(StatusCode::NO_CONTENT)
}
