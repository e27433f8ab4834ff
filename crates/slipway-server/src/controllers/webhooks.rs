//! An app's webhooks: `/v1/apps/{app}/webhooks…`. The signing secret is made here and shown
//! once, in the answer to the creation; listings show the latest delivery instead.

use std::net::IpAddr;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use slipway_store::Webhook;
use slipway_types::alerts::{CreateWebhook, CreatedWebhook, EventKind, WebhookInfo};
use uuid::Uuid;

use crate::alerts::webhooks::generate_secret;
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;

/// Longest URL accepted.
const MAX_URL: usize = 2048;

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<WebhookInfo>>> {
    let app = state.app_for(&caller, &name).await?;
    let webhooks = state.store.webhooks(app.id).await?;
    Ok(Json(webhooks.into_iter().map(info).collect()))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<CreatedWebhook>)> {
    let app = state.app_for(&caller, &name).await?;
    let url = webhook_url(&body.url).map_err(ApiError::invalid)?;
    let mut events = body
        .events
        .iter()
        .map(|kind| kind.parse::<EventKind>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ApiError::invalid(error.to_string()))?;
    if events.is_empty() {
        events = EventKind::ALL.to_vec();
    }
    events.sort();
    events.dedup();
    let secret = generate_secret();
    let webhook = state
        .store
        .add_webhook(app.id, &url, &events, &secret)
        .await?;
    // The id, not the URL: receivers often take a token in the URL's path or query.
    let id = webhook.id.to_string();
    state
        .audit(&caller, "webhooks.add", app.name.as_str(), Some(&id))
        .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            webhook: info(webhook),
            secret,
        }),
    ))
}

pub async fn destroy(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = state.app_for(&caller, &name).await?;
    let not_found =
        || ApiError::not_found(format!("webhook `{id}` is not attached to app `{name}`"));
    let parsed = Uuid::parse_str(&id).map_err(|_| not_found())?;
    state
        .store
        .remove_webhook(app.id, parsed)
        .await
        .map_err(|_| not_found())?;
    state
        .audit(&caller, "webhooks.remove", app.name.as_str(), Some(&id))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

fn info(webhook: Webhook) -> WebhookInfo {
    WebhookInfo {
        id: webhook.id,
        url: webhook.url,
        events: webhook.events,
        created_at: webhook.created_at,
        last_delivery: webhook.last_delivery,
    }
}

/// A webhook URL: `https://`, or `http://` to this machine only, since a plain-HTTP delivery
/// elsewhere would carry the event (and its signature) in the clear.
fn webhook_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.len() > MAX_URL {
        return Err(format!("webhook url is longer than {MAX_URL} characters"));
    }
    let url = reqwest::Url::parse(text)
        .map_err(|error| format!("webhook url `{text}` is not a URL: {error}"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("webhook url `{text}` has no host"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(url.to_string()),
        "http" if loopback => Ok(url.to_string()),
        "http" => Err(format!(
            "webhook url `{text}` must use https: plain http is only allowed to a loopback address"
        )),
        other => Err(format!(
            "webhook url `{text}` has scheme `{other}`: use https"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_https_or_loopback_http() {
        assert_eq!(
            webhook_url("https://hooks.example.test/slipway").unwrap(),
            "https://hooks.example.test/slipway"
        );
        for loopback in [
            "http://127.0.0.1:9000/hook",
            "http://localhost/hook",
            "http://[::1]:8080/",
        ] {
            assert!(webhook_url(loopback).is_ok(), "{loopback}");
        }
        assert_eq!(
            webhook_url("http://hooks.example.test/").unwrap_err(),
            "webhook url `http://hooks.example.test/` must use https: plain http is only allowed to a loopback address"
        );
        assert!(webhook_url("ftp://example.test/").is_err());
        assert!(webhook_url("not a url").is_err());
    }
}
