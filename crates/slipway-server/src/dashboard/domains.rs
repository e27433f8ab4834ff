//! Custom domains with their DNS status, and the app's certificates with their expiry.

use askama::Template;
use axum::Form;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use slipway_types::api::{AddDomain, CertInfo, CertsView, DomainInfo};

use super::{AppNav, Layout, PageResult, Session, inline, render, when};
use crate::app::AppState;
use crate::controllers;
use crate::extract::ApiJson;

pub struct DomainRow {
    pub hostname: String,
    pub dns: &'static str,
    pub found: Option<String>,
    pub expected: String,
    pub cert: String,
}

impl From<DomainInfo> for DomainRow {
    fn from(domain: DomainInfo) -> Self {
        Self {
            dns: domain.dns_status.as_str(),
            found: domain.dns_found,
            expected: domain.dns_expected,
            cert: domain
                .cert_status
                .map_or_else(|| "none".to_owned(), |status| status.as_str().to_owned()),
            hostname: domain.hostname,
        }
    }
}

pub struct CertRow {
    pub domain: String,
    pub source: &'static str,
    pub status: &'static str,
    pub expires: String,
    pub error: String,
}

impl From<CertInfo> for CertRow {
    fn from(cert: CertInfo) -> Self {
        Self {
            source: cert.source.as_str(),
            status: cert.status.as_str(),
            expires: cert.not_after.map(when).unwrap_or_default(),
            error: cert.last_error.unwrap_or_default(),
            domain: cert.domain,
        }
    }
}

#[derive(Template)]
#[template(path = "domains.html")]
struct DomainsPage {
    layout: Layout,
    nav: AppNav,
    notice: Option<String>,
    error: Option<String>,
    domains: Vec<DomainRow>,
    auto: bool,
    certs: Vec<CertRow>,
    hostname: String,
}

async fn page(
    state: &AppState,
    session: &Session,
    name: &str,
    status: StatusCode,
    notice: Option<String>,
    error: Option<(String, String)>,
) -> PageResult {
    let caller = session.caller.clone();
    let Json(domains) =
        controllers::domains::list(State(state.clone()), caller.clone(), Path(name.to_owned()))
            .await?;
    let Json(CertsView { auto, certs }) =
        controllers::certs::list(State(state.clone()), caller, Path(name.to_owned())).await?;
    let (error, hostname) = error.map_or((None, String::new()), |(e, h)| (Some(e), h));
    let page = DomainsPage {
        layout: session.layout(format!("{name} domains")),
        nav: AppNav::new(name, "/domains"),
        notice,
        error,
        domains: domains.into_iter().map(DomainRow::from).collect(),
        auto,
        certs: certs.into_iter().map(CertRow::from).collect(),
        hostname,
    };
    Ok(render(status, &page))
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> PageResult {
    page(&state, &session, &name, StatusCode::OK, None, None).await
}

#[derive(Deserialize)]
pub struct DomainForm {
    #[serde(default)]
    hostname: String,
}

pub async fn add(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    Form(form): Form<DomainForm>,
) -> PageResult {
    let hostname = form.hostname.trim().to_owned();
    let added = controllers::domains::create(
        State(state.clone()),
        session.caller.clone(),
        Path(name.clone()),
        ApiJson(AddDomain {
            hostname: hostname.clone(),
        }),
    )
    .await;
    match added {
        Ok((_, Json(domain))) => {
            let notice = format!(
                "Added {}: DNS is {}",
                domain.hostname,
                domain.dns_status.as_str()
            );
            page(&state, &session, &name, StatusCode::OK, Some(notice), None).await
        }
        Err(error) => {
            let (status, message) = inline(error);
            page(
                &state,
                &session,
                &name,
                status,
                None,
                Some((message, hostname)),
            )
            .await
        }
    }
}

pub async fn remove(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    Form(form): Form<DomainForm>,
) -> PageResult {
    let hostname = form.hostname.trim().to_owned();
    let removed = controllers::domains::destroy(
        State(state.clone()),
        session.caller.clone(),
        Path((name.clone(), hostname.clone())),
    )
    .await;
    match removed {
        Ok(_) => {
            let notice = format!("Removed {hostname}");
            page(&state, &session, &name, StatusCode::OK, Some(notice), None).await
        }
        Err(error) => {
            let (status, message) = inline(error);
            page(
                &state,
                &session,
                &name,
                status,
                None,
                Some((message, String::new())),
            )
            .await
        }
    }
}
