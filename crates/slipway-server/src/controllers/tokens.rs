//! The caller's API tokens: `/v1/tokens…`. A token is shown once, when created; listings show
//! ids, scopes and times.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use slipway_store::{TokenRecord, TokenScope};
use slipway_types::api::{CreateToken, IssuedToken, TokenInfo};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{Caller, refusal};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;

/// The longest lifetime a token can be given; tokens without one never expire.
const MAX_LIFETIME_DAYS: i64 = 3650;

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<TokenInfo>>> {
    let tokens = state.store.tokens(caller.user.id).await?;
    Ok(Json(tokens.iter().map(token_info).collect()))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<IssuedToken>)> {
    let scope = TokenScope::parse(&body.scope).ok_or_else(|| {
        ApiError::invalid(format!(
            "scope `{}` is unknown: use read, write or admin",
            body.scope
        ))
    })?;
    if scope > caller.scope {
        return Err(refusal::scope(scope.as_str(), caller.scope.as_str()));
    }
    if scope == TokenScope::Admin && !caller.is_admin() {
        return Err(refusal::admin_only());
    }
    let expires_at = match &body.expires_in {
        Some(text) => Some(OffsetDateTime::now_utc() + parse_lifetime(text)?),
        None => None,
    };
    let token = state
        .store
        .create_token(caller.user.id, scope, expires_at)
        .await?;
    let signed = state.signer.issue(&token).map_err(ApiError::internal)?;
    state
        .audit(
            &caller,
            "tokens.create",
            &caller.user.email,
            Some(&token.id.to_string()),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            token: signed,
            info: token_info(&token),
        }),
    ))
}

/// Revokes one of the caller's own tokens; the next request with it is refused.
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let not_found = || {
        ApiError::not_found(format!(
            "you have no token `{id}`: `slipway tokens` lists them"
        ))
    };
    let token_id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let token = state.store.token(token_id).await?.ok_or_else(not_found)?;
    if token.user_id != caller.user.id {
        return Err(not_found());
    }
    state.store.revoke_token(token_id).await?;
    state
        .audit(&caller, "tokens.revoke", &caller.user.email, Some(&id))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

pub fn token_info(token: &TokenRecord) -> TokenInfo {
    TokenInfo {
        id: token.id,
        scope: token.scope.as_str().to_owned(),
        created_at: token.created_at,
        expires_at: token.expires_at,
        revoked_at: token.revoked_at,
    }
}

/// `30d`, `12h`, `90m`: from one minute to ten years.
fn parse_lifetime(text: &str) -> ApiResult<time::Duration> {
    let invalid = || {
        ApiError::invalid(format!(
            "lifetime `{text}` is invalid: use a number with d, h or m, like 30d, from 1m to {MAX_LIFETIME_DAYS}d"
        ))
    };
    let text = text.trim();
    let split = text.len().checked_sub(1).ok_or_else(invalid)?;
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits.parse().map_err(|_| invalid())?;
    let lifetime = match unit {
        "d" => time::Duration::days(n),
        "h" => time::Duration::hours(n),
        "m" => time::Duration::minutes(n),
        _ => return Err(invalid()),
    };
    if lifetime < time::Duration::minutes(1) || lifetime > time::Duration::days(MAX_LIFETIME_DAYS) {
        return Err(invalid());
    }
    Ok(lifetime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_take_days_hours_and_minutes_within_bounds() {
        assert_eq!(parse_lifetime("30d").unwrap(), time::Duration::days(30));
        assert_eq!(parse_lifetime("12h").unwrap(), time::Duration::hours(12));
        assert_eq!(parse_lifetime("90m").unwrap(), time::Duration::minutes(90));
        for bad in [
            "",
            "d",
            "0m",
            "-5d",
            "5w",
            "3651d",
            "ten days",
            "99999999999999999999d",
        ] {
            assert!(parse_lifetime(bad).is_err(), "{bad:?}");
        }
    }
}
