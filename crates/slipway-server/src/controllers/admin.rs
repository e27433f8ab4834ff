//! The admin API, `/v1/admin/…`: users, every app, the audit log, the platform's status and
//! settings. The route table restricts all of it to admins with an admin-scope token.

use std::collections::BTreeMap;
use std::path::Path as FsPath;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use slipway_store::{AuditFilter, Role, User};
use slipway_types::api::{
    AdminAppInfo, AuditEntry, CertExpiry, CreateUser, CreatedUser, DiskUse, FailedRelease,
    PlatformStatus, ReleaseStatus, UserInfo,
};
use time::OffsetDateTime;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::passwords;

/// The most audit events one call returns.
const MAX_AUDIT_EVENTS: i64 = 10_000;

pub async fn users(State(state): State<AppState>) -> ApiResult<Json<Vec<UserInfo>>> {
    let users = state.store.users().await?;
    Ok(Json(users.iter().map(user_info).collect()))
}

/// Creates a user; without a password, makes a random one and returns it once.
pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<CreatedUser>)> {
    let email = body.email.trim().to_ascii_lowercase();
    check_email(&email)?;
    let role = match body.role.as_deref() {
        None | Some("member") => Role::Member,
        Some("admin") => Role::Admin,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "role `{other}` is unknown: use admin or member"
            )));
        }
    };
    let generated = body.password.is_none();
    let password = match body.password {
        Some(password) => {
            passwords::check_strength(&password, &email).map_err(ApiError::invalid)?;
            password
        }
        None => hex::encode(rand::random::<[u8; 16]>()),
    };
    let hashing = password.clone();
    let hash = tokio::task::spawn_blocking(move || passwords::hash(&hashing))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let user = state.store.create_user(&email, role).await?;
    state.store.set_password_hash(user.id, &hash).await?;
    state
        .audit(&caller, "admin.users.create", &email, Some(role.as_str()))
        .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user: user_info(&user),
            password: generated.then_some(password),
        }),
    ))
}

pub async fn remove_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(email): Path<String>,
) -> ApiResult<StatusCode> {
    let email = email.trim().to_ascii_lowercase();
    let user = state.store.user_by_email(&email).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no user `{email}`: `slipway admin:users` lists them"
        ))
    })?;
    state.store.remove_user(user.id).await?;
    state
        .audit(&caller, "admin.users.remove", &email, None)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn apps(State(state): State<AppState>) -> ApiResult<Json<Vec<AdminAppInfo>>> {
    let mut infos = Vec::new();
    let owners: BTreeMap<_, _> = state
        .store
        .users()
        .await?
        .into_iter()
        .map(|user| (user.id, user.email))
        .collect();
    for app in state.store.apps().await? {
        let current = state.store.current_release(app.id).await?;
        let (containers, memory_bytes) = state
            .deployer
            .usage(&app)
            .await
            .map_err(ApiError::internal)?;
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        infos.push(AdminAppInfo {
            owner: owners.get(&app.owner).cloned().unwrap_or_default(),
            current_release: current.map(|release| release.version.to_string()),
            containers,
            memory_bytes,
            addons: count(state.store.addons(app.id).await?.len()),
            domains: count(state.store.domains(Some(app.id)).await?.len()),
            name: app.name.to_string(),
        });
    }
    Ok(Json(infos))
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    /// How many of the latest events [default: 100].
    #[serde(default)]
    limit: Option<i64>,
    /// Only events done to this app (or other target).
    #[serde(default)]
    app: Option<String>,
    /// Only events by this user (email).
    #[serde(default)]
    user: Option<String>,
}

pub async fn audit(
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_AUDIT_EVENTS).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit {limit} is out of range: use 1 to {MAX_AUDIT_EVENTS}"
        )));
    }
    let user = query.user.map(|email| email.trim().to_ascii_lowercase());
    let events = state
        .store
        .audit_events(AuditFilter {
            limit,
            actor: user.as_deref(),
            target: query.app.as_deref(),
        })
        .await?;
    Ok(Json(
        events
            .into_iter()
            .map(|event| AuditEntry {
                at: event.at,
                actor: event.actor,
                action: event.action,
                target: event.target,
                source_ip: event.source_ip,
                detail: event.detail,
                outcome: event.outcome,
            })
            .collect(),
    ))
}

pub async fn status(State(state): State<AppState>) -> ApiResult<Json<PlatformStatus>> {
    let (docker, images_bytes, volumes_bytes) = match state.deployer.engine().system_info().await {
        Ok(info) => (info.version, info.images_bytes, info.volumes_bytes),
        Err(error) => (format!("unreachable: {error}"), 0, None),
    };
    let data_dir = state.config.data_dir.clone();
    let data_dir_bytes = tokio::task::spawn_blocking(move || dir_size(&data_dir))
        .await
        .map_err(ApiError::internal)?;
    let since = OffsetDateTime::now_utc() - time::Duration::days(1);
    let apps = state.store.apps().await?;
    let mut failed_releases = Vec::new();
    for app in &apps {
        for release in state.store.releases(app.id).await? {
            if release.status == ReleaseStatus::Failed && release.created_at >= since {
                failed_releases.push(FailedRelease {
                    app: app.name.to_string(),
                    version: release.version.to_string(),
                    description: release.description.clone(),
                    at: release.created_at,
                });
            }
        }
    }
    let certificates = state
        .store
        .certificates()
        .await?
        .into_iter()
        .map(|cert| CertExpiry {
            domain: cert.name,
            status: cert.status,
            not_after: cert.facts.map(|facts| facts.not_after),
        })
        .collect();
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(Json(PlatformStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_seconds: state.started.elapsed().as_secs(),
        docker,
        disk: DiskUse {
            images_bytes,
            volumes_bytes,
            data_dir_bytes,
        },
        apps: count(apps.len()),
        users: count(state.store.users().await?.len()),
        certificates,
        failed_releases,
    }))
}

/// The settings the server runs with, as `--flag` → value (the database URL without its
/// password).
pub async fn settings(State(state): State<AppState>) -> Json<BTreeMap<String, String>> {
    let config = &state.config;
    let shown = |value: Option<String>| value.unwrap_or_else(|| "none".to_owned());
    let path = |value: &Option<std::path::PathBuf>| value.as_ref().map(|p| p.display().to_string());
    let mut settings = BTreeMap::new();
    let mut set = |flag: &str, value: String| {
        settings.insert(format!("--{flag}"), value);
    };
    set("data-dir", config.data_dir.display().to_string());
    set(
        "database-url",
        crate::config::redact_url(&config.database_url),
    );
    set("api-listen", config.api_listen.to_string());
    set("http-listen", config.http_listen.to_string());
    set("https-listen", config.https_listen.to_string());
    set("apps-domain", config.apps_domain.clone());
    set("stack-image", config.stack_image.clone());
    set("build-ca-bundle", shown(path(&config.build_ca_bundle)));
    set("drain-ca-bundle", shown(path(&config.drain_ca_bundle)));
    set("build-concurrency", config.build_concurrency.to_string());
    set("log-lines", config.log_lines.to_string());
    set(
        "release-timeout",
        format!("{}s", config.release_timeout.as_secs()),
    );
    set("postgres-image", config.postgres_image.clone());
    set("redis-image", config.redis_image.clone());
    set(
        "backup-retention",
        format!("{}d", config.backup_retention.as_secs() / 86_400),
    );
    set(
        "acme-directory",
        shown(config.acme.as_ref().map(|acme| acme.directory.clone())),
    );
    set(
        "acme-email",
        shown(config.acme.as_ref().and_then(|acme| acme.email.clone())),
    );
    set(
        "dns-listen",
        shown(config.dns_listen.map(|a| a.to_string())),
    );
    set("dns-zones", config.dns_zones.join(","));
    set("public-ip", config.public_ip.to_string());
    set(
        "dns-resolver",
        shown(config.dns_resolver.map(|a| a.to_string())),
    );
    Json(settings)
}

fn user_info(user: &User) -> UserInfo {
    UserInfo {
        email: user.email.clone(),
        role: user.role.as_str().to_owned(),
        created_at: user.created_at,
    }
}

/// A plausible email: one `@` with text on both sides, a dot in the domain, no spaces.
fn check_email(email: &str) -> ApiResult<()> {
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        });
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "email `{email}` is invalid: use an address like dev@example.com"
        )))
    }
}

/// Bytes under `dir`, not following symlinks; unreadable entries count as nothing.
fn dir_size(dir: &FsPath) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) if meta.is_file() => meta.len(),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        for good in ["dev@example.com", "a.b+c@sub.example.org"] {
            assert!(check_email(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "dev",
            "@example.com",
            "dev@",
            "dev@localhost",
            "d ev@example.com",
            "a@b@c.com",
            "dev@.example.com",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }
}
