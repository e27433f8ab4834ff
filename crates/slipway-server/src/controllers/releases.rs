use axum::Json;
use axum::extract::{Path, State};
use slipway_store::Release;
use slipway_types::api::{ReleaseInfo, ReleaseStatus, RollbackRequest};
use uuid::Uuid;

use crate::alerts::ReleaseEvent;
use crate::app::AppState;
use crate::auth::Caller;
use crate::deployer::Progress;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;

/// `canary`: the release running as the app's canary, shown with that status (the store keeps
/// it pending until it is promoted or fails).
fn info(release: Release, current: Option<Uuid>, canary: Option<Uuid>) -> ReleaseInfo {
    ReleaseInfo {
        status: if canary == Some(release.id) {
            ReleaseStatus::Canary
        } else {
            release.status
        },
        version: release.version.to_string(),
        description: release.description,
        commit: release.commit,
        image: release.image,
        created_by: release.created_by,
        created_at: release.created_at,
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
    let canary = state.deployer.canary_release_id(&app.name);
    Ok(Json(
        releases
            .into_iter()
            .map(|r| info(r, app.current_release, canary))
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
    let canary = state.deployer.canary_release_id(&app.name);
    Ok(Json(info(release, app.current_release, canary)))
}

/// Cuts a new patch release with an earlier release's image, config and app.json, described
/// "Rollback to X", and rolls it out. Without a version: the newest release below the current
/// one that went live. The release rolled away from is marked `rolled back`.
pub async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<RollbackRequest>,
) -> ApiResult<Json<ReleaseInfo>> {
    let app = state.app_for(&caller, &name).await?;
    let _deploying = state.deployer.lock(&app.name).await;
    let current = state.store.current_release(app.id).await?.ok_or_else(|| {
        ApiError::conflict(format!("app `{name}` has no release yet: push first"))
    })?;
    let releases = state.store.releases(app.id).await?;
    let went_live = |r: &&Release| {
        matches!(
            r.status,
            ReleaseStatus::Succeeded | ReleaseStatus::RolledBack
        )
    };
    let target = match &request.version {
        Some(version) => {
            let parsed = semver::Version::parse(version.trim_start_matches('v')).map_err(|_| {
                ApiError::invalid(format!("`{version}` is not a version: use X.Y.Z"))
            })?;
            releases
                .iter()
                .find(|r| r.version == parsed)
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "release `{version}` of `{name}` not found: see `slipway releases`"
                    ))
                })?
        }
        None => releases
            .iter()
            .filter(went_live)
            .find(|r| r.version < current.version)
            .ok_or_else(|| {
                ApiError::conflict(format!(
                    "`{name}` has no release before {} to roll back to",
                    current.version
                ))
            })?,
    };
    if target.id == current.id {
        return Err(ApiError::conflict(format!(
            "release {} is the one running",
            target.version
        )));
    }
    if !went_live(&target) {
        return Err(ApiError::conflict(format!(
            "release {} never went live: roll back to one that did",
            target.version
        )));
    }
    if !state.deployer.has_image(&target.image).await {
        return Err(ApiError::conflict(format!(
            "the image of release {} was pruned (the 5 newest images are kept): roll back to a newer release",
            target.version
        )));
    }
    let release = state
        .cut_patch_release(
            &app,
            target,
            &target.config,
            format!("Rollback to {}", target.version),
            &caller.user.email,
        )
        .await?;
    let version = release.version.clone();
    let detail = format!("{} to {}", current.version, target.version);
    state
        .audit(
            &caller,
            "releases.rollback",
            app.name.as_str(),
            Some(&detail),
        )
        .await;
    let outcome = state
        .deployer
        .deploy(&app, &release, &Progress::none())
        .await;
    outcome.map_err(|e| {
        ApiError::deploy_failed(format!(
            "release {version} failed: {e}; {} keeps serving",
            current.version
        ))
    })?;
    state
        .store
        .set_release_status(current.id, ReleaseStatus::RolledBack, None)
        .await?;
    state.deployer.notify_release(
        &app,
        &current,
        ReleaseEvent::RolledBack,
        Some(format!(
            "rolled back to {} by {} (release {version})",
            target.version, caller.user.email
        )),
    );
    let live = state
        .store
        .release_by_id(release.id)
        .await?
        .ok_or_else(|| ApiError::internal("the rollback release vanished"))?;
    Ok(Json(info(live, Some(release.id), None)))
}
