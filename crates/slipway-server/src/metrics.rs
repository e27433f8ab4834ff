//! `/metrics` in Prometheus format. The router records its own series (requests by app and
//! status class, latency, bytes); these are the control plane's.

use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use slipway_types::AppName;

/// Installs the process-wide recorder; call once, at start.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    Ok(PrometheusBuilder::new().install_recorder()?)
}

fn outcome(ok: bool) -> &'static str {
    if ok { "succeeded" } else { "failed" }
}

/// A finished build, with how long it took.
pub fn build(app: &AppName, ok: bool, took: Duration) {
    let app = app.to_string();
    metrics::counter!("slipway_builds_total", "app" => app.clone(), "outcome" => outcome(ok))
        .increment(1);
    metrics::histogram!("slipway_build_duration_seconds", "app" => app).record(took.as_secs_f64());
}

/// A finished rollout of a release (deploy, config change, rollback), with how long it took.
pub fn deploy(app: &AppName, ok: bool, took: Duration) {
    let app = app.to_string();
    metrics::counter!("slipway_releases_total", "app" => app.clone(), "outcome" => outcome(ok))
        .increment(1);
    metrics::histogram!("slipway_deploy_duration_seconds", "app" => app).record(took.as_secs_f64());
}

/// Process containers of an app that are running, as the reconciler last saw them.
pub fn running_containers(app: &AppName, count: usize) {
    metrics::gauge!("slipway_containers_running", "app" => app.to_string()).set(count as f64);
}

/// A finished Postgres backup: failures are counted, and the last success is timestamped so an
/// alert can fire when it gets old.
pub fn backup(app: &AppName, addon: &str, ok: bool) {
    let (app, addon) = (app.to_string(), addon.to_owned());
    metrics::counter!(
        "slipway_backups_total",
        "app" => app.clone(), "addon" => addon.clone(), "outcome" => outcome(ok)
    )
    .increment(1);
    if ok {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        metrics::gauge!("slipway_backup_last_success_timestamp_seconds", "app" => app, "addon" => addon)
            .set(now as f64);
    }
}
