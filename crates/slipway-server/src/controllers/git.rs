//! Git smart HTTP at `/git/<app>.git`. HTTP Basic auth where the password is an API token
//! (any user name), so `.netrc` written by `slipway login` makes a plain `git push` work.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::app::AppState;
use crate::auth::authenticate;

fn text(status: StatusCode, message: String) -> Response {
    (status, format!("{message}\n")).into_response()
}

fn challenge(message: &str) -> Response {
    let mut response = text(StatusCode::UNAUTHORIZED, message.to_owned());
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"slipway\""),
    );
    response
}

/// The token from `Authorization: Basic base64(user:token)`.
fn basic_password(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    decoded
        .split_once(':')
        .map(|(_, password)| password.to_owned())
}

pub async fn serve(
    State(state): State<AppState>,
    Path((repo, rest)): Path<(String, String)>,
    request: Request,
) -> Response {
    let Some(name) = repo.strip_suffix(".git") else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no repository `{repo}`: use /git/<app>.git"),
        );
    };
    let Some(token) = basic_password(&request) else {
        return challenge("authentication required: run `slipway login` (it writes ~/.netrc)");
    };
    let mut caller = match authenticate(&state, &token).await {
        Ok(caller) => caller,
        Err(error) => return challenge(error.message()),
    };
    caller.source_ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    if let Some(ip) = caller.source_ip {
        crate::router::note_address(&state, &caller, ip).await;
    }
    let app = match state.app_for(&caller, name).await {
        Ok(app) => app,
        Err(_) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("app `{name}` not found: create it with `slipway apps:create {name}`"),
            );
        }
    };
    let pushing = rest.ends_with("git-receive-pack")
        || request.uri().query().is_some_and(|query| {
            query
                .split('&')
                .any(|pair| pair == "service=git-receive-pack")
        });
    if pushing && caller.require_write().is_err() {
        return text(
            StatusCode::FORBIDDEN,
            "this token has scope `read`: pushing needs a `write` token".to_owned(),
        );
    }
    if let Err(error) = state.repos.ensure(&app.name).await {
        tracing::error!(app = %app.name, %error, "preparing the repository failed");
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error".to_owned(),
        );
    }
    state
        .repos
        .http_backend(&app.name, &rest, &caller.user.email, request)
        .await
}
