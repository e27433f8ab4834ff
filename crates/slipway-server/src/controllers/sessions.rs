//! Signing in with a password (`POST /v1/login`) and out (`POST /v1/logout`).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use slipway_store::{NewAuditEvent, Role, TokenScope};
use slipway_types::api::{AuditOutcome, IssuedToken, LoginRequest};
use time::{Duration, OffsetDateTime};

use crate::app::AppState;
use crate::auth::Caller;
use crate::controllers::tokens::token_info;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::passwords;

/// How long a token from a password login lives.
const LOGIN_TOKEN_LIFETIME: Duration = Duration::days(30);

/// A token with the user's full scope (`admin` for admins, `write` for members), valid 30
/// days. Wrong email and wrong password get the same answer, after the same work.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<(StatusCode, Json<IssuedToken>)> {
    let email = body.email.trim().to_ascii_lowercase();
    let source_ip = peer.ip().to_string();
    let record = |outcome, detail: &'static str| {
        let state = state.clone();
        let email = email.clone();
        let source_ip = source_ip.clone();
        async move {
            state
                .record(NewAuditEvent {
                    actor: &email,
                    action: "login",
                    target: &email,
                    source_ip: Some(&source_ip),
                    detail: Some(detail),
                    outcome,
                })
                .await;
        }
    };
    if !state.logins.allow(Some(peer.ip()), &email) {
        record(AuditOutcome::Denied, "rate limited").await;
        return Err(ApiError::with_code(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many login attempts: wait a minute and try again",
        ));
    }
    let found = state.store.user_with_password(&email).await?;
    let hash = found.as_ref().and_then(|(_, hash)| hash.clone());
    let password = body.password;
    let matched =
        tokio::task::spawn_blocking(move || passwords::verify(&password, hash.as_deref()))
            .await
            .map_err(ApiError::internal)?;
    let user = match found {
        Some((user, _)) if matched => user,
        _ => {
            record(AuditOutcome::Denied, "wrong email or password").await;
            return Err(ApiError::with_code(
                StatusCode::UNAUTHORIZED,
                "login_failed",
                "wrong email or password",
            ));
        }
    };
    let scope = match user.role {
        Role::Admin => TokenScope::Admin,
        Role::Member => TokenScope::Write,
    };
    let expires_at = OffsetDateTime::now_utc() + LOGIN_TOKEN_LIFETIME;
    let token = state
        .store
        .create_token(user.id, scope, Some(expires_at))
        .await?;
    let signed = state.signer.issue(&token).map_err(ApiError::internal)?;
    record(AuditOutcome::Ok, "password").await;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            token: signed,
            info: token_info(&token),
        }),
    ))
}

/// Revokes the token the request came with.
pub async fn logout(State(state): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    let id = caller
        .token_id
        .ok_or_else(|| ApiError::bad_request("this request carries no token to revoke"))?;
    state.store.revoke_token(id).await?;
    state
        .audit(&caller, "logout", &caller.user.email, Some(&id.to_string()))
        .await;
    Ok(StatusCode::NO_CONTENT)
}
