use axum::Json;
use axum::extract::{Path, State};
use slipway_store::Build;
use slipway_types::api::{BuildInfo, BuildOutput};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

fn info(build: Build) -> BuildInfo {
    BuildInfo {
        id: build.id,
        status: build.status,
        commit: build.commit,
        release: build.release_version.map(|v| v.to_string()),
        created_at: build.created_at,
        finished_at: build.finished_at,
    }
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<BuildInfo>>> {
    let app = state.app_for(&caller, &name).await?;
    let builds = state.store.builds(app.id).await?;
    Ok(Json(builds.into_iter().map(info).collect()))
}

/// One build's output; `latest` names the newest build.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<BuildOutput>> {
    let app = state.app_for(&caller, &name).await?;
    let not_found = || ApiError::not_found(format!("build `{id}` of `{name}` not found"));
    let build = if id == "latest" {
        state.store.builds(app.id).await?.into_iter().next()
    } else {
        let id: Uuid = id.parse().map_err(|_| not_found())?;
        state.store.build(app.id, id).await?
    }
    .ok_or_else(not_found)?;
    Ok(Json(BuildOutput {
        id: build.id,
        status: build.status,
        output: build.output,
    }))
}
