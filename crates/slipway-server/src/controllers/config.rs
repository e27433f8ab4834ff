use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use semver::Version;
use slipway_store::App;
use slipway_types::api::{ConfigChanged, ConfigPatch};
use slipway_types::{ConfigKey, ConfigVars};

use crate::app::AppState;
use crate::auth::Caller;
use crate::deployer::Progress;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;

fn to_map(config: &ConfigVars) -> BTreeMap<String, String> {
    config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_owned()))
        .collect()
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<BTreeMap<String, String>>> {
    let app = state.app_for(&caller, &name).await?;
    Ok(Json(to_map(&state.store.config(app.id).await?)))
}

/// Sets and unsets config vars. When the values change and the app has a release, a patch
/// release with the same image and the new config is cut and rolled out before answering.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(patch): ApiJson<ConfigPatch>,
) -> ApiResult<Json<ConfigChanged>> {
    let app = state.app_for(&caller, &name).await?;
    if patch.is_empty() {
        return Err(ApiError::invalid(
            "no config vars given: send {\"KEY\": \"value\"} to set or {\"KEY\": null} to unset",
        ));
    }
    let mut set = BTreeMap::new();
    let mut unset = Vec::new();
    for (key, value) in patch {
        let key: ConfigKey = key.parse()?;
        match value {
            Some(value) => {
                set.insert(key, value);
            }
            None => unset.push(key),
        }
    }
    let _deploying = state.deployer.lock(&app.name).await;
    let current = state.store.config(app.id).await?;
    let next = current.with_changes(&set, &unset)?;
    if next == current {
        return Ok(Json(ConfigChanged {
            config: to_map(&current),
            release: None,
        }));
    }
    let keys: Vec<&str> = set.keys().chain(&unset).map(ConfigKey::as_str).collect();
    let change = ConfigChange {
        config: next.clone(),
        description: describe(&set, &unset),
        action: "config.update",
        detail: &keys.join(","),
    };
    let release = release_config(&state, &caller, &app, change).await?;
    Ok(Json(ConfigChanged {
        config: to_map(&next),
        release: release.map(|version| version.to_string()),
    }))
}

/// A change of an app's config: the release that carries it describes it, the audit log
/// records it.
pub struct ConfigChange<'a> {
    pub config: ConfigVars,
    pub description: String,
    pub action: &'a str,
    pub detail: &'a str,
}

/// Makes `change.config` the app's config. Before the first release it is only stored (the
/// first deploy uses it); after, a patch release with the running image and the new config
/// is cut and rolled out before this returns, and its version returned. The caller holds the
/// app's deploy lock and knows the config differs.
pub async fn release_config(
    state: &AppState,
    caller: &Caller,
    app: &App,
    change: ConfigChange<'_>,
) -> ApiResult<Option<Version>> {
    let next = change.config;
    let rollout = match state.store.current_release(app.id).await? {
        None => {
            state.store.set_config(app.id, &next).await?;
            None
        }
        Some(running) => {
            let release = state
                .cut_patch_release(app, &running, &next, change.description, &caller.user.email)
                .await?;
            let version = release.version.clone();
            Some((running, release, version))
        }
    };
    state
        .audit(
            caller,
            change.action,
            app.name.as_str(),
            Some(change.detail),
        )
        .await;
    let Some((running, release, version)) = rollout else {
        return Ok(None);
    };
    let outcome = state
        .deployer
        .deploy(app, &release, &Progress::none())
        .await;
    outcome.map_err(|e| {
        ApiError::deploy_failed(format!(
            "release {version} failed: {e}; {} keeps serving",
            running.version
        ))
    })?;
    Ok(Some(version))
}

fn describe(set: &BTreeMap<ConfigKey, String>, unset: &[ConfigKey]) -> String {
    let join = |keys: Vec<&str>| keys.join(", ");
    let set_keys: Vec<&str> = set.keys().map(ConfigKey::as_str).collect();
    let unset_keys: Vec<&str> = unset.iter().map(ConfigKey::as_str).collect();
    match (set_keys.is_empty(), unset_keys.is_empty()) {
        (false, true) => format!("Set {} config vars", join(set_keys)),
        (true, false) => format!("Unset {} config vars", join(unset_keys)),
        _ => format!(
            "Set {} and unset {} config vars",
            join(set_keys),
            join(unset_keys)
        ),
    }
}
