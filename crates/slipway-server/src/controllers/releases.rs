use axum::Json;
use axum::extract::{Path, State};
use slipway_store::Release;
use slipway_types::api::ReleaseInfo;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

fn info(release: Release, current: Option<Uuid>) -> ReleaseInfo {
    ReleaseInfo {
        version: release.version.to_string(),
        description: release.description,
        commit: release.commit,
        image: release.image,
        created_by: release.created_by,
        created_at: release.created_at,
        status: release.status,
        status_reason: release.status_reason,
        current: current == Some(release.id),
    }
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<ReleaseInfo>>> {
    let app = state.app_for(&caller, &name).await?;
    let releases = state.store.releases(app.id).await?;
    Ok(Json(
        releases
            .into_iter()
            .map(|r| info(r, app.current_release))
            .collect(),
    ))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<ReleaseInfo>> {
    let app = state.app_for(&caller, &name).await?;
    let not_found = || ApiError::not_found(format!("release `{version}` of `{name}` not found"));
    let parsed =
        semver::Version::parse(version.trim_start_matches('v')).map_err(|_| not_found())?;
    let release = state
        .store
        .release(app.id, &parsed)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(info(release, app.current_release)))
}
