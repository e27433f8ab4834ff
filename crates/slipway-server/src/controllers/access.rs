//! Who may use an app besides its owner: `/v1/apps/{app}/collaborators…`. Collaborators do
//! everything with the app but destroy it or change who may use it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use slipway_types::api::{AddCollaborator, CollaboratorInfo};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<CollaboratorInfo>>> {
    let app = state.app_for(&caller, &name).await?;
    let owner = state
        .store
        .user(app.owner)
        .await?
        .map(|user| user.email)
        .unwrap_or_default();
    let mut people = vec![CollaboratorInfo {
        email: owner,
        role: "owner".to_owned(),
    }];
    for user in state.store.collaborators(app.id).await? {
        people.push(CollaboratorInfo {
            email: user.email,
            role: "collaborator".to_owned(),
        });
    }
    Ok(Json(people))
}

pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<AddCollaborator>,
) -> ApiResult<(StatusCode, Json<CollaboratorInfo>)> {
    let app = state.app_for(&caller, &name).await?;
    let email = body.email.trim().to_ascii_lowercase();
    let user = state.store.user_by_email(&email).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no user `{email}`: an admin creates users with `slipway admin:users:create`"
        ))
    })?;
    if user.id == app.owner {
        return Err(ApiError::conflict(format!(
            "`{email}` owns app `{}` already",
            app.name
        )));
    }
    state
        .store
        .add_collaborator(app.id, user.id)
        .await
        .map_err(|error| match error {
            slipway_store::StoreError::Conflict(_) => ApiError::conflict(format!(
                "`{email}` is already a collaborator on app `{}`",
                app.name
            )),
            other => other.into(),
        })?;
    state
        .audit(&caller, "access.add", app.name.as_str(), Some(&email))
        .await;
    Ok((
        StatusCode::CREATED,
        Json(CollaboratorInfo {
            email,
            role: "collaborator".to_owned(),
        }),
    ))
}

pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, email)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = state.app_for(&caller, &name).await?;
    let email = email.trim().to_ascii_lowercase();
    let not_collaborator = || {
        ApiError::not_found(format!(
            "`{email}` is not a collaborator on app `{}`",
            app.name
        ))
    };
    let user = state
        .store
        .user_by_email(&email)
        .await?
        .ok_or_else(not_collaborator)?;
    state
        .store
        .remove_collaborator(app.id, user.id)
        .await
        .map_err(|_| not_collaborator())?;
    state
        .audit(&caller, "access.remove", app.name.as_str(), Some(&email))
        .await;
    Ok(StatusCode::NO_CONTENT)
}
