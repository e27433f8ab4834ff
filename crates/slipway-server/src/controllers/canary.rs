//! Canary releases: `/v1/apps/{app}/canary`. The policy says how the app's next code release
//! goes out; promote and abort settle the canary running now without waiting for its verdict.

use axum::Json;
use axum::extract::{Path, State};
use slipway_store::App;
use slipway_types::canary::{CanaryPolicy, CanaryView};

use crate::app::AppState;
use crate::auth::Caller;
use crate::deployer::DeployError;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;

/// Why a canary policy is refused under `--runtime swarm`.
const SWARM_REFUSAL: &str = "canary releases need --runtime docker";

async fn view(state: &AppState, app: &App) -> ApiResult<Json<CanaryView>> {
    Ok(Json(CanaryView {
        policy: state.store.canary_policy(app.id).await?,
        running: state.deployer.canary_info(&app.name),
    }))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<CanaryView>> {
    let app = state.app_for(&caller, &name).await?;
    view(&state, &app).await
}

/// Sets the policy for the next code release; a canary already running keeps its own.
/// Refused under `--runtime swarm`, whose rolling updates have no canary, so the policy is
/// never set only for every later release to fail.
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(policy): ApiJson<CanaryPolicy>,
) -> ApiResult<Json<CanaryView>> {
    let app = state.app_for(&caller, &name).await?;
    if state.swarm.is_some() {
        return Err(ApiError::conflict(SWARM_REFUSAL));
    }
    policy.check().map_err(ApiError::invalid)?;
    state.store.set_canary_policy(app.id, &policy).await?;
    let detail = format!("{}%", policy.percent);
    state
        .audit(&caller, "canary.set", app.name.as_str(), Some(&detail))
        .await;
    view(&state, &app).await
}

/// Releases go out at once again; a canary already running is left to finish.
pub async fn clear(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<CanaryView>> {
    let app = state.app_for(&caller, &name).await?;
    state.store.clear_canary_policy(app.id).await?;
    state
        .audit(&caller, "canary.off", app.name.as_str(), None)
        .await;
    view(&state, &app).await
}

/// Promotes the running canary now: the rolling replacement runs before this answers.
pub async fn promote(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<CanaryView>> {
    settle(state, caller, name, Settle::Promote).await
}

/// Removes the running canary and fails its release; the current release keeps serving.
pub async fn abort(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<CanaryView>> {
    settle(state, caller, name, Settle::Abort).await
}

/// How a running canary is settled before its verdict.
#[derive(Clone, Copy)]
enum Settle {
    Promote,
    Abort,
}

async fn settle(
    state: AppState,
    caller: Caller,
    name: String,
    how: Settle,
) -> ApiResult<Json<CanaryView>> {
    let app = state.app_for(&caller, &name).await?;
    let by = &caller.user.email;
    let (outcome, action) = match how {
        Settle::Promote => (
            state.deployer.promote_canary(&app, by).await,
            "canary.promote",
        ),
        Settle::Abort => (state.deployer.abort_canary(&app, by).await, "canary.abort"),
    };
    outcome.map_err(|error| canary_error(&name, error))?;
    state.audit(&caller, action, app.name.as_str(), None).await;
    view(&state, &app).await
}

fn canary_error(app: &str, error: DeployError) -> ApiError {
    match error {
        DeployError::Failed(reason) => ApiError::conflict(format!(
            "{reason}: see `slipway releases:canary:status -a {app}`"
        )),
        DeployError::Store(error) => error.into(),
    }
}
