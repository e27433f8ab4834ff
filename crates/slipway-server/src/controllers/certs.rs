//! An app's certificates: `/v1/apps/{app}/certs…`. Listing shows the app's custom-domain
//! certificates and the platform's wildcard that serves `<app>.<apps-domain>`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use slipway_domains::certs::check_pair;
use slipway_store::{CertFacts, CertPair, Certificate, IssuedCert};
use slipway_types::api::{AddCert, CertInfo, CertSource, CertsAuto, CertsView};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<CertsView>> {
    let app = state.app_for(&caller, &name).await?;
    let wildcard = state.certs.wildcard_name();
    let certs = state
        .store
        .certificates()
        .await?
        .iter()
        .filter(|cert| {
            cert.app_id == Some(app.id)
                || (cert.app_id.is_none() && wildcard.as_deref() == Some(cert.name.as_str()))
        })
        .map(cert_info)
        .collect();
    Ok(Json(CertsView {
        auto: state.store.certs_auto(app.id).await?,
        certs,
    }))
}

pub async fn set_auto(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<CertsAuto>,
) -> ApiResult<Json<CertsAuto>> {
    let app = state.app_for(&caller, &name).await?;
    state.store.set_certs_auto(app.id, body.enabled).await?;
    let action = if body.enabled {
        "certs.auto.enable"
    } else {
        "certs.auto.disable"
    };
    state.audit(&caller, action, app.name.as_str(), None).await;
    state.certs.changed();
    Ok(Json(body))
}

/// A user-supplied certificate: served for each of the app's domains it covers, which are
/// then no longer ordered or renewed by Slipway.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<AddCert>,
) -> ApiResult<(StatusCode, Json<Vec<CertInfo>>)> {
    let app = state.app_for(&caller, &name).await?;
    let info = check_pair(&body.chain_pem, &body.key_pem)
        .map_err(|error| ApiError::invalid(error.to_string()))?;
    let domains = state.store.domains(Some(app.id)).await?;
    let covered: Vec<_> = domains
        .iter()
        .filter(|domain| {
            info.names.iter().any(|cert_name| {
                cert_name
                    .parse::<slipway_types::DomainName>()
                    .is_ok_and(|cert_name| cert_name.covers(domain.hostname.as_str()))
            })
        })
        .collect();
    if covered.is_empty() {
        return Err(ApiError::invalid(format!(
            "the certificate is for {} and covers none of app `{}`'s domains: add the domain with `slipway domains:add` first",
            info.names.join(", "),
            app.name
        )));
    }
    let pair = CertPair {
        chain_pem: body.chain_pem,
        key_pem: body.key_pem,
    };
    let facts = CertFacts {
        issuer: info.issuer.clone(),
        serial: info.serial.clone(),
        not_before: info.not_before,
        not_after: info.not_after,
    };
    let mut added = Vec::new();
    for domain in covered {
        state
            .store
            .save_certificate(IssuedCert {
                name: domain.hostname.as_str(),
                app_id: Some(app.id),
                source: CertSource::Manual,
                pair: &pair,
                facts: &facts,
                renew_at: None,
            })
            .await?;
        if let Some(cert) = state.store.certificate(domain.hostname.as_str()).await? {
            added.push(cert_info(&cert));
        }
    }
    let names: Vec<&str> = added.iter().map(|cert| cert.domain.as_str()).collect();
    state
        .audit(
            &caller,
            "certs.add",
            app.name.as_str(),
            Some(&names.join(",")),
        )
        .await;
    state.certs.changed();
    Ok((StatusCode::CREATED, Json(added)))
}

fn cert_info(cert: &Certificate) -> CertInfo {
    CertInfo {
        domain: cert.name.clone(),
        source: cert.source,
        status: cert.status,
        issuer: cert.facts.as_ref().map(|facts| facts.issuer.clone()),
        serial: cert.facts.as_ref().map(|facts| facts.serial.clone()),
        not_after: cert.facts.as_ref().map(|facts| facts.not_after),
        last_error: cert.last_error.clone(),
        next_attempt_at: cert.next_attempt_at,
    }
}
