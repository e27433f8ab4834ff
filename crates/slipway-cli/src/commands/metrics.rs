//! `metrics`: the app's time series as a table, one line per bucket.

use slipway_types::metrics::{AppMetrics, MetricsPoint};

use crate::cli::Session;
use crate::table::{Table, time};

pub(crate) async fn show(session: &mut Session<'_>, since: &str) -> anyhow::Result<()> {
    let app = session.app().await?;
    let metrics = session.client()?.app_metrics(&app, since).await?;
    if session.global.json {
        return session.print_json(&metrics);
    }
    session.print(&render(&metrics))
}

/// One line per bucket, oldest first; a bucket in which a release went live names it.
fn render(metrics: &AppMetrics) -> String {
    let mut table = Table::new(&[
        "TIME", "REQ/MIN", "2XX", "4XX", "5XX", "P50", "P95", "P99", "CPU", "MEMORY", "DEPLOY",
    ]);
    for point in &metrics.points {
        let ends = point.at + time::Duration::seconds(i64::from(point.width_secs));
        let deploys: Vec<String> = metrics
            .deploys
            .iter()
            .filter(|deploy| deploy.at >= point.at && deploy.at < ends)
            .map(|deploy| format!("v{}", deploy.version))
            .collect();
        let latency = |pick: fn(&slipway_types::metrics::Percentiles) -> f64| {
            point
                .latency_ms
                .as_ref()
                .map_or_else(|| "-".to_owned(), |p| millis(pick(p)))
        };
        table.row(vec![
            time(point.at),
            per_minute(point),
            point.requests[1].to_string(),
            point.requests[3].to_string(),
            point.requests[4].to_string(),
            latency(|p| p.p50),
            latency(|p| p.p95),
            latency(|p| p.p99),
            if point.processes.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.1}%", point.cpu_percent())
            },
            if point.processes.is_empty() {
                "-".to_owned()
            } else {
                mebibytes(point.memory_bytes())
            },
            if deploys.is_empty() {
                "-".to_owned()
            } else {
                deploys.join(",")
            },
        ]);
    }
    table.render()
}

/// Requests per minute over the bucket, whatever its width.
fn per_minute(point: &MetricsPoint) -> String {
    let rate = point.total_requests() as f64 * 60.0 / f64::from(point.width_secs.max(1));
    if rate.fract() == 0.0 {
        format!("{rate:.0}")
    } else {
        format!("{rate:.1}")
    }
}

fn millis(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{ms:.1}ms")
    }
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1}MiB", bytes as f64 / f64::from(1 << 20))
}

#[cfg(test)]
mod tests {
    use slipway_types::metrics::{DeployMarker, Percentiles, ProcessUsage};
    use time::OffsetDateTime;

    use super::*;

    #[test]
    fn a_bucket_per_line_with_rates_percentiles_usage_and_deploys() {
        let start = OffsetDateTime::from_unix_timestamp(1_700_000_040).expect("a time");
        let mut busy = MetricsPoint::empty(start, 60);
        busy.requests = [0, 118, 0, 1, 1];
        busy.latency_ms = Some(Percentiles {
            p50: 4.095,
            p95: 24.575,
            p99: 1310.719,
        });
        busy.processes = vec![ProcessUsage {
            dyno: "web.1".to_owned(),
            cpu_percent: 12.34,
            memory_bytes: 48 << 20,
            memory_limit_bytes: Some(512 << 20),
        }];
        let mut quiet = MetricsPoint::empty(start + time::Duration::minutes(1), 60);
        quiet.requests = [0, 3, 0, 0, 0];
        let metrics = AppMetrics {
            app: "shop".to_owned(),
            points: vec![busy, quiet],
            deploys: vec![DeployMarker {
                version: "1.0.3".to_owned(),
                at: start + time::Duration::seconds(90),
            }],
        };
        assert_eq!(
            render(&metrics),
            "TIME                  REQ/MIN  2XX  4XX  5XX  P50    P95   P99    CPU    MEMORY   DEPLOY\n\
             2023-11-14T22:14:00Z  120      118  1    1    4.1ms  25ms  1.31s  12.3%  48.0MiB  -\n\
             2023-11-14T22:15:00Z  3        3    0    0    -      -     -      -      -        v1.0.3\n"
        );
    }
}
