//! Maintenance mode: `/v1/apps/{app}/maintenance`. The router answers the app's requests with a
//! 503 page; its processes keep running, and turning it off serves them again at once.

use axum::Json;
use axum::extract::{Path, State};
use slipway_types::api::Maintenance;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::ApiJson;

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Maintenance>> {
    let app = state.app_for(&caller, &name).await?;
    Ok(Json(Maintenance {
        enabled: state.store.maintenance(app.id).await?,
    }))
}

pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<Maintenance>,
) -> ApiResult<Json<Maintenance>> {
    let app = state.app_for(&caller, &name).await?;
    state.store.set_maintenance(app.id, body.enabled).await?;
    state
        .deployer
        .set_maintenance(state.store.apps_in_maintenance().await?);
    let action = if body.enabled {
        "maintenance.on"
    } else {
        "maintenance.off"
    };
    state.audit(&caller, action, app.name.as_str(), None).await;
    Ok(Json(body))
}
