//! `/v1/apps/{app}/buildpacks` and the build cache: how the next push builds.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use slipway_builder::Buildpack;
use slipway_types::api::Buildpacks;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;

/// Longest list `buildpacks:set` takes; more is a mistake rather than a build.
const MAX_BUILDPACKS: usize = 16;

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Buildpacks>> {
    let app = state.app_for(&caller, &name).await?;
    Ok(Json(Buildpacks {
        buildpacks: state.store.buildpacks(app.id).await?,
    }))
}

/// Replaces the app's buildpacks; each must be a built-in name or a git URL. Takes effect
/// at the next push: nothing is rebuilt now.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<Buildpacks>,
) -> ApiResult<Json<Buildpacks>> {
    caller.require_write()?;
    let app = state.app_for(&caller, &name).await?;
    if body.buildpacks.len() > MAX_BUILDPACKS {
        return Err(ApiError::invalid(format!(
            "{} buildpacks given: an app runs at most {MAX_BUILDPACKS}",
            body.buildpacks.len()
        )));
    }
    let buildpacks = body
        .buildpacks
        .iter()
        .map(|spec| {
            Buildpack::parse(spec)
                .map(|buildpack| buildpack.to_string())
                .map_err(|error| ApiError::invalid(error.to_string()))
        })
        .collect::<ApiResult<Vec<String>>>()?;
    state.store.set_buildpacks(app.id, &buildpacks).await?;
    let action = if buildpacks.is_empty() {
        "buildpacks.clear"
    } else {
        "buildpacks.set"
    };
    state
        .audit(
            &caller,
            action,
            app.name.as_str(),
            Some(&buildpacks.join(" ")),
        )
        .await;
    Ok(Json(Buildpacks { buildpacks }))
}

/// Clears the app's buildpacks: the next push detects again.
pub async fn clear(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    let app = state.app_for(&caller, &name).await?;
    state.store.set_buildpacks(app.id, &[]).await?;
    state
        .audit(&caller, "buildpacks.clear", app.name.as_str(), None)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/apps/{app}/builds/cache`: empties the app's build cache, after any build of
/// the app running now, so the next push builds cold.
pub async fn purge_cache(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    let app = state.app_for(&caller, &name).await?;
    let _building = state.builds.app_lock(&app.name).lock_owned().await;
    state
        .builder
        .purge_cache(&app.name)
        .await
        .map_err(ApiError::internal)?;
    state
        .audit(&caller, "builds.cache.purge", app.name.as_str(), None)
        .await;
    Ok(StatusCode::NO_CONTENT)
}
