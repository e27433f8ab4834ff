//! Every route of the API server, each with the rule that says who may call it. The axum
//! router, the authorization layer and the OpenAPI document are all built from [`routes`], so a
//! route cannot exist without a rule.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use slipway_store::{NewAuditEvent, Role, TokenScope};
use slipway_types::api::AuditOutcome;
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::auth::{Caller, authenticate, bearer, refusal};
use crate::controllers::{
    access, addons, admin, alerts, apps, buildpacks, builds, canary, certs, config, domains,
    drains, formation, git, health, keys, logs, maintenance, metrics, nodes, openapi, pipelines,
    ratelimit, releases, runs, sessions, tokens, webhooks, whoami,
};
use crate::dashboard;
use crate::error::ApiError;

/// A request with this header and value is authorized as usual and then answered `204 No
/// Content` without running the handler: clients (and the route-matrix test) can ask whether a
/// call would be allowed without making it, like `kubectl auth can-i`.
pub const DRY_RUN_HEADER: &str = "x-slipway-dry-run";
pub const DRY_RUN_AUTHORIZE: &str = "authorize";

/// Who may call a route. Reads need a token of any scope, changes a `write` token, admin
/// routes an `admin` token of an admin user (each route can lower or raise its scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: health, metrics, the OpenAPI document, login.
    Public,
    /// Git smart HTTP: HTTP Basic auth with a token as password, checked by the git
    /// controller with the same app rule as [`Access::App`].
    Git,
    /// Any signed-in user.
    User,
    /// The app's owner, its collaborators and admins.
    App,
    /// The app's owner and admins: destroying it, managing collaborators.
    AppOwner,
    /// Admins.
    Admin,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Git => "git",
            Access::User => "user",
            Access::App => "app",
            Access::AppOwner => "app_owner",
            Access::Admin => "admin",
        }
    }
}

/// One method on one path.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    /// The scope a token needs, on top of `access`.
    pub scope: TokenScope,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
    /// `None` when an earlier route of the same path serves this method too (git's `any`).
    handler: Option<MethodRouter<AppState>>,
    /// A dashboard page or form: signed in by the session cookie instead of a bearer token,
    /// refused with HTML (a redirect to sign in, an error page), and CSRF-checked when it
    /// changes something.
    pub page: bool,
}

fn route<H, T>(
    method: Method,
    path: &'static str,
    access: Access,
    summary: &'static str,
    handler: H,
) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone())
        .unwrap_or_else(|_| panic!("route table: unsupported method {method}"));
    let handler = Some(on(filter, handler));
    let scope = match (access, &method) {
        (Access::Admin, _) => TokenScope::Admin,
        (_, &Method::GET | &Method::HEAD) => TokenScope::Read,
        _ => TokenScope::Write,
    };
    Route {
        method,
        path,
        access,
        scope,
        summary,
        handler,
        page: false,
    }
}

impl Route {
    /// A route that changes something yet is open to every scope (signing out).
    fn any_scope(mut self) -> Route {
        self.scope = TokenScope::Read;
        self
    }

    /// A read that acts (attaching a terminal to a process): it needs a write token.
    fn scope_write(mut self) -> Route {
        self.scope = TokenScope::Write;
        self
    }

    /// A dashboard route: see [`Route::page`].
    fn page(mut self) -> Route {
        self.page = true;
        self
    }
}

/// Every route of the API, in the order the OpenAPI document lists them.
pub fn routes() -> Vec<Route> {
    use Access::{Admin, App, AppOwner, Git, Public, User};
    use Method as M;
    vec![
        route(M::GET, "/healthz", Public, "Liveness", health::healthz),
        route(
            M::GET,
            "/metrics",
            Public,
            "Prometheus metrics",
            health::metrics,
        ),
        route(
            M::GET,
            "/v1/openapi.json",
            Public,
            "This API as OpenAPI 3.1",
            openapi::document,
        ),
        route(
            M::POST,
            "/v1/login",
            Public,
            "Exchange an email and password for a token",
            sessions::login,
        ),
        route(
            M::POST,
            "/v1/logout",
            User,
            "Revoke the token of this request",
            sessions::logout,
        )
        .any_scope(),
        route(M::GET, "/v1/whoami", User, "The caller", whoami::show),
        route(
            M::GET,
            "/v1/tokens",
            User,
            "The caller's tokens",
            tokens::list,
        ),
        route(
            M::POST,
            "/v1/tokens",
            User,
            "Create a token",
            tokens::create,
        ),
        route(
            M::DELETE,
            "/v1/tokens/{id}",
            User,
            "Revoke one of the caller's tokens",
            tokens::revoke,
        ),
        route(
            M::GET,
            "/v1/keys",
            User,
            "The caller's SSH keys",
            keys::list,
        ),
        route(
            M::POST,
            "/v1/keys",
            User,
            "Register an SSH key for git push over SSH",
            keys::create,
        ),
        route(
            M::DELETE,
            "/v1/keys/{key}",
            User,
            "Remove one of the caller's SSH keys, by fingerprint or id",
            keys::destroy,
        ),
        route(
            M::GET,
            "/v1/apps",
            User,
            "Apps the caller may use",
            apps::list,
        ),
        route(M::POST, "/v1/apps", User, "Create an app", apps::create),
        route(M::GET, "/v1/apps/{app}", App, "An app", apps::show),
        route(
            M::DELETE,
            "/v1/apps/{app}",
            AppOwner,
            "Destroy an app",
            apps::destroy,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/collaborators",
            App,
            "The app's owner and collaborators",
            access::list,
        ),
        route(
            M::POST,
            "/v1/apps/{app}/collaborators",
            AppOwner,
            "Add a collaborator",
            access::add,
        ),
        route(
            M::DELETE,
            "/v1/apps/{app}/collaborators/{email}",
            AppOwner,
            "Remove a collaborator",
            access::remove,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/maintenance",
            App,
            "Whether the app is in maintenance mode",
            maintenance::show,
        ),
        route(
            M::PUT,
            "/v1/apps/{app}/maintenance",
            App,
            "Turn maintenance mode on or off",
            maintenance::set,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/config",
            App,
            "Config vars",
            config::show,
        ),
        route(
            M::PATCH,
            "/v1/apps/{app}/config",
            App,
            "Set and unset config vars (cuts a release)",
            config::update,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/releases",
            App,
            "Releases, newest first",
            releases::list,
        ),
        route(
            M::POST,
            "/v1/apps/{app}/releases/rollback",
            App,
            "Roll back (cuts a release)",
            releases::rollback,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/releases/{version}",
            App,
            "One release",
            releases::show,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/canary",
            App,
            "The canary policy for the next release and the canary running now",
            canary::show,
        ),
        route(
            M::PUT,
            "/v1/apps/{app}/canary",
            App,
            "Send the next code release out as a canary",
            canary::set,
        ),
        route(
            M::DELETE,
            "/v1/apps/{app}/canary",
            App,
            "Send releases out at once again",
            canary::clear,
        ),
        route(
            M::POST,
            "/v1/apps/{app}/canary/promote",
            App,
            "Promote the running canary to every container now",
            canary::promote,
        ),
        route(
            M::POST,
            "/v1/apps/{app}/canary/abort",
            App,
            "Remove the running canary and fail its release",
            canary::abort,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/ratelimit",
            App,
            "The app's rate limit per client IP",
            ratelimit::show,
        ),
        route(
            M::PUT,
            "/v1/apps/{app}/ratelimit",
            App,
            "Limit requests per client IP at the router",
            ratelimit::set,
        ),
        route(
            M::DELETE,
            "/v1/apps/{app}/ratelimit",
            App,
            "Remove the app's rate limit",
            ratelimit::clear,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/formation",
            App,
            "Processes and their scale",
            formation::show,
        ),
        route(
            M::PATCH,
            "/v1/apps/{app}/formation",
            App,
            "Scale or resize processes",
            formation::update,
        ),
        route(
            M::POST,
            "/v1/apps/{app}/formation/restart",
            App,
            "Restart processes",
            formation::restart,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/builds",
            App,
            "Builds, newest first",
            builds::list,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/builds/{id}",
            App,
            "One build with its output",
            builds::show,
        ),
        route(
            M::DELETE,
            "/v1/apps/{app}/builds/cache",
            App,
            "Empty the app's build cache",
            buildpacks::purge_cache,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/buildpacks",
            App,
            "The buildpacks the app's pushes run, in order",
            buildpacks::show,
        ),
        route(
            M::PUT,
            "/v1/apps/{app}/buildpacks",
            App,
            "Set the buildpacks the app's pushes run",
            buildpacks::update,
        ),
        route(
            M::DELETE,
            "/v1/apps/{app}/buildpacks",
            App,
            "Clear the app's buildpacks: pushes detect again",
            buildpacks::clear,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/logs",
            App,
            "Logs (Server-Sent Events when following)",
            logs::stream,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/metrics",
            App,
            "The app's time series with deploy markers (since=1h)",
            metrics::app,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/drains",
            App,
            "Log drains, with how their delivery is going",
            drains::list,
        ),
        route(
            M::POST,
            "/v1/apps/{app}/drains",
            App,
            "Add a log drain (syslog+tls://, syslog:// or https://)",
            drains::create,
        ),
        route(
            M::DELETE,
            "/v1/apps/{app}/drains/{drain}",
            App,
            "Remove a log drain, by id",
            drains::destroy,
        ),
        route(
            M::POST,
            "/v1/apps/{app}/runs",
            App,
            "Start a one-off process",
            runs::create,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/runs/attach",
            App,
            "Attach to a one-off process (WebSocket)",
            runs::attach,
        )
        .scope_write(),
        route(
            M::GET,
            "/v1/apps/{app}/addons",
            App,
            "Add-ons",
            addons::list,
        ),
        route(
            M::POST,
            "/v1/apps/{app}/addons",
            App,
            "Create an add-on",
            addons::create,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/addons/{name}",
            App,
            "One add-on and its state",
            addons::show,
        ),
        route(
            M::DELETE,
            "/v1/apps/{app}/addons/{name}",
            App,
            "Destroy an add-on",
            addons::destroy,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/addons/{name}/backups",
            App,
            "Backups of a Postgres add-on",
            addons::backups,
        ),
        route(
            M::POST,
            "/v1/apps/{app}/addons/{name}/backups",
            App,
            "Capture a backup",
            addons::capture,
        ),
        route(
            M::POST,
            "/v1/apps/{app}/addons/{name}/backups/{id}/restore",
            App,
            "Restore a backup",
            addons::restore,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/domains",
            App,
            "Custom domains",
            domains::list,
        ),
        route(
            M::POST,
            "/v1/apps/{app}/domains",
            App,
            "Add a custom domain",
            domains::create,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/domains/{hostname}",
            App,
            "One custom domain",
            domains::show,
        ),
        route(
            M::DELETE,
            "/v1/apps/{app}/domains/{hostname}",
            App,
            "Remove a custom domain",
            domains::destroy,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/certs",
            App,
            "Certificates",
            certs::list,
        ),
        route(
            M::POST,
            "/v1/apps/{app}/certs",
            App,
            "Upload a certificate",
            certs::create,
        ),
        route(
            M::PUT,
            "/v1/apps/{app}/certs/auto",
            App,
            "Turn automatic certificates on or off",
            certs::set_auto,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/webhooks",
            App,
            "Webhooks, with their latest delivery",
            webhooks::list,
        ),
        route(
            M::POST,
            "/v1/apps/{app}/webhooks",
            App,
            "Add a webhook (its signing secret is shown once)",
            webhooks::create,
        ),
        route(
            M::DELETE,
            "/v1/apps/{app}/webhooks/{id}",
            App,
            "Remove a webhook",
            webhooks::destroy,
        ),
        route(
            M::GET,
            "/v1/apps/{app}/alerts",
            App,
            "Alert rules, their thresholds and the alerts firing",
            alerts::list,
        ),
        route(
            M::PUT,
            "/v1/apps/{app}/alerts/{rule}",
            App,
            "Set an alert rule's threshold",
            alerts::set,
        ),
        route(
            M::DELETE,
            "/v1/apps/{app}/alerts/{rule}",
            App,
            "Turn an alert rule off",
            alerts::remove,
        ),
        route(
            M::GET,
            "/v1/pipelines",
            User,
            "Pipelines the caller may see",
            pipelines::list,
        ),
        route(
            M::POST,
            "/v1/pipelines",
            User,
            "Create a pipeline",
            pipelines::create,
        ),
        route(
            M::GET,
            "/v1/pipelines/{name}",
            User,
            "A pipeline and its apps by stage",
            pipelines::show,
        ),
        route(
            M::DELETE,
            "/v1/pipelines/{name}",
            User,
            "Destroy a pipeline (its owner or an admin); its apps keep running",
            pipelines::destroy,
        ),
        route(
            M::POST,
            "/v1/pipelines/{name}/apps",
            User,
            "Put an app the caller owns in the pipeline at a stage",
            pipelines::add_app,
        ),
        route(
            M::DELETE,
            "/v1/pipelines/{name}/apps/{app}",
            AppOwner,
            "Take an app out of the pipeline",
            pipelines::remove_app,
        ),
        route(
            M::POST,
            "/v1/apps/{app}/promote",
            App,
            "Promote the staging app's release to production apps (needs access to both)",
            pipelines::promote,
        ),
        route(M::GET, "/v1/admin/users", Admin, "Every user", admin::users),
        route(
            M::POST,
            "/v1/admin/users",
            Admin,
            "Create a user",
            admin::create_user,
        ),
        route(
            M::DELETE,
            "/v1/admin/users/{email}",
            Admin,
            "Remove a user",
            admin::remove_user,
        ),
        route(
            M::GET,
            "/v1/admin/apps",
            Admin,
            "Every app with its owner and state",
            admin::apps,
        ),
        route(
            M::GET,
            "/v1/admin/audit",
            Admin,
            "The audit log",
            admin::audit,
        ),
        route(
            M::GET,
            "/v1/admin/status",
            Admin,
            "The platform's health",
            admin::status,
        ),
        route(
            M::GET,
            "/v1/admin/metrics",
            Admin,
            "The platform's time series: router traffic, builds running, disk (since=1h)",
            metrics::platform,
        ),
        route(
            M::GET,
            "/v1/admin/settings",
            Admin,
            "The settings the server runs with",
            admin::settings,
        ),
        route(
            M::GET,
            "/v1/admin/nodes",
            Admin,
            "The swarm's nodes with this installation's tasks on each (--runtime swarm)",
            nodes::list,
        ),
        route(
            M::POST,
            "/v1/admin/nodes/{node}/drain",
            Admin,
            "Move every task off a swarm node, by id or hostname",
            nodes::drain,
        ),
        route(
            M::POST,
            "/v1/admin/nodes/{node}/activate",
            Admin,
            "Let a drained swarm node take tasks again",
            nodes::activate,
        ),
        route(
            M::GET,
            "/login",
            Public,
            "Dashboard: the sign-in form",
            dashboard::session::login_form,
        )
        .page(),
        route(
            M::POST,
            "/login",
            Public,
            "Dashboard: sign in with email and password",
            dashboard::session::login,
        )
        .page(),
        route(
            M::POST,
            "/logout",
            User,
            "Dashboard: sign out, revoking the session",
            dashboard::session::logout,
        )
        .page()
        .any_scope(),
        route(
            M::GET,
            "/assets/{*file}",
            Public,
            "Dashboard: stylesheet and scripts",
            dashboard::assets::serve,
        )
        .page(),
        route(M::GET, "/", User, "Dashboard: apps", dashboard::apps::list).page(),
        route(
            M::POST,
            "/apps",
            User,
            "Dashboard: create an app",
            dashboard::apps::create,
        )
        .page(),
        route(
            M::GET,
            "/apps/{app}",
            App,
            "Dashboard: an app's overview",
            dashboard::apps::overview,
        )
        .page(),
        route(
            M::GET,
            "/apps/{app}/releases",
            App,
            "Dashboard: releases",
            dashboard::releases::list,
        )
        .page(),
        route(
            M::POST,
            "/apps/{app}/releases/rollback",
            App,
            "Dashboard: roll back to a release",
            dashboard::releases::rollback,
        )
        .page(),
        route(
            M::POST,
            "/apps/{app}/promote",
            App,
            "Dashboard: promote a staging app to production",
            dashboard::pipelines::promote,
        )
        .page(),
        route(
            M::GET,
            "/apps/{app}/config",
            App,
            "Dashboard: config vars",
            dashboard::config::show,
        )
        .page(),
        route(
            M::POST,
            "/apps/{app}/config",
            App,
            "Dashboard: set a config var",
            dashboard::config::set,
        )
        .page(),
        route(
            M::POST,
            "/apps/{app}/config/delete",
            App,
            "Dashboard: unset a config var",
            dashboard::config::unset,
        )
        .page(),
        route(
            M::GET,
            "/apps/{app}/scaling",
            App,
            "Dashboard: processes and their scale",
            dashboard::scaling::show,
        )
        .page(),
        route(
            M::POST,
            "/apps/{app}/scaling",
            App,
            "Dashboard: scale or resize a process type",
            dashboard::scaling::update,
        )
        .page(),
        route(
            M::GET,
            "/apps/{app}/domains",
            App,
            "Dashboard: domains and certificates",
            dashboard::domains::show,
        )
        .page(),
        route(
            M::POST,
            "/apps/{app}/domains",
            App,
            "Dashboard: add a custom domain",
            dashboard::domains::add,
        )
        .page(),
        route(
            M::POST,
            "/apps/{app}/domains/remove",
            App,
            "Dashboard: remove a custom domain",
            dashboard::domains::remove,
        )
        .page(),
        route(
            M::GET,
            "/apps/{app}/addons",
            App,
            "Dashboard: add-ons",
            dashboard::addons::show,
        )
        .page(),
        route(
            M::POST,
            "/apps/{app}/addons",
            App,
            "Dashboard: create an add-on",
            dashboard::addons::create,
        )
        .page(),
        route(
            M::POST,
            "/apps/{app}/addons/destroy",
            App,
            "Dashboard: destroy an add-on",
            dashboard::addons::destroy,
        )
        .page(),
        route(
            M::GET,
            "/apps/{app}/logs",
            App,
            "Dashboard: logs",
            dashboard::logs::show,
        )
        .page(),
        route(
            M::GET,
            "/apps/{app}/logs/stream",
            App,
            "Dashboard: live logs (Server-Sent Events)",
            logs::stream,
        )
        .page(),
        route(
            M::GET,
            "/apps/{app}/builds",
            App,
            "Dashboard: builds and the latest build's output",
            dashboard::logs::builds,
        )
        .page(),
        route(
            M::GET,
            "/admin",
            Admin,
            "Dashboard: platform status",
            dashboard::admin::status,
        )
        .page(),
        route(
            M::GET,
            "/admin/users",
            Admin,
            "Dashboard: users",
            dashboard::admin::users,
        )
        .page(),
        route(
            M::GET,
            "/admin/apps",
            Admin,
            "Dashboard: every app",
            dashboard::admin::apps,
        )
        .page(),
        route(
            M::GET,
            "/admin/audit",
            Admin,
            "Dashboard: the audit log",
            dashboard::admin::audit,
        )
        .page(),
        route(
            M::GET,
            "/git/{repo}/{*rest}",
            Git,
            "Git smart HTTP: refs and fetch",
            git::serve,
        ),
        route(
            M::POST,
            "/git/{repo}/{*rest}",
            Git,
            "Git smart HTTP: fetch and push",
            git::serve,
        ),
    ]
}

/// What the authorization layer needs to know of a route.
#[derive(Debug, Clone, Copy)]
struct Rule {
    access: Access,
    scope: TokenScope,
    page: bool,
}

/// The rules by method and path pattern, for the authorization layer.
type Rules = HashMap<(Method, &'static str), Rule>;

pub fn build(state: AppState) -> Router {
    let mut router: Router<AppState> = Router::new();
    let mut rules = Rules::new();
    for route in routes() {
        rules.insert(
            (route.method.clone(), route.path),
            Rule {
                access: route.access,
                scope: route.scope,
                page: route.page,
            },
        );
        if let Some(handler) = route.handler {
            router = router.route(route.path, handler);
        }
    }
    let rules = Arc::new(rules);
    router
        .route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), rules),
            authorize,
        ))
        .fallback(async || ApiError::not_found("no such API endpoint"))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            changes_on_the_leader,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// On a follower, has the leader carry out every change (see `forward`): only the leader
/// deploys. This runs before authentication, so the leader alone checks and audits the
/// request, once.
async fn changes_on_the_leader(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.leadership.is_leader()
        || !crate::forward::for_the_leader(request.method(), request.uri().path())
    {
        return next.run(request).await;
    }
    state.leadership.forward(&state.store, request).await
}

tokio::task_local! {
    /// Set when the handler of the current request wrote its own audit event.
    static AUDITED: Cell<bool>;
}

/// Called by `Platform::audit`: the authorization layer then writes no generic event.
pub fn mark_audited() {
    // Outside a request (background work) there is nothing to mark.
    let _ = AUDITED.try_with(|audited| audited.set(true));
}

/// Authenticates and authorizes every request before its handler, by the route's rule, and
/// audits every change and every refusal.
async fn authorize(
    State((state, rules)): State<(AppState, Arc<Rules>)>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let (mut parts, body) = request.into_parts();
    let pattern = parts
        .extensions
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_owned())
        .unwrap_or_default();
    let source_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let Some(&rule) = rules.get(&(method.clone(), pattern.as_str())).or_else(|| {
        // HEAD is served by GET routes.
        (method == Method::HEAD)
            .then(|| rules.get(&(Method::GET, pattern.as_str())))
            .flatten()
    }) else {
        return ApiError::with_code(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {pattern}"),
        )
        .into_response();
    };
    let app_name = RawPathParams::from_request_parts(&mut parts, &state)
        .await
        .ok()
        .and_then(|params| {
            params
                .iter()
                .find(|(key, _)| *key == "app")
                .map(|(_, value)| value.to_owned())
        });
    let access = rule.access;
    let target = app_name.clone().unwrap_or_else(|| pattern.clone());
    let action = format!("{method} {pattern}");
    let mutating = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);

    let caller = match check(&state, &parts, rule, app_name.as_deref(), source_ip).await {
        Ok(caller) => caller,
        Err((error, actor)) => {
            if mutating || access == Access::Admin {
                state
                    .record(NewAuditEvent {
                        actor: &actor,
                        action: &action,
                        target: &target,
                        source_ip: source_ip.map(|ip| ip.to_string()).as_deref(),
                        detail: None,
                        outcome: AuditOutcome::Denied,
                    })
                    .await;
            }
            if rule.page {
                return dashboard::refused(error, &parts, body).await;
            }
            return error.into_response();
        }
    };
    let dry_run = parts
        .headers
        .get(DRY_RUN_HEADER)
        .is_some_and(|value| value == DRY_RUN_AUTHORIZE);
    if dry_run {
        return StatusCode::NO_CONTENT.into_response();
    }
    // A form signed in by cookie must prove it came from one of our pages.
    let body = match (&caller, rule.page && mutating) {
        (Some(caller), true) => match dashboard::check_csrf(&parts, body).await {
            Ok(body) => body,
            Err(refusal) => {
                state
                    .record(NewAuditEvent {
                        actor: &caller.user.email,
                        action: &action,
                        target: &target,
                        source_ip: source_ip.map(|ip| ip.to_string()).as_deref(),
                        detail: Some("csrf token missing or wrong"),
                        outcome: AuditOutcome::Denied,
                    })
                    .await;
                return refusal;
            }
        },
        _ => body,
    };
    if let Some(caller) = &caller {
        parts.extensions.insert(caller.clone());
    }
    let request = Request::from_parts(parts, body);
    let (response, audited) = AUDITED
        .scope(Cell::new(false), async {
            let response = next.run(request).await;
            (response, AUDITED.with(Cell::get))
        })
        .await;
    let status = response.status();
    if mutating && access != Access::Git && (!audited || !status.is_success()) {
        let outcome = match status.as_u16() {
            200..=399 => AuditOutcome::Ok,
            401 | 403 | 429 => AuditOutcome::Denied,
            _ => AuditOutcome::Failed,
        };
        let actor = caller
            .as_ref()
            .map_or("anonymous", |c| c.user.email.as_str());
        state
            .record(NewAuditEvent {
                actor,
                action: &action,
                target: &target,
                source_ip: source_ip.map(|ip| ip.to_string()).as_deref(),
                detail: Some(status.as_str()),
                outcome,
            })
            .await;
    }
    response
}

/// The caller, when the rule lets them through; else the refusal and who was refused.
async fn check(
    state: &AppState,
    parts: &axum::http::request::Parts,
    rule: Rule,
    app: Option<&str>,
    source_ip: Option<std::net::IpAddr>,
) -> Result<Option<Caller>, (ApiError, String)> {
    let Rule {
        access,
        scope,
        page,
    } = rule;
    if matches!(access, Access::Public | Access::Git) {
        return Ok(None);
    }
    let anonymous = |error| (error, "anonymous".to_owned());
    // Pages are for browsers, which carry the session cookie; the API takes bearer tokens only.
    let raw = if page {
        dashboard::session_token(&parts.headers)
    } else {
        bearer(parts)
    };
    let raw = raw.ok_or_else(|| anonymous(refusal::missing()))?;
    let mut caller = authenticate(state, raw).await.map_err(anonymous)?;
    caller.source_ip = source_ip;
    let refuse = |error| (error, caller.user.email.clone());
    if let Some(ip) = source_ip {
        note_address(state, &caller, ip).await;
    }
    // A member asking for the admin API hears that it is for admins, whatever their token.
    if access == Access::Admin && caller.user.role != Role::Admin {
        return Err(refuse(refusal::admin_only()));
    }
    caller.require_scope(scope).map_err(refuse)?;
    match access {
        Access::Public | Access::Git | Access::User => {}
        Access::Admin => {
            if !caller.is_admin() {
                return Err(refuse(refusal::admin_only()));
            }
        }
        Access::App | Access::AppOwner => {
            let name = app.unwrap_or_default();
            let found = state.app_for(&caller, name).await.map_err(refuse)?;
            if access == Access::AppOwner && !caller.owns(&found) {
                return Err(refuse(refusal::owner_only(name)));
            }
        }
    }
    Ok(Some(caller))
}

/// Audits the first use of a token from an address.
pub async fn note_address(state: &AppState, caller: &Caller, ip: std::net::IpAddr) {
    let Some(token_id) = caller.token_id else {
        return;
    };
    let address = ip.to_string();
    match state.store.note_token_address(token_id, &address).await {
        Ok(true) => {
            state
                .record(NewAuditEvent {
                    actor: &caller.user.email,
                    action: "tokens.new_address",
                    target: &token_id.to_string(),
                    source_ip: Some(&address),
                    detail: None,
                    outcome: AuditOutcome::Ok,
                })
                .await;
        }
        Ok(false) => {}
        Err(error) => tracing::warn!(%error, "recording a token's address failed"),
    }
}
