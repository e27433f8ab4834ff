//! A fake Slipway API on 127.0.0.1: checks the bearer token, keeps apps and config in memory
//! and answers with the same JSON bodies as the real server, including `ErrorBody`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use slipway_types::AppName;
use slipway_types::api::{
    AppInfo, BuildInfo, BuildOutput, BuildStatus, ConfigChanged, ConfigPatch, CreateApp, ErrorBody,
    ErrorDetail, ReleaseInfo, ReleaseStatus, WhoAmI,
};
use time::OffsetDateTime;
use uuid::Uuid;

pub const TOKEN: &str = "test-token";
/// An app name for which the fake answers like a proxy in front of a dead server.
pub const PROXIED_APP: &str = "behind-proxy";
pub const BUILD_ID: Uuid = Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0001);
pub const BUILD_LOG: &str = "-----> Python app detected\n       Installing requirements\n";

pub struct FakeServer {
    pub url: String,
}

struct FakeApp {
    info: AppInfo,
    config: BTreeMap<String, String>,
    releases: Vec<ReleaseInfo>,
}

#[derive(Clone)]
struct Fake {
    url: String,
    apps: Arc<Mutex<BTreeMap<String, FakeApp>>>,
}

type ApiResult<T> = Result<T, Response>;

fn error(status: StatusCode, code: &str, message: String) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message,
        },
    };
    (status, Json(body)).into_response()
}

fn not_found(app: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("app `{app}` not found"),
    )
}

impl FakeServer {
    pub async fn start() -> FakeServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let fake = Fake {
            url: url.clone(),
            apps: Arc::default(),
        };
        let api = Router::new()
            .route("/v1/whoami", get(whoami))
            .route(
                "/v1/logout",
                axum::routing::post(|| async { StatusCode::NO_CONTENT }),
            )
            .route("/v1/apps", get(list_apps).post(create_app))
            .route("/v1/apps/{app}", get(get_app).delete(destroy_app))
            .route("/v1/apps/{app}/config", get(get_config).patch(patch_config))
            .route("/v1/apps/{app}/releases", get(list_releases))
            .route("/v1/apps/{app}/releases/{version}", get(get_release))
            .route("/v1/apps/{app}/builds", get(list_builds))
            .route("/v1/apps/{app}/builds/{id}", get(build_output))
            .route_layer(middleware::from_fn(require_token));
        let router = api
            .route("/healthz", get(|| async { "ok" }))
            .with_state(fake);
        tokio::spawn(async move { axum::serve(listener, router).await });
        FakeServer { url }
    }
}

async fn require_token(headers: HeaderMap, request: Request, next: Next) -> Response {
    let expected = format!("Bearer {TOKEN}");
    match headers.get(header::AUTHORIZATION) {
        Some(value) if value.as_bytes() == expected.as_bytes() => next.run(request).await,
        _ => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid API token".to_owned(),
        ),
    }
}

async fn whoami() -> Json<WhoAmI> {
    Json(WhoAmI {
        email: "admin".to_owned(),
        role: "admin".to_owned(),
    })
}

async fn list_apps(State(fake): State<Fake>) -> Json<Vec<AppInfo>> {
    let apps = fake.apps.lock().expect("lock");
    Json(apps.values().map(|app| app.info.clone()).collect())
}

async fn create_app(
    State(fake): State<Fake>,
    Json(body): Json<CreateApp>,
) -> ApiResult<(StatusCode, Json<AppInfo>)> {
    let name: AppName = body.name.parse().map_err(|err: slipway_types::NameError| {
        error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", err.to_string())
    })?;
    let mut apps = fake.apps.lock().expect("lock");
    if apps.contains_key(name.as_str()) {
        return Err(error(
            StatusCode::CONFLICT,
            "conflict",
            format!("app `{name}` already exists"),
        ));
    }
    let info = AppInfo {
        name: name.to_string(),
        web_url: format!("http://{name}.localhost"),
        git_url: format!("{}/git/{name}.git", fake.url),
        current_release: None,
        created_at: OffsetDateTime::now_utc(),
    };
    apps.insert(
        name.to_string(),
        FakeApp {
            info: info.clone(),
            config: BTreeMap::new(),
            releases: Vec::new(),
        },
    );
    Ok((StatusCode::CREATED, Json(info)))
}

async fn get_app(State(fake): State<Fake>, Path(app): Path<String>) -> ApiResult<Json<AppInfo>> {
    if app == PROXIED_APP {
        return Err((StatusCode::BAD_GATEWAY, "<html>Bad Gateway</html>").into_response());
    }
    let apps = fake.apps.lock().expect("lock");
    let found = apps.get(&app).ok_or_else(|| not_found(&app))?;
    Ok(Json(found.info.clone()))
}

async fn destroy_app(State(fake): State<Fake>, Path(app): Path<String>) -> ApiResult<StatusCode> {
    let mut apps = fake.apps.lock().expect("lock");
    apps.remove(&app).ok_or_else(|| not_found(&app))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_config(
    State(fake): State<Fake>,
    Path(app): Path<String>,
) -> ApiResult<Json<BTreeMap<String, String>>> {
    let apps = fake.apps.lock().expect("lock");
    let found = apps.get(&app).ok_or_else(|| not_found(&app))?;
    Ok(Json(found.config.clone()))
}

/// Cuts release `1.0.N` when a value changes, like the real server's patch releases.
async fn patch_config(
    State(fake): State<Fake>,
    Path(app): Path<String>,
    Json(patch): Json<ConfigPatch>,
) -> ApiResult<Json<ConfigChanged>> {
    let mut apps = fake.apps.lock().expect("lock");
    let found = apps.get_mut(&app).ok_or_else(|| not_found(&app))?;
    let before = found.config.clone();
    for (key, value) in patch {
        match value {
            Some(value) => found.config.insert(key, value),
            None => found.config.remove(&key),
        };
    }
    let release = (found.config != before).then(|| {
        let version = format!("1.0.{}", found.releases.len());
        for release in &mut found.releases {
            release.current = false;
        }
        found.releases.insert(
            0,
            ReleaseInfo {
                version: version.clone(),
                description: "Config change".to_owned(),
                commit: None,
                image: format!("slipway/{app}:1.0.0"),
                created_by: "admin".to_owned(),
                created_at: OffsetDateTime::now_utc(),
                status: ReleaseStatus::Succeeded,
                status_reason: None,
                current: true,
            },
        );
        found.info.current_release = Some(version.clone());
        version
    });
    Ok(Json(ConfigChanged {
        config: found.config.clone(),
        release,
    }))
}

async fn list_releases(
    State(fake): State<Fake>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<ReleaseInfo>>> {
    let apps = fake.apps.lock().expect("lock");
    let found = apps.get(&app).ok_or_else(|| not_found(&app))?;
    Ok(Json(found.releases.clone()))
}

async fn get_release(
    State(fake): State<Fake>,
    Path((app, version)): Path<(String, String)>,
) -> ApiResult<Json<ReleaseInfo>> {
    let apps = fake.apps.lock().expect("lock");
    let found = apps.get(&app).ok_or_else(|| not_found(&app))?;
    let release = found
        .releases
        .iter()
        .find(|release| release.version == version)
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("release `{version}` of app `{app}` not found"),
            )
        })?;
    Ok(Json(release.clone()))
}

fn build_info() -> BuildInfo {
    BuildInfo {
        id: BUILD_ID,
        status: BuildStatus::Succeeded,
        commit: "0123456789abcdef0123456789abcdef01234567".to_owned(),
        release: Some("1.0.0".to_owned()),
        created_at: OffsetDateTime::UNIX_EPOCH,
        finished_at: Some(OffsetDateTime::UNIX_EPOCH),
    }
}

async fn list_builds(
    State(fake): State<Fake>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<BuildInfo>>> {
    let apps = fake.apps.lock().expect("lock");
    apps.get(&app).ok_or_else(|| not_found(&app))?;
    Ok(Json(vec![build_info()]))
}

async fn build_output(
    State(fake): State<Fake>,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<Json<BuildOutput>> {
    let apps = fake.apps.lock().expect("lock");
    apps.get(&app).ok_or_else(|| not_found(&app))?;
    if id != "latest" && id != BUILD_ID.to_string() {
        return Err(error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("build `{id}` not found"),
        ));
    }
    Ok(Json(BuildOutput {
        id: BUILD_ID,
        status: BuildStatus::Succeeded,
        output: BUILD_LOG.to_owned(),
    }))
}
