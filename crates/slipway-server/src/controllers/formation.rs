//! `ps`, `ps:scale`, `ps:resize`, `ps:restart`, `ps:stop`: the formation. Scaling never cuts
//! a release.

use axum::Json;
use axum::extract::{Path, State};
use slipway_store::App;
use slipway_types::api::{
    FormationInfo, FormationPatch, FormationView, RestartRequest, format_memory,
};
use slipway_types::app_json::MAX_QUANTITY;
use slipway_types::{ProcessType, parse_memory};

use crate::app::AppState;
use crate::auth::Caller;
use crate::deployer::{DeployError, Progress};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;

/// Memory a container gets when the formation does not say.
const DEFAULT_SIZE: i64 = 512 << 20;

async fn view(state: &AppState, app: &App) -> ApiResult<FormationView> {
    let release = state.store.current_release(app.id).await?;
    let formation = state
        .store
        .formation(app.id)
        .await?
        .into_iter()
        .map(|entry| FormationInfo {
            command: release
                .as_ref()
                .and_then(|r| r.processes.get(&entry.process).cloned()),
            process: entry.process.to_string(),
            quantity: entry.quantity,
            size: format_memory(entry.memory_bytes.unwrap_or(DEFAULT_SIZE)),
        })
        .collect();
    let mut processes = state
        .deployer
        .processes(app)
        .await
        .map_err(ApiError::internal)?;
    processes.extend(
        state
            .runs
            .processes(&app.name)
            .await
            .map_err(ApiError::internal)?,
    );
    Ok(FormationView {
        formation,
        processes,
    })
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<FormationView>> {
    let app = state.app_for(&caller, &name).await?;
    Ok(Json(view(&state, &app).await?))
}

/// Applies each update in turn and answers once the processes match, or with the first
/// failure (that update's formation is put back; earlier ones stay).
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(patch): ApiJson<FormationPatch>,
) -> ApiResult<Json<FormationView>> {
    let app = state.app_for(&caller, &name).await?;
    if patch.updates.is_empty() {
        return Err(ApiError::invalid(
            "no changes given: send {\"updates\": [{\"process\": \"web\", \"quantity\": 2}]}",
        ));
    }
    let _deploying = state.deployer.lock(&app.name).await;
    let formation = state.store.formation(app.id).await?;
    let release = state.store.current_release(app.id).await?;
    let mut changes = Vec::new();
    for update in &patch.updates {
        let process: ProcessType = update.process.parse()?;
        let known = formation.iter().find(|e| e.process == process);
        let in_release = release
            .as_ref()
            .is_some_and(|r| r.processes.contains_key(&process));
        if known.is_none() && !in_release || process.is_release() {
            return Err(ApiError::invalid(format!(
                "process type `{process}` is not in the app's Procfile: scale one of {}",
                known_types(&formation)
            )));
        }
        if let Some(quantity) = update.quantity
            && quantity > MAX_QUANTITY
        {
            return Err(ApiError::invalid(format!(
                "quantity {quantity} for `{process}` is too many: at most {MAX_QUANTITY}"
            )));
        }
        let memory = match &update.size {
            Some(size) => Some(parse_memory(size).map_err(ApiError::invalid)?),
            None => known.and_then(|e| e.memory_bytes),
        };
        let quantity = update
            .quantity
            .or(known.map(|e| e.quantity))
            .unwrap_or_default();
        changes.push((process, quantity, memory));
    }
    for (process, quantity, memory) in &changes {
        let detail = format!("{process}={quantity}");
        state
            .audit(
                &caller,
                "formation.update",
                app.name.as_str(),
                Some(&detail),
            )
            .await;
        state
            .deployer
            .scale(&app, process, *quantity, *memory, &Progress::none())
            .await
            .map_err(scale_error)?;
    }
    Ok(Json(view(&state, &app).await?))
}

pub async fn restart(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<RestartRequest>,
) -> ApiResult<Json<FormationView>> {
    let app = state.app_for(&caller, &name).await?;
    let process: Option<ProcessType> = request.process.as_deref().map(str::parse).transpose()?;
    let _deploying = state.deployer.lock(&app.name).await;
    if let Some(process) = &process {
        let formation = state.store.formation(app.id).await?;
        if !formation.iter().any(|e| e.process == *process) {
            return Err(ApiError::invalid(format!(
                "process type `{process}` is not in the formation: restart one of {}",
                known_types(&formation)
            )));
        }
    }
    state
        .audit(
            &caller,
            "formation.restart",
            app.name.as_str(),
            process.as_ref().map(ProcessType::as_str),
        )
        .await;
    state
        .deployer
        .restart(&app, process.as_ref(), &Progress::none())
        .await
        .map_err(scale_error)?;
    Ok(Json(view(&state, &app).await?))
}

fn known_types(formation: &[slipway_store::FormationEntry]) -> String {
    let names: Vec<String> = formation
        .iter()
        .map(|e| format!("`{}`", e.process))
        .collect();
    if names.is_empty() {
        "the types in the Procfile (push first)".to_owned()
    } else {
        names.join(", ")
    }
}

fn scale_error(error: DeployError) -> ApiError {
    match error {
        DeployError::Failed(reason) => ApiError::deploy_failed(format!(
            "{reason}; the processes that were running keep running"
        )),
        DeployError::Store(error) => error.into(),
    }
}
