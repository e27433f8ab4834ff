//! An app's add-ons and the backups of its Postgres ones: `/v1/apps/{app}/addons…`.
//! Creating or destroying an add-on sets or removes its config var through the same path as
//! `config:set`, so it cuts a patch release and rolls it out before answering.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use slipway_addons::{AddonError, AddonInstance, AddonKind};
use slipway_store::{Addon, App, Backup, NewAddon};
use slipway_types::api::{
    AddonChanged, AddonDetail, AddonInfo, BackupInfo, BackupStatus, BackupTrigger, CreateAddon,
    RestoreInfo,
};
use slipway_types::{ConfigKey, ConfigVars};

use crate::addons::{self, addon_info, backup_info};
use crate::app::AppState;
use crate::auth::Caller;
use crate::controllers::config::{ConfigChange, release_config};
use crate::deployer::network_name;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::runs::{self, RunRequest, Terminal};

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<AddonInfo>>> {
    let app = state.app_for(&caller, &name).await?;
    let addons = state.store.addons(app.id).await?;
    Ok(Json(addons.iter().map(addon_info).collect()))
}

/// Provisions the server, then sets its config var: `DATABASE_URL` / `REDIS_URL` for the
/// first of its kind, `<NAME>_URL` after. A server that does not come up is removed again
/// and nothing is stored.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<CreateAddon>,
) -> ApiResult<(StatusCode, Json<AddonChanged>)> {
    let app = state.app_for(&caller, &name).await?;
    let kind: AddonKind = body
        .kind
        .parse()
        .map_err(|error: AddonError| ApiError::invalid(error.to_string()))?;
    if let Some(name) = &body.name {
        AddonInstance::check_name(name).map_err(|error| ApiError::invalid(error.to_string()))?;
    }
    let existing = state.store.addons(app.id).await?;
    let name = body
        .name
        .unwrap_or_else(|| addons::default_name(kind, &existing));
    let _guard = state.addons.lock(app.id, &name).await;
    if state.store.addon(app.id, &name).await?.is_some() {
        return Err(ApiError::conflict(format!(
            "app `{}` already has an add-on named `{name}`: pick another with --as",
            app.name
        )));
    }
    let var = config_var(kind, &name, &existing, &state.store.config(app.id).await?)?;
    let labels = state.deployer.app_labels(&app.name);
    let instance = AddonInstance::new(
        kind,
        app.name.clone(),
        name.clone(),
        network_name(&app.name),
        labels.clone(),
    );
    instance
        .check()
        .map_err(|error| ApiError::invalid(error.to_string()))?;
    let sealed = state.addons.seal(app.id, &instance)?;
    let addon = state
        .store
        .create_addon(NewAddon {
            app_id: app.id,
            name: &name,
            kind: kind.as_str(),
            config_var: var.as_str(),
            sealed: &sealed,
        })
        .await?;
    tracing::info!(app = %app.name, addon = %name, %kind, "provisioning add-on");
    // A server that does not come up is removed by the provisioner; so is its row here.
    if let Err(error) = state.addons.provision(&instance, &labels).await {
        state.store.delete_addon(addon.id).await?;
        return Err(error.into());
    }
    let detail = format!("{name} ({kind}, {var})");
    let _deploying = state.deployer.lock(&app.name).await;
    let current = state.store.config(app.id).await?;
    let next = current.with_changes(&BTreeMap::from([(var.clone(), instance.url())]), &[])?;
    let change = ConfigChange {
        config: next,
        description: format!("Attach {name} ({var})"),
        action: "addons.create",
        detail: &detail,
    };
    let release = release_config(&state, &caller, &app, change).await?;
    tracing::info!(app = %app.name, addon = %name, %var, "add-on created");
    Ok((
        StatusCode::CREATED,
        Json(AddonChanged {
            addon: addon_info(&addon),
            release: release.map(|version| version.to_string()),
            final_backup: None,
        }),
    ))
}

/// The add-on with how its server is doing: running, version, size on disk, connections.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, addon)): Path<(String, String)>,
) -> ApiResult<Json<AddonDetail>> {
    let app = state.app_for(&caller, &name).await?;
    let addon = find(&state, &app, &addon).await?;
    let instance = state.addons.instance(&addon)?;
    let status = state.addons.status(&instance).await;
    Ok(Json(addons::addon_detail(&addon, status)))
}

/// Takes a final backup of a Postgres add-on (and stops, removing nothing, when that
/// fails), removes its config var with a release when it still holds the add-on's URL, then
/// removes the server and its volume.
pub async fn destroy(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, addon)): Path<(String, String)>,
) -> ApiResult<Json<AddonChanged>> {
    let app = state.app_for(&caller, &name).await?;
    let _guard = state.addons.lock(app.id, &addon).await;
    let addon = find(&state, &app, &addon).await?;
    let instance = state.addons.instance(&addon)?;
    let final_backup = match instance.kind {
        AddonKind::Postgres => {
            let backup = addons::take_backup(&state, &app, &instance, BackupTrigger::Final)
                .await
                .map_err(|error| {
                    ApiError::conflict(format!(
                        "{error}; nothing was removed: destroy it once the database runs again"
                    ))
                })?;
            Some(backup_info(&backup))
        }
        AddonKind::Redis => None,
    };
    let detail = format!("{} ({}, {})", addon.name, addon.kind, addon.config_var);
    let release = {
        let _deploying = state.deployer.lock(&app.name).await;
        let current = state.store.config(app.id).await?;
        let key: ConfigKey = addon.config_var.parse()?;
        // A var changed by hand since is the user's now, and stays.
        if current.get(&key) == Some(instance.url().as_str()) {
            let change = ConfigChange {
                config: current.with_changes(&BTreeMap::new(), &[key])?,
                description: format!("Detach {} ({})", addon.name, addon.config_var),
                action: "addons.destroy",
                detail: &detail,
            };
            release_config(&state, &caller, &app, change).await?
        } else {
            state
                .audit(&caller, "addons.destroy", app.name.as_str(), Some(&detail))
                .await;
            None
        }
    };
    state.addons.remove(&instance).await?;
    state.store.delete_addon(addon.id).await?;
    tracing::info!(app = %app.name, addon = %addon.name, "add-on destroyed");
    Ok(Json(AddonChanged {
        addon: addon_info(&addon),
        release: release.map(|version| version.to_string()),
        final_backup,
    }))
}

/// Newest first. The backups of a destroyed add-on stay listed under its name.
pub async fn backups(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, addon)): Path<(String, String)>,
) -> ApiResult<Json<Vec<BackupInfo>>> {
    let app = state.app_for(&caller, &name).await?;
    let existing = state.store.addon(app.id, &addon).await?;
    if let Some(existing) = &existing {
        require_postgres(existing)?;
    }
    let backups = state.store.backups(app.id, Some(&addon)).await?;
    if existing.is_none() && backups.is_empty() {
        return Err(no_such_addon(&app, &addon));
    }
    Ok(Json(backups.iter().map(backup_info).collect()))
}

/// Dumps the database now. A failure is an error here and stays listed as failed.
pub async fn capture(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, addon)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<BackupInfo>)> {
    let app = state.app_for(&caller, &name).await?;
    let _guard = state.addons.lock(app.id, &addon).await;
    let addon = find(&state, &app, &addon).await?;
    require_postgres(&addon)?;
    let instance = state.addons.instance(&addon)?;
    let outcome = addons::take_backup(&state, &app, &instance, BackupTrigger::Manual).await;
    let backup = outcome?;
    let detail = format!("{} {}", addon.name, backup.label());
    state
        .audit(&caller, "addons.backup", app.name.as_str(), Some(&detail))
        .await;
    Ok((StatusCode::CREATED, Json(backup_info(&backup))))
}

/// Replaces the database's contents with a backup (`latest`: the add-on's newest
/// successful one). Any of the app's backups can be restored into any of its Postgres
/// add-ons, the final backup of a destroyed one included.
pub async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, addon, id)): Path<(String, String, String)>,
) -> ApiResult<Json<RestoreInfo>> {
    let app = state.app_for(&caller, &name).await?;
    let _guard = state.addons.lock(app.id, &addon).await;
    let addon = find(&state, &app, &addon).await?;
    require_postgres(&addon)?;
    let backup = pick_backup(&state, &app, &addon, &id).await?;
    if backup.status != BackupStatus::Succeeded {
        return Err(ApiError::conflict(format!(
            "backup {} {}: restore one that succeeded (see pg:backups)",
            backup.label(),
            match backup.status {
                BackupStatus::Running => "is still running",
                BackupStatus::Failed | BackupStatus::Succeeded => "failed",
            }
        )));
    }
    let instance = state.addons.instance(&addon)?;
    state.addons.restore(&instance, &backup).await?;
    let detail = format!("{} into {}", backup.label(), addon.name);
    state
        .audit(&caller, "addons.restore", app.name.as_str(), Some(&detail))
        .await;
    tracing::info!(app = %app.name, addon = %addon.name, backup = %backup.label(), "backup restored");
    Ok(Json(RestoreInfo {
        addon: addon.name,
        backup: backup_info(&backup),
    }))
}

/// An attached one-off process (`pg:psql`) in the Postgres image, connected to the add-on.
pub async fn psql_request(
    state: &AppState,
    app: &App,
    addon: &str,
    command: Vec<String>,
    tty: Option<Terminal>,
) -> ApiResult<RunRequest> {
    runs::check_command(&command).map_err(ApiError::bad_request)?;
    let addon = find(state, app, addon).await?;
    require_postgres(&addon)?;
    let instance = state.addons.instance(&addon)?;
    Ok(state.addons.psql_run(&instance, command, tty))
}

async fn pick_backup(state: &AppState, app: &App, addon: &Addon, id: &str) -> ApiResult<Backup> {
    if id == "latest" {
        let backups = state.store.backups(app.id, Some(&addon.name)).await?;
        return backups
            .into_iter()
            .find(|b| b.status == BackupStatus::Succeeded)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "add-on `{}` has no successful backup to restore: take one with pg:backups:capture",
                    addon.name
                ))
            });
    }
    let missing = || {
        ApiError::not_found(format!(
            "backup `{id}` not found for app `{}`: see pg:backups",
            app.name
        ))
    };
    let (prefix, number) = addons::parse_backup_id(id).ok_or_else(missing)?;
    state
        .store
        .backup(app.id, number)
        .await?
        .filter(|backup| backup.trigger.prefix() == prefix)
        .ok_or_else(missing)
}

/// The first add-on of a kind gets the kind's var; later ones, or one whose kind's var is
/// set already (by hand, say), get `<NAME>_URL`. A var that is set is never overwritten.
fn config_var(
    kind: AddonKind,
    name: &str,
    existing: &[Addon],
    config: &ConfigVars,
) -> ApiResult<ConfigKey> {
    let taken = |var: &str| {
        existing.iter().any(|addon| addon.config_var == var)
            || config.iter().any(|(key, _)| key.as_str() == var)
    };
    let var = if taken(kind.default_var()) {
        addons::named_var(name)
    } else {
        kind.default_var().to_owned()
    };
    if taken(&var) {
        return Err(ApiError::conflict(format!(
            "config var `{var}` is already set: unset it, or give the add-on another name with --as"
        )));
    }
    Ok(var.parse()?)
}

async fn find(state: &AppState, app: &App, name: &str) -> ApiResult<Addon> {
    state
        .store
        .addon(app.id, name)
        .await?
        .ok_or_else(|| no_such_addon(app, name))
}

fn no_such_addon(app: &App, name: &str) -> ApiError {
    ApiError::not_found(format!(
        "app `{}` has no add-on `{name}`: see `slipway addons`",
        app.name
    ))
}

fn require_postgres(addon: &Addon) -> ApiResult<()> {
    if addon.kind == AddonKind::Postgres.as_str() {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "add-on `{}` is {}: backups and psql are for postgres add-ons",
            addon.name, addon.kind
        )))
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;
    use uuid::Uuid;

    use super::*;

    fn addon(name: &str, var: &str) -> Addon {
        Addon {
            id: Uuid::now_v7(),
            app_id: Uuid::nil(),
            name: name.to_owned(),
            kind: "postgres".to_owned(),
            config_var: var.to_owned(),
            sealed: Vec::new(),
            created_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn var(kind: AddonKind, name: &str, existing: &[Addon], config: &[(&str, &str)]) -> String {
        let config: ConfigVars = config
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), (*v).to_owned()))
            .collect();
        match config_var(kind, name, existing, &config) {
            Ok(key) => key.to_string(),
            Err(error) => format!("{error:?}"),
        }
    }

    #[test]
    fn the_first_of_a_kind_gets_its_default_var_and_later_ones_their_name() {
        let pg = AddonKind::Postgres;
        assert_eq!(var(pg, "main", &[], &[]), "DATABASE_URL");
        assert_eq!(var(AddonKind::Redis, "redis-1", &[], &[]), "REDIS_URL");
        let first = [addon("postgres-1", "DATABASE_URL")];
        assert_eq!(var(pg, "postgres-2", &first, &[]), "POSTGRES_2_URL");
        assert_eq!(var(AddonKind::Redis, "redis-1", &first, &[]), "REDIS_URL");
        // A DATABASE_URL set by hand is left alone.
        let by_hand = [("DATABASE_URL", "postgres://elsewhere/db")];
        assert_eq!(var(pg, "postgres-1", &[], &by_hand), "POSTGRES_1_URL");
    }

    #[test]
    fn a_var_that_is_taken_is_refused() {
        let first = [addon("postgres-1", "DATABASE_URL")];
        let refused = var(AddonKind::Postgres, "cache", &first, &[("CACHE_URL", "x")]);
        assert!(
            refused.contains("config var `CACHE_URL` is already set"),
            "{refused}"
        );
    }
}
