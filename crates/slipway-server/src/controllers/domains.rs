//! An app's custom domains: `/v1/apps/{app}/domains…`. A domain routes as soon as it is
//! added; its DNS is checked in the background and its certificate waits for that.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use slipway_store::{App, Domain};
use slipway_types::DomainName;
use slipway_types::api::{AddDomain, DnsStatus, DomainInfo};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<DomainInfo>>> {
    let app = state.app_for(&caller, &name).await?;
    let mut infos = Vec::new();
    for domain in state.store.domains(Some(app.id)).await? {
        infos.push(domain_info(&state, &domain).await?);
    }
    Ok(Json(infos))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, hostname)): Path<(String, String)>,
) -> ApiResult<Json<DomainInfo>> {
    let app = state.app_for(&caller, &name).await?;
    let domain = app_domain(&state, &app, &hostname).await?;
    Ok(Json(domain_info(&state, &domain).await?))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<AddDomain>,
) -> ApiResult<(StatusCode, Json<DomainInfo>)> {
    let app = state.app_for(&caller, &name).await?;
    let hostname: DomainName = body
        .hostname
        .parse()
        .map_err(|error: slipway_types::DomainError| ApiError::invalid(error.to_string()))?;
    let apps_domain = &state.config.apps_domain;
    if hostname.is_within(apps_domain) {
        return Err(ApiError::invalid(format!(
            "domain `{hostname}` is under the apps domain `{apps_domain}`, whose names Slipway already routes: add a domain of your own"
        )));
    }
    if hostname.is_wildcard() && !state.certs.can_validate_wildcard(&hostname) {
        return Err(ApiError::invalid(format!(
            "wildcard domain `{hostname}` needs a DNS-01 certificate, which Slipway can only get for zones delegated to its DNS server: ask the operator to add the zone to --dns-zones, or add the names one by one"
        )));
    }
    let domain = state.store.add_domain(app.id, &hostname).await?;
    state
        .audit(
            &caller,
            "domains.add",
            app.name.as_str(),
            Some(hostname.as_str()),
        )
        .await;
    // Route it and serve it in the built-in DNS now, then answer with whether DNS already
    // points here; when it does, the certificate is ordered at once. The background loop
    // keeps checking the others.
    if let Err(error) = state.certs.sync(&state).await {
        tracing::warn!(domain = %hostname, %error, "syncing domains failed");
    }
    match state.certs.check(&domain).await {
        Ok(DnsStatus::Verified) => match state.certs.want_certificate(&domain).await {
            Ok(true) => state.certs.changed(),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(domain = %hostname, %error, "wanting a certificate failed");
            }
        },
        Ok(DnsStatus::Pending) => {}
        Err(error) => {
            tracing::warn!(domain = %hostname, %error, "checking a new domain's DNS failed");
        }
    }
    let domain = state.store.domain(&hostname).await?.unwrap_or(domain);
    Ok((
        StatusCode::CREATED,
        Json(domain_info(&state, &domain).await?),
    ))
}

pub async fn destroy(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, hostname)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = state.app_for(&caller, &name).await?;
    let domain = app_domain(&state, &app, &hostname).await?;
    state.store.remove_domain(app.id, &domain.hostname).await?;
    state
        .audit(
            &caller,
            "domains.remove",
            app.name.as_str(),
            Some(domain.hostname.as_str()),
        )
        .await;
    state.certs.changed();
    Ok(StatusCode::NO_CONTENT)
}

async fn app_domain(state: &AppState, app: &App, hostname: &str) -> ApiResult<Domain> {
    let not_found = || {
        ApiError::not_found(format!(
            "domain `{hostname}` is not attached to app `{}`",
            app.name
        ))
    };
    let hostname: DomainName = hostname.parse().map_err(|_| not_found())?;
    match state.store.domain(&hostname).await? {
        Some(domain) if domain.app_id == app.id => Ok(domain),
        _ => Err(not_found()),
    }
}

async fn domain_info(state: &AppState, domain: &Domain) -> ApiResult<DomainInfo> {
    let cert = state.store.certificate(domain.hostname.as_str()).await?;
    Ok(DomainInfo {
        hostname: domain.hostname.to_string(),
        dns_status: domain.dns_status,
        dns_expected: format!("CNAME {}", state.certs.dns_target(&domain.app)),
        dns_found: domain.dns_found.clone(),
        checked_at: domain.checked_at,
        cert_status: cert.map(|cert| cert.status),
        created_at: domain.created_at,
    })
}
