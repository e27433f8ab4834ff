//! Per-app rate limiting at the router: `/v1/apps/{app}/ratelimit`. The limit applies to each
//! client IP (the TCP peer's address) as soon as it is set.

use axum::Json;
use axum::extract::{Path, State};
use slipway_types::RateLimit;
use slipway_types::canary::RateLimitView;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;

/// Requests or burst above this are no limit at all, and a typo more likely than a wish.
const MAX_REQUESTS: u32 = 1_000_000;

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<RateLimitView>> {
    let app = state.app_for(&caller, &name).await?;
    Ok(Json(RateLimitView {
        limit: state.store.rate_limit(app.id).await?,
    }))
}

pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(limit): ApiJson<RateLimit>,
) -> ApiResult<Json<RateLimitView>> {
    let app = state.app_for(&caller, &name).await?;
    if !(1..=MAX_REQUESTS).contains(&limit.requests) {
        return Err(ApiError::invalid(format!(
            "rate `{}/{}` must allow from 1 to {MAX_REQUESTS} requests",
            limit.requests,
            limit.period.as_str()
        )));
    }
    if !(1..=MAX_REQUESTS).contains(&limit.burst) {
        return Err(ApiError::invalid(format!(
            "burst `{}` must be from 1 to {MAX_REQUESTS}",
            limit.burst
        )));
    }
    state.store.set_rate_limit(app.id, &limit).await?;
    sync(&state).await?;
    let detail = format!(
        "{}/{} burst {}",
        limit.requests,
        limit.period.as_str(),
        limit.burst
    );
    state
        .audit(&caller, "ratelimit.set", app.name.as_str(), Some(&detail))
        .await;
    Ok(Json(RateLimitView { limit: Some(limit) }))
}

pub async fn clear(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<RateLimitView>> {
    let app = state.app_for(&caller, &name).await?;
    state.store.clear_rate_limit(app.id).await?;
    sync(&state).await?;
    state
        .audit(&caller, "ratelimit.clear", app.name.as_str(), None)
        .await;
    Ok(Json(RateLimitView { limit: None }))
}

async fn sync(state: &AppState) -> ApiResult<()> {
    state
        .deployer
        .set_rate_limits(state.store.rate_limits().await?);
    Ok(())
}
