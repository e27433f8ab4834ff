//! The caller's SSH keys: `/v1/keys…`. A registered key authenticates `git push` over SSH as
//! its user; each key belongs to one user, so the key alone says who pushes.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use slipway_store::{NewSshKey, SshKey};
use slipway_types::api::{AddSshKey, SshKeyInfo};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::ssh::{key_name, parse_public_key};

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<SshKeyInfo>>> {
    let keys = state.store.ssh_keys(caller.user.id).await?;
    Ok(Json(keys.iter().map(key_info).collect()))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<AddSshKey>,
) -> ApiResult<(StatusCode, Json<SshKeyInfo>)> {
    caller.require_write()?;
    let key = parse_public_key(&body.public_key).map_err(ApiError::invalid)?;
    let name = key_name(body.name.as_deref(), &key).map_err(ApiError::invalid)?;
    let added = state
        .store
        .add_ssh_key(NewSshKey {
            user_id: caller.user.id,
            name: &name,
            algorithm: &key.algorithm,
            public_key: &key.public_key,
            fingerprint: &key.fingerprint,
        })
        .await?;
    state
        .audit(
            &caller,
            "keys.add",
            &caller.user.email,
            Some(&added.fingerprint),
        )
        .await;
    Ok((StatusCode::CREATED, Json(key_info(&added))))
}

/// Removes one of the caller's keys, named by its fingerprint or its id.
pub async fn destroy(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    let id = Uuid::parse_str(&key).ok();
    let keys = state.store.ssh_keys(caller.user.id).await?;
    let found = keys
        .iter()
        .find(|candidate| candidate.fingerprint == key || Some(candidate.id) == id)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "you have no SSH key `{key}`: `slipway keys` lists yours"
            ))
        })?;
    state.store.remove_ssh_key(caller.user.id, found.id).await?;
    state
        .audit(
            &caller,
            "keys.remove",
            &caller.user.email,
            Some(&found.fingerprint),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

fn key_info(key: &SshKey) -> SshKeyInfo {
    SshKeyInfo {
        id: key.id,
        name: key.name.clone(),
        algorithm: key.algorithm.clone(),
        fingerprint: key.fingerprint.clone(),
        public_key: key.public_key.clone(),
        created_at: key.created_at,
        last_used_at: key.last_used_at,
    }
}
