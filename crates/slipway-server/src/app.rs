//! The state every handler and worker shares.

use std::ops::Deref;
use std::sync::Arc;

use slipway_builder::Builder;
use slipway_git::Repos;
use slipway_store::{App, NewRelease, Release, Store};
use slipway_types::api::{AppInfo, AuditOutcome};
use slipway_types::{AppName, Bump, ConfigVars, next_version};

use crate::addons::Addons;
use crate::auth::{Caller, TokenSigner, refusal};
use crate::certs::Certs;
use crate::config::ServerConfig;
use crate::deployer::Deployer;
use crate::drains::Drains;
use crate::error::ApiResult;
use crate::logs::LogHub;
use crate::passwords::LoginLimits;
use crate::push::BuildQueue;
use crate::runs::Runs;
use crate::timeseries::TimeSeries;

pub struct Platform {
    pub config: ServerConfig,
    pub store: Store,
    pub builder: Builder,
    pub repos: Repos,
    pub deployer: Deployer,
    pub signer: TokenSigner,
    pub builds: BuildQueue,
    pub runs: Runs,
    pub logs: Arc<LogHub>,
    /// Ships the logs to each app's drains.
    pub drains: Drains,
    /// Renders `/metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub addons: Addons,
    /// Custom domains, the built-in DNS server's records and certificates.
    pub certs: Certs,
    pub logins: LoginLimits,
    /// Per-app metrics over time; subscribe for each bucket as it closes.
    pub series: TimeSeries,
    pub started: std::time::Instant,
    /// Whether this server holds the leader lease: only the leader deploys and runs the loops.
    pub leadership: crate::leader::Leadership,
    /// The swarm apps, add-ons and one-off runs are services of with `--runtime swarm`;
    /// `None` with `--runtime docker`.
    pub swarm: Option<Arc<dyn slipway_engine::Swarm>>,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Platform>);

impl Deref for AppState {
    type Target = Platform;

    fn deref(&self) -> &Platform {
        &self.0
    }
}

impl Platform {
    /// The app named in a URL, if it exists and the caller may use it: its owner, a
    /// collaborator or an admin. Apps the caller cannot use look the same as missing ones.
    /// The authorization layer calls this for every app route before the handler runs.
    pub async fn app_for(&self, caller: &Caller, name: &str) -> ApiResult<App> {
        let not_found = || refusal::app_not_found(name);
        let name: AppName = name.parse().map_err(|_| not_found())?;
        let app = self.store.app(&name).await?.ok_or_else(not_found)?;
        if caller.owns(&app) || self.store.is_collaborator(app.id, caller.user.id).await? {
            Ok(app)
        } else {
            Err(not_found())
        }
    }

    pub async fn app_info(&self, app: &App) -> ApiResult<AppInfo> {
        let current = self.store.current_release(app.id).await?;
        Ok(AppInfo {
            name: app.name.to_string(),
            web_url: self.config.app_url(app.name.as_str()),
            git_url: format!("{}/git/{}.git", self.config.api_url(), app.name),
            current_release: current.map(|r| r.version.to_string()),
            created_at: app.created_at,
        })
    }

    /// Cuts the next patch release of `app` running `base`'s image, processes and app.json with
    /// `config`, which becomes the app's config in the same transaction. Config changes and
    /// rollbacks both release this way.
    pub async fn cut_patch_release(
        &self,
        app: &App,
        base: &Release,
        config: &ConfigVars,
        description: String,
        created_by: &str,
    ) -> ApiResult<Release> {
        let versions = self.store.versions(app.id).await?;
        let release = self
            .store
            .create_release(
                NewRelease {
                    app_id: app.id,
                    version: next_version(&versions, Bump::Patch),
                    image: base.image.clone(),
                    config: config.clone(),
                    processes: base.processes.clone(),
                    app_json: base.app_json.clone(),
                    commit: base.commit.clone(),
                    description,
                    created_by: created_by.to_owned(),
                },
                Some(config),
            )
            .await?;
        Ok(release)
    }

    /// Records what a handler did, by name (`config.set`). The authorization layer records
    /// calls whose handler did not, and every refusal.
    pub async fn audit(&self, caller: &Caller, action: &str, target: &str, detail: Option<&str>) {
        crate::router::mark_audited();
        let source_ip = caller.source_ip.map(|ip| ip.to_string());
        self.record(slipway_store::NewAuditEvent {
            actor: &caller.user.email,
            action,
            target,
            source_ip: source_ip.as_deref(),
            detail,
            outcome: AuditOutcome::Ok,
        })
        .await;
    }

    /// Writes an audit event; a store failure is logged, never passed on.
    pub async fn record(&self, event: slipway_store::NewAuditEvent<'_>) {
        if let Err(error) = self.store.audit(event).await {
            tracing::error!(%error, action = event.action, target = event.target, "writing the audit log failed");
        }
    }
}
