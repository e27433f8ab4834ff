//! `GET /v1/apps/{app}/metrics?since=1h`: the app's time series with its deploy markers, and
//! `GET /v1/admin/metrics?since=1h`: the platform's.

use std::path::Path as FsPath;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use slipway_store::App;
use slipway_types::api::{BuildStatus, ReleaseStatus};
use slipway_types::metrics::{AppMetrics, DeployMarker, DiskUsage, PlatformMetrics};
use time::OffsetDateTime;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// What `since` is when not given.
pub const DEFAULT_SINCE: Duration = Duration::from_secs(3600);

#[derive(Debug, Default, Deserialize)]
pub struct MetricsQuery {
    since: Option<String>,
}

impl MetricsQuery {
    fn since(&self, reach: Duration) -> ApiResult<Duration> {
        let Some(text) = self.since.as_deref() else {
            return Ok(DEFAULT_SINCE);
        };
        parse_since(text)
            .filter(|since| *since <= reach)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "since `{text}` must be a duration like 30m, 6h or 7d, at most {}d",
                    reach.as_secs() / 86_400
                ))
            })
    }
}

/// `90s`, `30m`, `6h`, `7d`: a number and a unit, more than zero.
pub fn parse_since(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    let seconds = digits.parse::<u64>().ok()?.checked_mul(scale)?;
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

pub async fn app(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<MetricsQuery>,
) -> ApiResult<Json<AppMetrics>> {
    let app = state.app_for(&caller, &name).await?;
    let since = query.since(state.series.reach())?;
    Ok(Json(app_metrics(&state, &app, since).await?))
}

/// The app's points and the releases made over the last `since` that went live (succeeded,
/// or rolled back later), marked at the time they were made.
pub async fn app_metrics(state: &AppState, app: &App, since: Duration) -> ApiResult<AppMetrics> {
    let points = state.series.app_points(&state.store, app.id, since).await?;
    let from = points
        .first()
        .map_or_else(OffsetDateTime::now_utc, |point| point.at);
    let mut deploys: Vec<DeployMarker> = state
        .store
        .releases(app.id)
        .await?
        .into_iter()
        .filter(|release| {
            matches!(
                release.status,
                ReleaseStatus::Succeeded | ReleaseStatus::RolledBack
            ) && release.created_at >= from
        })
        .map(|release| DeployMarker {
            version: release.version.to_string(),
            at: release.created_at,
        })
        .collect();
    deploys.sort_by_key(|marker| marker.at);
    Ok(AppMetrics {
        app: app.name.to_string(),
        points,
        deploys,
    })
}

pub async fn platform(
    State(state): State<AppState>,
    Query(query): Query<MetricsQuery>,
) -> ApiResult<Json<PlatformMetrics>> {
    let since = query.since(state.series.reach())?;
    Ok(Json(platform_metrics(&state, since).await?))
}

/// The router's traffic over every app, builds running now and the data dir's disk.
pub async fn platform_metrics(state: &AppState, since: Duration) -> ApiResult<PlatformMetrics> {
    let router = state.series.platform_points(&state.store, since).await?;
    let mut builds_running = 0;
    for app in state.store.apps().await? {
        builds_running += state
            .store
            .builds(app.id)
            .await?
            .iter()
            .filter(|build| build.status == BuildStatus::Pending)
            .count();
    }
    Ok(PlatformMetrics {
        router,
        builds_running,
        disk: disk_usage(&state.config.data_dir),
    })
}

/// The file system holding `dir`; `None` when it cannot be asked.
fn disk_usage(dir: &FsPath) -> Option<DiskUsage> {
    let stats = rustix::fs::statvfs(dir).ok()?;
    Some(DiskUsage {
        total_bytes: stats.f_blocks.saturating_mul(stats.f_frsize),
        available_bytes: stats.f_bavail.saturating_mul(stats.f_frsize),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_number_and_a_unit() {
        assert_eq!(parse_since("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_since("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_since("6h"), Some(Duration::from_secs(6 * 3600)));
        assert_eq!(parse_since("7d"), Some(Duration::from_secs(7 * 86_400)));
        for bad in ["", "h", "1", "0m", "-1h", "1w", "1.5h", "1 h"] {
            assert_eq!(parse_since(bad), None, "{bad}");
        }
    }

    #[test]
    fn since_beyond_the_series_reach_is_refused_naming_it() {
        let reach = Duration::from_secs(30 * 86_400);
        let query = |since: &str| MetricsQuery {
            since: Some(since.to_owned()),
        };
        assert_eq!(query("30d").since(reach).ok(), Some(reach));
        let err = query("31d").since(reach).expect_err("too far back");
        assert_eq!(
            err.message(),
            "since `31d` must be a duration like 30m, 6h or 7d, at most 30d"
        );
        assert_eq!(
            MetricsQuery::default().since(reach).ok(),
            Some(DEFAULT_SINCE)
        );
    }
}
