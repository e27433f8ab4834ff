//! Every route of the API server.

use axum::Router;
use axum::routing::{any, get, post, put};
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::controllers::{
    addons, apps, builds, certs, config, domains, formation, git, health, logs, releases, runs,
    whoami,
};
use crate::error::ApiError;

pub fn build(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/v1/whoami", get(whoami::show))
        .route("/v1/apps", get(apps::list).post(apps::create))
        .route("/v1/apps/{app}", get(apps::show).delete(apps::destroy))
        .route(
            "/v1/apps/{app}/config",
            get(config::show).patch(config::update),
        )
        .route("/v1/apps/{app}/releases", get(releases::list))
        .route("/v1/apps/{app}/releases/rollback", post(releases::rollback))
        .route(
            "/v1/apps/{app}/formation",
            get(formation::show).patch(formation::update),
        )
        .route("/v1/apps/{app}/formation/restart", post(formation::restart))
        .route("/v1/apps/{app}/releases/{version}", get(releases::show))
        .route("/v1/apps/{app}/builds", get(builds::list))
        .route("/v1/apps/{app}/builds/{id}", get(builds::show))
        .route("/v1/apps/{app}/logs", get(logs::stream))
        .route("/v1/apps/{app}/runs", post(runs::create))
        .route("/v1/apps/{app}/runs/attach", get(runs::attach))
        .route(
            "/v1/apps/{app}/addons",
            get(addons::list).post(addons::create),
        )
        .route(
            "/v1/apps/{app}/addons/{name}",
            get(addons::show).delete(addons::destroy),
        )
        .route(
            "/v1/apps/{app}/addons/{name}/backups",
            get(addons::backups).post(addons::capture),
        )
        .route(
            "/v1/apps/{app}/addons/{name}/backups/{id}/restore",
            post(addons::restore),
        )
        .route(
            "/v1/apps/{app}/domains",
            get(domains::list).post(domains::create),
        )
        .route(
            "/v1/apps/{app}/domains/{hostname}",
            get(domains::show).delete(domains::destroy),
        )
        .route("/v1/apps/{app}/certs", get(certs::list).post(certs::create))
        .route("/v1/apps/{app}/certs/auto", put(certs::set_auto))
        .route("/git/{repo}/{*rest}", any(git::serve))
        .fallback(async || ApiError::not_found("no such API endpoint"))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
