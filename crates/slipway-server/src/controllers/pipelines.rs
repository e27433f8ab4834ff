//! Pipelines: `/v1/pipelines…` group apps by stage, and `POST /v1/apps/{app}/promote` gives
//! a staging app's release, image and all, to the production apps of its pipeline: built once,
//! run many.
//!
//! Who may do what: any user creates a pipeline; its owner (or an admin) destroys it; putting
//! an app in a pipeline or taking it out needs owner rights on the app; a promotion needs
//! write access to the staging app and to every production app it releases to. A pipeline is
//! visible to its owner, admins and whoever may use one of its apps.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use slipway_store::{App, NewRelease, Pipeline, PipelineMember, Release, Role};
use slipway_types::api::ReleaseStatus;
use slipway_types::pipeline::{
    AddPipelineApp, CreatePipeline, PipelineApp, PipelineInfo, PromoteRequest, PromoteResult,
    Promotion,
};
use slipway_types::{AppName, Bump, PipelineName, ProcessType, Stage, next_version, parse_memory};

use crate::app::AppState;
use crate::auth::{Caller, refusal};
use crate::deployer::Progress;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreatePipeline>,
) -> ApiResult<(StatusCode, Json<PipelineInfo>)> {
    let name: PipelineName = body
        .name
        .parse()
        .map_err(|error: slipway_types::PipelineError| ApiError::invalid(error.to_string()))?;
    let pipeline = state.store.create_pipeline(&name, caller.user.id).await?;
    state
        .audit(&caller, "pipelines.create", name.as_str(), None)
        .await;
    Ok((
        StatusCode::CREATED,
        Json(view(&state, &caller, &pipeline).await?.0),
    ))
}

/// The pipelines the caller may see, by name.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<PipelineInfo>>> {
    let mut shown = Vec::new();
    for pipeline in state.store.pipelines().await? {
        let (info, visible) = view(&state, &caller, &pipeline).await?;
        if visible {
            shown.push(info);
        }
    }
    Ok(Json(shown))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<PipelineInfo>> {
    let (_, info) = find(&state, &caller, &name).await?;
    Ok(Json(info))
}

/// Deletes the pipeline; its apps leave it and keep running.
pub async fn destroy(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let (pipeline, _) = find(&state, &caller, &name).await?;
    if !is_admin(&caller) && pipeline.owner != caller.user.id {
        return Err(ApiError::with_code(
            StatusCode::FORBIDDEN,
            "owner_only",
            format!("only the owner of pipeline `{name}` or an admin may destroy it"),
        ));
    }
    state.store.delete_pipeline(pipeline.id).await?;
    state
        .audit(&caller, "pipelines.destroy", pipeline.name.as_str(), None)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Puts an app the caller owns in the pipeline at a stage.
pub async fn add_app(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<AddPipelineApp>,
) -> ApiResult<(StatusCode, Json<PipelineInfo>)> {
    let stage: Stage = body
        .stage
        .parse()
        .map_err(|error: slipway_types::PipelineError| ApiError::invalid(error.to_string()))?;
    let (pipeline, _) = find(&state, &caller, &name).await?;
    let app = state.app_for(&caller, &body.app).await?;
    if !caller.owns(&app) {
        return Err(refusal::owner_only(app.name.as_str()));
    }
    if let Some((current, stage)) = state.store.app_pipeline(app.id).await? {
        return Err(ApiError::conflict(format!(
            "app `{}` is already in pipeline `{}` as a {stage} app: take it out first with `slipway pipelines:remove -a {}`",
            app.name, current.name, app.name
        )));
    }
    state
        .store
        .add_pipeline_app(pipeline.id, app.id, stage)
        .await?;
    let detail = format!("{} as {stage}", app.name);
    state
        .audit(
            &caller,
            "pipelines.add",
            pipeline.name.as_str(),
            Some(&detail),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(view(&state, &caller, &pipeline).await?.0),
    ))
}

/// Takes an app out of the pipeline. The route table has already checked owner rights on it.
pub async fn remove_app(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, app_name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = state.app_for(&caller, &app_name).await?;
    let (pipeline, _) = find(&state, &caller, &name).await?;
    match state.store.app_pipeline(app.id).await? {
        Some((current, _)) if current.id == pipeline.id => {}
        _ => {
            return Err(ApiError::not_found(format!(
                "app `{app_name}` is not in pipeline `{name}`"
            )));
        }
    }
    state.store.remove_pipeline_app(app.id).await?;
    state
        .audit(
            &caller,
            "pipelines.remove",
            pipeline.name.as_str(),
            Some(app.name.as_str()),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Promotes the staging app's current release to the production apps of its pipeline (those
/// named in `to`, else all), one after the other. Each gets a release of its own: the same
/// image under its own name, its own config, the next version of its own history, and the
/// normal release phase and rolling replacement. Refused before anything changes when the
/// staging release is missing, failed or still rolling out, or a target is not a production
/// app of the pipeline or not the caller's to release.
pub async fn promote(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<PromoteRequest>,
) -> ApiResult<Json<PromoteResult>> {
    let source = state.app_for(&caller, &name).await?;
    let (pipeline, stage) = state.store.app_pipeline(source.id).await?.ok_or_else(|| {
        ApiError::conflict(format!(
            "app `{name}` is not in a pipeline: add it with `slipway pipelines:add {name} --pipeline NAME --stage staging`"
        ))
    })?;
    if stage != Stage::Staging {
        return Err(ApiError::conflict(format!(
            "app `{name}` is a production app of pipeline `{}`: promote from its staging app",
            pipeline.name
        )));
    }
    let members = state.store.pipeline_apps(pipeline.id).await?;
    let targets = targets(&pipeline, &members, &request.to)?;
    let mut apps = Vec::with_capacity(targets.len());
    for target in targets {
        let app = usable(&state, &caller, &target.app).await?.ok_or_else(|| {
            ApiError::with_code(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "you may not release to app `{}`: promoting from `{name}` needs access to both apps",
                    target.app
                ),
            )
        })?;
        apps.push(app);
    }
    let release = promotable(&state, &source).await?;
    if !state.deployer.has_image(&release.image).await {
        return Err(ApiError::conflict(format!(
            "the image of release {} of `{name}` was pruned: push to `{name}` again",
            release.version
        )));
    }
    let mut promoted: Vec<Promotion> = Vec::new();
    for app in &apps {
        match promote_to(&state, &caller, &source, &release, app).await {
            Ok(cut) => promoted.push(Promotion {
                app: app.name.to_string(),
                version: cut.version.to_string(),
                description: cut.description,
                image: cut.image,
            }),
            Err(error) if promoted.is_empty() => return Err(error),
            Err(error) => {
                let done: Vec<String> = promoted
                    .iter()
                    .map(|p| format!("`{}` got {}", p.app, p.version))
                    .collect();
                return Err(ApiError::deploy_failed(format!(
                    "{}; already promoted: {}",
                    error.message(),
                    done.join(", ")
                )));
            }
        }
    }
    Ok(Json(PromoteResult {
        pipeline: pipeline.name.to_string(),
        from: source.name.to_string(),
        version: release.version.to_string(),
        promoted,
    }))
}

/// The production apps a promotion releases to: those named, each checked, or every one.
fn targets<'m>(
    pipeline: &Pipeline,
    members: &'m [PipelineMember],
    named: &[String],
) -> ApiResult<Vec<&'m PipelineMember>> {
    let production = |member: &&PipelineMember| member.stage == Stage::Production;
    if named.is_empty() {
        let all: Vec<&PipelineMember> = members.iter().filter(production).collect();
        if all.is_empty() {
            return Err(ApiError::conflict(format!(
                "pipeline `{0}` has no production app: add one with `slipway pipelines:add APP --pipeline {0} --stage production`",
                pipeline.name
            )));
        }
        return Ok(all);
    }
    let mut chosen: Vec<&PipelineMember> = Vec::new();
    for name in named {
        let member = members
            .iter()
            .filter(production)
            .find(|member| member.app.as_str() == name)
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "app `{name}` is not a production app of pipeline `{}`",
                    pipeline.name
                ))
            })?;
        if !chosen.iter().any(|c| c.app_id == member.app_id) {
            chosen.push(member);
        }
    }
    Ok(chosen)
}

/// The staging app's current release, when it may be promoted: it exists, went live, and no
/// newer release of the app failed or is still rolling out (promoting would then ship
/// something other than what staging last tried).
async fn promotable(state: &AppState, source: &App) -> ApiResult<Release> {
    let name = &source.name;
    let current = state
        .store
        .current_release(source.id)
        .await?
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "app `{name}` has no release to promote: push to it first"
            ))
        })?;
    let newest = state.store.releases(source.id).await?.into_iter().next();
    let refused = |release: &Release, what: &str| {
        let why = release
            .status_reason
            .as_deref()
            .map(|reason| format!(" ({reason})"))
            .unwrap_or_default();
        ApiError::conflict(format!(
            "release {} of `{name}` {what}{why}: promote once staging runs a good release",
            release.version
        ))
    };
    if current.status == ReleaseStatus::Failed {
        return Err(refused(&current, "failed"));
    }
    match newest {
        Some(newest) if newest.id != current.id && newest.status == ReleaseStatus::Failed => {
            Err(refused(&newest, "failed"))
        }
        Some(newest) if newest.id != current.id && newest.status == ReleaseStatus::Pending => {
            Err(refused(&newest, "is still rolling out"))
        }
        _ => Ok(current),
    }
}

/// Cuts and rolls out the promoted release in one production app, under its deploy lock.
async fn promote_to(
    state: &AppState,
    caller: &Caller,
    source: &App,
    from: &Release,
    target: &App,
) -> ApiResult<Release> {
    let _deploying = state.deployer.lock(&target.name).await;
    let versions = state.store.versions(target.id).await?;
    let version = next_version(&versions, bump(state, source, from, target).await?);
    let image = format!("slipway/{}:{version}", target.name);
    // A second name in the production app's repository: production prunes and destroys its
    // own images and never depends on staging keeping one.
    state
        .deployer
        .engine()
        .tag_image(&from.image, &image)
        .await
        .map_err(ApiError::internal)?;
    if versions.is_empty() {
        first_formation(state, target, from).await?;
    }
    let types: Vec<ProcessType> = from
        .processes
        .keys()
        .filter(|process| !process.is_release())
        .cloned()
        .collect();
    state.store.ensure_formation(target.id, &types).await?;
    let previous = state.store.current_release(target.id).await?;
    let release = state
        .store
        .create_release(
            NewRelease {
                app_id: target.id,
                version: version.clone(),
                image,
                config: state.store.config(target.id).await?,
                processes: from.processes.clone(),
                app_json: from.app_json.clone(),
                commit: from.commit.clone(),
                description: format!("Promoted from {} {}", source.name, from.version),
                created_by: caller.user.email.clone(),
            },
            None,
        )
        .await?;
    let detail = format!("{} {} as {version}", source.name, from.version);
    state
        .audit(
            caller,
            "pipelines.promote",
            target.name.as_str(),
            Some(&detail),
        )
        .await;
    tracing::info!(app = %target.name, from = %source.name, %version, "promoting");
    state
        .deployer
        .deploy(target, &release, &Progress::none())
        .await
        .map_err(|error| {
            let keeps = previous.map_or_else(String::new, |previous| {
                format!("; {} keeps serving", previous.version)
            });
            ApiError::deploy_failed(format!(
                "release {version} of `{}` failed: {error}{keeps}",
                target.name
            ))
        })?;
    Ok(state
        .store
        .release_by_id(release.id)
        .await?
        .unwrap_or(release))
}

/// A promotion deploys new code to production, so the version follows the rule of a push
/// (SPEC §5): the commits production has not run yet, read from the staging app's repository,
/// decide the bump, Conventional-Commits style. When they cannot be read the bump is minor.
async fn bump(state: &AppState, source: &App, from: &Release, target: &App) -> ApiResult<Bump> {
    let Some(commit) = &from.commit else {
        return Ok(Bump::Minor);
    };
    let since = state.store.last_deployed_commit(target.id).await?;
    let messages = state
        .repos
        .reader(&source.name)
        .messages(since.as_deref(), commit)
        .await;
    Ok(match messages {
        Ok(messages) => Bump::for_messages(messages.iter().map(String::as_str)),
        Err(error) => {
            tracing::warn!(app = %target.name, %error, "reading the promoted commits failed: bumping minor");
            Bump::Minor
        }
    })
}

/// On a production app's first release, app.json's `formation` sets quantities and sizes, as
/// on an app's first push.
async fn first_formation(state: &AppState, target: &App, from: &Release) -> ApiResult<()> {
    for (process, spec) in &from.app_json.formation {
        let quantity = spec.quantity.unwrap_or(u32::from(process.is_web()));
        let memory = spec
            .size
            .as_deref()
            .map(parse_memory)
            .transpose()
            .map_err(ApiError::invalid)?;
        state
            .store
            .set_formation(target.id, process, quantity, memory)
            .await?;
    }
    Ok(())
}

/// The pipeline by name, when the caller may see it; else the same 404 as a missing one.
async fn find(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> ApiResult<(Pipeline, PipelineInfo)> {
    let not_found = || {
        ApiError::not_found(format!(
            "pipeline `{name}` not found: `slipway pipelines` lists yours"
        ))
    };
    let parsed: PipelineName = name.parse().map_err(|_| not_found())?;
    let pipeline = state.store.pipeline(&parsed).await?.ok_or_else(not_found)?;
    let (info, visible) = view(state, caller, &pipeline).await?;
    if visible {
        Ok((pipeline, info))
    } else {
        Err(not_found())
    }
}

fn is_admin(caller: &Caller) -> bool {
    caller.user.role == Role::Admin
}

/// The app, when the caller may use it (owner, collaborator or admin).
async fn usable(state: &AppState, caller: &Caller, name: &AppName) -> ApiResult<Option<App>> {
    let Some(app) = state.store.app(name).await? else {
        return Ok(None);
    };
    let allowed = caller.owns(&app) || state.store.is_collaborator(app.id, caller.user.id).await?;
    Ok(allowed.then_some(app))
}

/// The pipeline as the caller sees it, and whether they may see it at all: its owner, admins
/// and whoever may use one of its apps do.
async fn view(
    state: &AppState,
    caller: &Caller,
    pipeline: &Pipeline,
) -> ApiResult<(PipelineInfo, bool)> {
    let owner = state
        .store
        .user(pipeline.owner)
        .await?
        .map(|user| user.email)
        .unwrap_or_default();
    let mut apps = Vec::new();
    let mut visible = is_admin(caller) || pipeline.owner == caller.user.id;
    for member in state.store.pipeline_apps(pipeline.id).await? {
        let usable = usable(state, caller, &member.app).await?;
        visible |= usable.is_some();
        let current_release = match usable {
            Some(app) => state
                .store
                .current_release(app.id)
                .await?
                .map(|release| release.version.to_string()),
            None => None,
        };
        apps.push(PipelineApp {
            app: member.app.to_string(),
            stage: member.stage,
            current_release,
        });
    }
    let info = PipelineInfo {
        name: pipeline.name.to_string(),
        owner,
        created_at: pipeline.created_at,
        apps,
    };
    Ok((info, visible))
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn member(app: &str, stage: Stage) -> PipelineMember {
        PipelineMember {
            app_id: Uuid::now_v7(),
            app: app.parse().unwrap(),
            stage,
        }
    }

    fn shop() -> Pipeline {
        Pipeline {
            id: Uuid::now_v7(),
            name: "shop".parse().unwrap(),
            owner: Uuid::now_v7(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn names(chosen: &[&PipelineMember]) -> Vec<String> {
        chosen.iter().map(|m| m.app.to_string()).collect()
    }

    #[test]
    fn targets_are_every_production_app_or_the_named_ones_once() {
        let members = [
            member("shop-stg", Stage::Staging),
            member("shop-eu", Stage::Production),
            member("shop-us", Stage::Production),
        ];
        let all = targets(&shop(), &members, &[]).unwrap();
        assert_eq!(names(&all), ["shop-eu", "shop-us"]);
        let named = ["shop-us".to_owned(), "shop-us".to_owned()];
        assert_eq!(
            names(&targets(&shop(), &members, &named).unwrap()),
            ["shop-us"]
        );
        for wrong in ["shop-stg", "elsewhere"] {
            let error = targets(&shop(), &members, &[wrong.to_owned()]).unwrap_err();
            assert_eq!(
                error.message(),
                format!("app `{wrong}` is not a production app of pipeline `shop`")
            );
        }
        let error = targets(&shop(), &members[..1], &[]).unwrap_err();
        assert!(
            error
                .message()
                .starts_with("pipeline `shop` has no production app"),
            "{}",
            error.message()
        );
    }
}
