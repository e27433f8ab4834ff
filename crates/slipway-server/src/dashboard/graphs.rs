//! Line charts drawn on the server as inline SVG: no script and no build step, they print and
//! work with JavaScript off. Each chart is a few polylines over the series' buckets, a scale
//! rounded to 1, 2 or 5 times a power of ten, and a dashed vertical line per release.

use std::fmt::Write;

use slipway_types::metrics::{AppMetrics, DeployMarker, MetricsPoint, PlatformMetrics};
use time::OffsetDateTime;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 24.0;

/// What a chart's numbers are, for its scale label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Requests,
    Millis,
    Bytes,
}

/// One line of a chart: a value per bucket, `None` where there is nothing to draw.
pub struct Line {
    pub label: &'static str,
    pub color: &'static str,
    pub values: Vec<Option<f64>>,
}

pub struct Chart {
    /// The element id, for links and tests.
    pub id: &'static str,
    pub title: &'static str,
    pub unit: Unit,
    /// Start of each bucket; every line has a value per bucket.
    pub times: Vec<OffsetDateTime>,
    pub lines: Vec<Line>,
    pub markers: Vec<DeployMarker>,
}

/// Requests by status class, p99 latency and memory of an app, with its releases marked.
pub fn app_charts(metrics: &AppMetrics) -> Vec<Chart> {
    let times: Vec<OffsetDateTime> = metrics.points.iter().map(|p| p.at).collect();
    let mut charts = vec![
        requests_chart("graph-requests", &metrics.points),
        latency_chart("graph-latency", &metrics.points),
        Chart {
            id: "graph-memory",
            title: "Memory, every process",
            unit: Unit::Bytes,
            times: Vec::new(),
            lines: vec![Line {
                label: "memory",
                color: "#6f42c1",
                values: metrics
                    .points
                    .iter()
                    .map(|p| (!p.processes.is_empty()).then(|| p.memory_bytes() as f64))
                    .collect(),
            }],
            markers: Vec::new(),
        },
    ];
    for chart in &mut charts {
        chart.times.clone_from(&times);
        chart.markers.clone_from(&metrics.deploys);
    }
    charts
}

/// The router's requests by status class and p99 latency over every app.
pub fn platform_charts(metrics: &PlatformMetrics) -> Vec<Chart> {
    vec![
        requests_chart("graph-platform-requests", &metrics.router),
        latency_chart("graph-platform-latency", &metrics.router),
    ]
}

fn requests_chart(id: &'static str, points: &[MetricsPoint]) -> Chart {
    let class = |index: usize| -> Vec<Option<f64>> {
        points
            .iter()
            .map(|p| Some(p.requests[index] as f64))
            .collect()
    };
    Chart {
        id,
        title: "Requests per bucket, by status",
        unit: Unit::Requests,
        times: points.iter().map(|p| p.at).collect(),
        lines: vec![
            Line {
                label: "2xx",
                color: "#2e7d32",
                values: class(1),
            },
            Line {
                label: "3xx",
                color: "#1565c0",
                values: class(2),
            },
            Line {
                label: "4xx",
                color: "#ef6c00",
                values: class(3),
            },
            Line {
                label: "5xx",
                color: "#c62828",
                values: class(4),
            },
        ],
        markers: Vec::new(),
    }
}

fn latency_chart(id: &'static str, points: &[MetricsPoint]) -> Chart {
    Chart {
        id,
        title: "Latency p99",
        unit: Unit::Millis,
        times: points.iter().map(|p| p.at).collect(),
        lines: vec![Line {
            label: "p99",
            color: "#00838f",
            values: points.iter().map(|p| p.latency_ms.map(|l| l.p99)).collect(),
        }],
        markers: Vec::new(),
    }
}

impl Chart {
    /// The chart as an `<svg>` element. Only numbers, fixed labels and escaped release
    /// versions go into it.
    pub fn svg(&self) -> String {
        let plot_width = WIDTH - LEFT - RIGHT;
        let plot_height = HEIGHT - TOP - BOTTOM;
        let top_value = nice_ceiling(
            self.lines
                .iter()
                .flat_map(|line| line.values.iter().flatten())
                .fold(0.0, |max: f64, v| max.max(*v)),
        );
        let count = self.times.len();
        let x = |index: usize| LEFT + plot_width * index as f64 / (count.max(2) - 1) as f64;
        let y = |value: f64| TOP + plot_height - plot_height * value / top_value;
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg id="{id}" data-max="{top_value}" class="graph" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">"#,
            id = self.id,
            title = self.title,
        );
        let _ = write!(
            svg,
            r##"<text x="{LEFT}" y="14" font-weight="bold">{title}</text><line x1="{LEFT}" y1="{TOP}" x2="{right}" y2="{TOP}" stroke="#ddd"/><line x1="{LEFT}" y1="{base}" x2="{right}" y2="{base}" stroke="#999"/><text x="{label_x}" y="{top_label}" text-anchor="end">{max}</text><text x="{label_x}" y="{base}" text-anchor="end">0</text>"##,
            title = self.title,
            right = WIDTH - RIGHT,
            base = TOP + plot_height,
            label_x = LEFT - 6.0,
            top_label = TOP + 4.0,
            max = format_value(top_value, self.unit),
        );
        if let (Some(first), Some(last)) = (self.times.first(), self.times.last()) {
            let _ = write!(
                svg,
                r#"<text x="{LEFT}" y="{HEIGHT}" dy="-6">{}</text><text x="{}" y="{HEIGHT}" dy="-6" text-anchor="end">{}</text>"#,
                clock(*first),
                WIDTH - RIGHT,
                clock(*last),
            );
        }
        let mut legend_x = WIDTH - RIGHT;
        for line in self.lines.iter().rev() {
            let _ = write!(
                svg,
                r#"<text x="{legend_x}" y="14" text-anchor="end" fill="{}">{}</text>"#,
                line.color, line.label
            );
            legend_x -= 8.0 + 7.0 * line.label.len() as f64;
        }
        for line in &self.lines {
            for run in runs(&line.values) {
                if let [(index, value)] = run.as_slice() {
                    // A lone value has no line to draw: a dot shows it.
                    let _ = write!(
                        svg,
                        r#"<circle class="series" data-label="{}" cx="{:.1}" cy="{:.1}" r="2.5" fill="{}"/>"#,
                        line.label,
                        x(*index),
                        y(*value),
                        line.color
                    );
                    continue;
                }
                let points: Vec<String> = run
                    .iter()
                    .map(|(index, value)| format!("{:.1},{:.1}", x(*index), y(*value)))
                    .collect();
                let _ = write!(
                    svg,
                    r#"<polyline class="series" data-label="{}" fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
                    line.label,
                    line.color,
                    points.join(" ")
                );
            }
        }
        self.draw_markers(&mut svg, &x);
        svg.push_str("</svg>");
        svg
    }

    /// A dashed line per release inside the chart's time span, placed between the buckets
    /// around it.
    fn draw_markers(&self, svg: &mut String, x: &dyn Fn(usize) -> f64) {
        let (Some(first), Some(last)) = (self.times.first(), self.times.last()) else {
            return;
        };
        let step = match self.times.get(1) {
            Some(second) => (*second - *first).as_seconds_f64(),
            None => 60.0,
        };
        for marker in &self.markers {
            let offset = (marker.at - *first).as_seconds_f64() / step;
            if offset < 0.0 || marker.at > *last + time::Duration::seconds_f64(step) {
                continue;
            }
            let index = offset.floor() as usize;
            let fraction = offset - offset.floor();
            let at = x(index) + (x(index + 1) - x(index)) * fraction;
            let at = at.min(WIDTH - RIGHT);
            let version = escape(&marker.version);
            // Near the right edge the label goes on the line's left, so it is not cut off.
            let (label, anchor) = if at > WIDTH - RIGHT - 60.0 {
                (at - 3.0, "end")
            } else {
                (at + 3.0, "start")
            };
            let _ = write!(
                svg,
                r##"<g class="deploy-marker"><title>v{version} at {when}</title><line x1="{at:.1}" y1="{TOP}" x2="{at:.1}" y2="{base}" stroke="#555" stroke-dasharray="4 3"/><text x="{label:.1}" y="{label_y}" font-size="10" fill="#555" text-anchor="{anchor}">v{version}</text></g>"##,
                when = clock(marker.at),
                base = HEIGHT - BOTTOM,
                label_y = TOP + 10.0,
            );
        }
    }
}

/// Runs of consecutive values, each with its bucket index: a gap breaks the line.
fn runs(values: &[Option<f64>]) -> Vec<Vec<(usize, f64)>> {
    let mut runs = Vec::new();
    let mut current = Vec::new();
    for (index, value) in values.iter().enumerate() {
        match value {
            Some(value) => current.push((index, *value)),
            None if !current.is_empty() => runs.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// The smallest 1, 2 or 5 times a power of ten at or above `max`, and at least 1, so a flat
/// zero line sits at the bottom rather than dividing by zero.
fn nice_ceiling(max: f64) -> f64 {
    if max <= 1.0 {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * power)
        .find(|candidate| *candidate >= max)
        .unwrap_or(10.0 * power)
}

fn format_value(value: f64, unit: Unit) -> String {
    match unit {
        Unit::Requests => format!("{value:.0}"),
        Unit::Millis if value >= 1000.0 => format!("{:.0} s", value / 1000.0),
        Unit::Millis => format!("{value:.0} ms"),
        Unit::Bytes if value >= f64::from(1 << 30) => {
            format!("{:.0} GiB", value / f64::from(1 << 30))
        }
        Unit::Bytes => format!("{:.0} MiB", value / f64::from(1 << 20)),
    }
}

/// `HH:MM` in UTC; the page says which span a chart shows.
fn clock(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!("{:02}:{:02}", at.hour(), at.minute())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use slipway_types::metrics::Percentiles;

    use super::*;

    fn at(minute: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_040 + minute * 60).expect("a time")
    }

    fn metrics() -> AppMetrics {
        let points = (0..4)
            .map(|minute| {
                let mut point = MetricsPoint::empty(at(minute), 60);
                point.requests = [0, 10 * minute as u64, 0, 0, minute as u64];
                point.latency_ms = (minute != 2).then_some(Percentiles {
                    p50: 1.0,
                    p95: 2.0,
                    p99: 30.0,
                });
                point
            })
            .collect();
        AppMetrics {
            app: "shop".to_owned(),
            points,
            deploys: vec![DeployMarker {
                version: "1.0.1<x>".to_owned(),
                at: at(1) + time::Duration::seconds(30),
            }],
        }
    }

    #[test]
    fn scales_round_up_to_one_two_or_five() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(1.5), 2.0);
        assert_eq!(nice_ceiling(30.0), 50.0);
        assert_eq!(nice_ceiling(500.0), 500.0);
        assert_eq!(nice_ceiling(501.0), 1000.0);
    }

    #[test]
    fn a_gap_breaks_a_line_into_runs() {
        let runs = runs(&[Some(1.0), None, Some(2.0), Some(3.0), None]);
        assert_eq!(runs, vec![vec![(0, 1.0)], vec![(2, 2.0), (3, 3.0)]]);
    }

    #[test]
    fn an_app_chart_draws_each_class_and_marks_releases_between_buckets() {
        let charts = app_charts(&metrics());
        let ids: Vec<&str> = charts.iter().map(|c| c.id).collect();
        assert_eq!(ids, ["graph-requests", "graph-latency", "graph-memory"]);

        let requests = charts[0].svg();
        assert!(
            requests.starts_with(r#"<svg id="graph-requests" data-max="50""#),
            "{requests}"
        );
        assert_eq!(requests.matches("<polyline").count(), 4);
        assert!(
            requests.contains(">50</text>"),
            "30 rounds up to 50: {requests}"
        );
        // The release at 1.5 buckets is half-way between the second and third points.
        let half_way = LEFT + (WIDTH - LEFT - RIGHT) * 1.5 / 3.0;
        assert!(
            requests.contains(&format!(r#"x1="{half_way:.1}""#)),
            "{requests}"
        );
        assert!(requests.contains("v1.0.1&lt;x&gt;"), "escaped: {requests}");

        let latency = charts[1].svg();
        assert_eq!(
            (
                latency.matches("<polyline").count(),
                latency.matches("<circle").count()
            ),
            (1, 1),
            "the bucket without requests splits the line, and a lone value is a dot"
        );
        assert_eq!(
            charts[2].svg().matches("<polyline").count(),
            0,
            "no processes"
        );
    }
}
