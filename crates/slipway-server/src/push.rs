//! A `git push` becomes a build, a release and a deploy. The pre-receive hook hands each push
//! over a local socket; its output streams back to the pusher as `remote:` lines, and a
//! failure refuses the ref so the running release is untouched.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use slipway_builder::BuildRequest;
use slipway_git::{HookListener, Push, RefUpdate};
use slipway_store::{App, NewRelease};
use slipway_types::api::BuildStatus;
use slipway_types::version::{parse_tag, tag_is_usable};
use slipway_types::{AppJson, AppName, Bump, ProcessType, next_version, parse_memory};
use tokio::sync::{Semaphore, mpsc};
use uuid::Uuid;

use crate::app::Platform;
use crate::deployer::Progress;

/// Builds of one app queue; builds of different apps run in parallel up to a limit.
pub struct BuildQueue {
    per_app: Mutex<HashMap<AppName, Arc<tokio::sync::Mutex<()>>>>,
    slots: Semaphore,
}

impl BuildQueue {
    pub fn new(concurrency: usize) -> Self {
        Self {
            per_app: Mutex::default(),
            slots: Semaphore::new(concurrency),
        }
    }

    pub fn app_lock(&self, app: &AppName) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.per_app.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(app.clone()).or_default().clone()
    }
}

/// Accepts pushes from the pre-receive hook until the listener fails for good.
pub async fn serve_pushes(platform: Arc<Platform>, listener: HookListener) {
    loop {
        match listener.accept().await {
            Ok(push) => {
                tokio::spawn(handle_push(platform.clone(), push));
            }
            Err(error) => {
                tracing::warn!(%error, "accepting a push from the git hook failed");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

async fn handle_push(platform: Arc<Platform>, push: Push) {
    let mut output = PushOutput {
        push,
        platform: platform.clone(),
        build: None,
        pending: String::new(),
    };
    let outcome = deploy_push(&platform, &mut output).await;
    if let Err(message) = &outcome {
        output.line(&format!(" !     {message}")).await;
    }
    let refs: Vec<String> = output
        .push
        .updates
        .iter()
        .map(|update| format!("{} {}", update.refname, update.new))
        .collect();
    platform
        .record(slipway_store::NewAuditEvent {
            actor: &output.push.pusher,
            action: "git.push",
            target: output.push.app.as_str(),
            source_ip: None,
            detail: Some(&match &outcome {
                Ok(()) => refs.join(", "),
                Err(message) => format!("{}: {message}", refs.join(", ")),
            }),
            outcome: if outcome.is_ok() {
                slipway_types::api::AuditOutcome::Ok
            } else {
                slipway_types::api::AuditOutcome::Failed
            },
        })
        .await;
    output.flush().await;
    output.push.finish(outcome.is_ok()).await;
}

/// The pusher's terminal and the build's stored output, written together.
struct PushOutput {
    push: Push,
    platform: Arc<Platform>,
    build: Option<Uuid>,
    pending: String,
}

impl PushOutput {
    async fn line(&mut self, text: &str) {
        self.platform.logs.build_line(&self.push.app, text);
        if let Err(error) = self.push.say(text).await {
            tracing::debug!(%error, "pusher went away");
        }
        if self.build.is_some() {
            self.pending.push_str(text);
            self.pending.push('\n');
            if self.pending.len() > 4096 {
                self.flush().await;
            }
        }
    }

    async fn flush(&mut self) {
        if let Some(build) = self.build
            && !self.pending.is_empty()
        {
            let text = std::mem::take(&mut self.pending);
            if let Err(error) = self.platform.store.append_build_output(build, &text).await {
                tracing::warn!(%error, "saving build output failed");
            }
        }
    }

    /// Runs `work`, relaying every line it sends while it runs.
    async fn relay<T>(&mut self, work: impl AsyncFnOnce(mpsc::Sender<String>) -> T) -> T {
        let (tx, mut rx) = mpsc::channel::<String>(256);
        let work = work(tx);
        tokio::pin!(work);
        let result = loop {
            tokio::select! {
                biased;
                Some(line) = rx.recv() => self.line(&line).await,
                result = &mut work => break result,
            }
        };
        while let Ok(line) = rx.try_recv() {
            self.line(&line).await;
        }
        result
    }
}

/// Which update of the push deploys, or why the push is refused.
fn deploy_update(updates: &[RefUpdate]) -> Result<Option<&RefUpdate>, String> {
    let mut deploys = Vec::new();
    for update in updates {
        if update.is_deploy_branch() {
            if update.is_delete() {
                return Err(format!("deleting `{}` is not allowed", update.refname));
            }
            deploys.push(update);
        } else if !update.is_tag() {
            return Err(format!(
                "only main or master deploys: push to `main` instead of `{}`",
                update.refname
            ));
        }
    }
    match deploys.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err("push main or master, not both".to_owned()),
    }
}

async fn deploy_push(platform: &Platform, out: &mut PushOutput) -> Result<(), String> {
    if !platform.leadership.is_leader() {
        let leader = platform
            .leadership
            .leader_url(&platform.store)
            .await
            .map_or_else(
                || "no server leads right now".to_owned(),
                |url| format!("the leader is {url}"),
            );
        return Err(format!(
            "this server is a follower and does not deploy: push to the leader ({leader})"
        ));
    }
    let app = platform
        .store
        .app(&out.push.app)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("app `{}` does not exist", out.push.app))?;
    let Some(update) = deploy_update(&out.push.updates)?.cloned() else {
        out.line("-----> Tags updated; nothing to deploy").await;
        return Ok(());
    };
    let app_lock = platform.builds.app_lock(&app.name);
    let _queued = match app_lock.clone().try_lock_owned() {
        Ok(guard) => guard,
        Err(_) => {
            out.line(&format!(
                "-----> Waiting for the running build of {} to finish",
                app.name
            ))
            .await;
            app_lock.lock_owned().await
        }
    };
    let _slot = platform
        .builds
        .slots
        .acquire()
        .await
        .map_err(|_| "the server is shutting down".to_owned())?;
    // git re-checks each ref's old value after the hook: a push that waited behind another one
    // to the same branch would build and deploy, then have its ref update refused.
    let landed = out
        .push
        .reader()
        .ref_target(&update.refname)
        .await
        .map_err(|e| e.to_string())?;
    let expected = (!slipway_git::is_zero_id(&update.old)).then(|| update.old.clone());
    if landed != expected {
        return Err(format!(
            "another push to `{}` landed while this one waited: pull, then push again",
            update.refname
        ));
    }
    let build = platform
        .store
        .create_build(app.id, &update.new)
        .await
        .map_err(|e| e.to_string())?;
    out.build = Some(build.id);
    let result = build_and_release(platform, out, &app, &update).await;
    let (status, version) = match &result {
        Ok(version) => (BuildStatus::Succeeded, Some(version)),
        Err(_) => (BuildStatus::Failed, None),
    };
    out.flush().await;
    if let Err(error) = platform.store.finish_build(build.id, status, version).await {
        tracing::warn!(%error, "recording the build outcome failed");
    }
    result.map(|_| ())
}

async fn build_and_release(
    platform: &Platform,
    out: &mut PushOutput,
    app: &App,
    update: &RefUpdate,
) -> Result<semver::Version, String> {
    let store = &platform.store;
    let reader = out.push.reader();
    let short = reader
        .short_sha(&update.new)
        .await
        .map_err(|e| e.to_string())?;
    out.line(&format!("-----> Building {} from {short}", app.name))
        .await;

    let existing = store.versions(app.id).await.map_err(|e| e.to_string())?;
    let tagged = pushed_tag_version(out, &reader, &update.new).await?;
    let version = match tagged {
        Some(tagged) if tag_is_usable(&existing, &tagged) => tagged,
        Some(tagged) => {
            let highest = existing
                .iter()
                .max()
                .map(ToString::to_string)
                .unwrap_or_default();
            return Err(format!(
                "tag v{tagged} is not higher than release {highest}: tag a higher version or push without the tag"
            ));
        }
        None => {
            let since = store
                .last_deployed_commit(app.id)
                .await
                .map_err(|e| e.to_string())?;
            let messages = reader
                .messages(since.as_deref(), &update.new)
                .await
                .map_err(|e| e.to_string())?;
            next_version(
                &existing,
                Bump::for_messages(messages.iter().map(String::as_str)),
            )
        }
    };

    let source_tar = reader
        .archive(&update.new)
        .await
        .map_err(|e| e.to_string())?;
    let mut app_json = read_app_json(&source_tar)?;
    let config = store.config(app.id).await.map_err(|e| e.to_string())?;
    let request = BuildRequest {
        app: app.name.clone(),
        image: format!("slipway/{}:{version}", app.name),
        source_tar,
        config: config.clone(),
        buildpacks: store.buildpacks(app.id).await.map_err(|e| e.to_string())?,
        labels: platform.deployer.app_labels(&app.name),
    };
    let build_started = std::time::Instant::now();
    let built = out
        .relay(async |tx| platform.builder.build(request, &tx).await)
        .await;
    crate::metrics::build(&app.name, built.is_ok(), build_started.elapsed());
    let built = built.map_err(|e| e.to_string())?;
    // The release keeps the image's port (a Dockerfile's EXPOSE) where app.json names none.
    app_json.port = app_json.port.or(built.port);

    let processes = built.procfile.processes().clone();
    let types: Vec<ProcessType> = processes
        .keys()
        .filter(|p| !p.is_release())
        .cloned()
        .collect();
    if existing.is_empty() {
        apply_formation(platform, app, &app_json).await?;
    }
    store
        .ensure_formation(app.id, &types)
        .await
        .map_err(|e| e.to_string())?;
    let release = store
        .create_release(
            NewRelease {
                app_id: app.id,
                version: version.clone(),
                image: built.image,
                config,
                processes,
                app_json,
                commit: Some(update.new.clone()),
                description: format!("Deploy {short}"),
                created_by: out.push.pusher.clone(),
            },
            None,
        )
        .await
        .map_err(|e| e.to_string())?;
    let event = slipway_store::NewAuditEvent {
        actor: &out.push.pusher,
        action: "releases.create",
        target: app.name.as_str(),
        source_ip: None,
        detail: Some(&release.description),
        outcome: slipway_types::api::AuditOutcome::Ok,
    };
    if let Err(error) = store.audit(event).await {
        tracing::error!(%error, "writing the audit log failed");
    }
    out.line(&format!("-----> Releasing {version}")).await;
    let previous = store
        .current_release(app.id)
        .await
        .map_err(|e| e.to_string())?
        .map(|r| r.version.to_string());
    let _deploying = platform.deployer.lock(&app.name).await;
    out.relay(async |tx| {
        platform
            .deployer
            .deploy(app, &release, &Progress::to(tx))
            .await
    })
    .await
    .map_err(|e| match &previous {
        Some(previous) => format!("release {version} failed: {e}; {previous} keeps serving"),
        None => format!("release {version} failed: {e}"),
    })?;
    let released = if platform.deployer.canary_release_id(&app.name) == Some(release.id) {
        "Released as a canary"
    } else {
        "Released"
    };
    out.line(&format!(
        "-----> {released} {version} to {}",
        platform.config.app_url(app.name.as_str())
    ))
    .await;
    Ok(version)
}

/// The repository's `app.json`, if it has one; a malformed one fails the push naming the field.
fn read_app_json(source_tar: &[u8]) -> Result<AppJson, String> {
    let unreadable = |e: std::io::Error| format!("reading the pushed tree: {e}");
    let mut archive = tar::Archive::new(source_tar);
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        if entry.path().map_err(unreadable)?.as_ref() == std::path::Path::new("app.json") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text)
                .map_err(|_| "app.json: not UTF-8 text".to_owned())?;
            return AppJson::parse(&text).map_err(|e| e.to_string());
        }
    }
    Ok(AppJson::default())
}

/// On an app's first deploy, app.json's `formation` sets quantities and sizes.
async fn apply_formation(platform: &Platform, app: &App, app_json: &AppJson) -> Result<(), String> {
    for (process, spec) in &app_json.formation {
        let quantity = spec.quantity.unwrap_or(u32::from(process.is_web()));
        let memory = spec.size.as_deref().map(parse_memory).transpose()?;
        platform
            .store
            .set_formation(app.id, process, quantity, memory)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The version a `vX.Y.Z` tag on the pushed commit asks for, if any.
async fn pushed_tag_version(
    out: &PushOutput,
    reader: &slipway_git::RepoReader,
    commit: &str,
) -> Result<Option<semver::Version>, String> {
    let mut tags: Vec<String> = out
        .push
        .updates
        .iter()
        .filter(|u| u.is_tag() && !u.is_delete() && u.new == commit)
        .filter_map(|u| u.tag_name().map(str::to_owned))
        .collect();
    tags.extend(reader.tags_at(commit).await.map_err(|e| e.to_string())?);
    Ok(tags.iter().filter_map(|t| parse_tag(t)).max())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(refname: &str, new: &str) -> RefUpdate {
        RefUpdate {
            old: "0".repeat(40),
            new: new.to_owned(),
            refname: refname.to_owned(),
        }
    }

    #[test]
    fn only_main_or_master_deploys() {
        let main = update("refs/heads/main", &"a".repeat(40));
        assert_eq!(
            deploy_update(std::slice::from_ref(&main)).unwrap(),
            Some(&main)
        );
        let master = update("refs/heads/master", &"a".repeat(40));
        assert_eq!(
            deploy_update(std::slice::from_ref(&master)).unwrap(),
            Some(&master)
        );
        let err = deploy_update(&[update("refs/heads/feature", &"a".repeat(40))]).unwrap_err();
        assert!(err.contains("only main or master deploys"), "{err}");
        assert!(err.contains("refs/heads/feature"), "{err}");
        let tag = update("refs/tags/v2.0.0", &"a".repeat(40));
        assert_eq!(deploy_update(&[tag]).unwrap(), None);
        assert!(deploy_update(&[main, master]).is_err());
        let delete = update("refs/heads/main", &"0".repeat(40));
        assert!(deploy_update(&[delete]).unwrap_err().contains("deleting"));
    }
}
