//! The router's Prometheus series, through the `metrics` facade. An app's handles are looked up
//! once per route table and kept with the site, so a request records its figures without
//! building label sets or searching the registry.
//!
//! Handles come from the recorder installed when they are first used: the binary installs its
//! exporter before the router serves its first request.
//!
//! Beside the Prometheus series each app has an [`AppTraffic`]: plain atomic totals the server
//! reads back every bucket for its time series, which a Prometheus recorder does not offer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use slipway_types::AppName;
use slipway_types::metrics::{LATENCY_BUCKETS, LatencyHistogram};

/// One app's series. Requests for unknown hosts count under `app=""`.
pub(crate) struct AppMetrics {
    /// `slipway_router_requests_total{app,status}`, by status class 1xx…5xx.
    requests: [Counter; 5],
    /// `slipway_router_response_bytes_total{app}`: response body bytes sent to clients.
    response_bytes: Counter,
    /// `slipway_router_request_bytes_total{app}`: request body bytes received from clients.
    pub(crate) request_bytes: Counter,
    /// `slipway_router_request_duration_seconds{app}`: from sending upstream to the end of the
    /// response body.
    duration: Histogram,
    /// `slipway_router_active_requests{app}`: requests being relayed, WebSocket tunnels included.
    pub(crate) active: Gauge,
    /// The same requests, bytes and latencies as readable totals; `None` when they are off.
    traffic: Option<Arc<AppTraffic>>,
}

impl AppMetrics {
    pub(crate) fn new(app: &str, traffic: Option<Arc<AppTraffic>>) -> Self {
        let requests = ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|status| {
            metrics::counter!(
                "slipway_router_requests_total",
                "app" => app.to_owned(),
                "status" => status
            )
        });
        Self {
            requests,
            response_bytes: metrics::counter!(
                "slipway_router_response_bytes_total",
                "app" => app.to_owned()
            ),
            request_bytes: metrics::counter!(
                "slipway_router_request_bytes_total",
                "app" => app.to_owned()
            ),
            duration: metrics::histogram!(
                "slipway_router_request_duration_seconds",
                "app" => app.to_owned()
            ),
            active: metrics::gauge!("slipway_router_active_requests", "app" => app.to_owned()),
            traffic,
        }
    }

    /// A finished request: its status, the time the app took (when one was asked) and the
    /// response bytes sent.
    pub(crate) fn finished(&self, status: u16, service: Option<Duration>, bytes: u64) {
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        };
        self.requests[class].increment(1);
        self.response_bytes.increment(bytes);
        if let Some(service) = service {
            self.duration.record(service.as_secs_f64());
        }
        if let Some(traffic) = &self.traffic {
            traffic.record(class, service, bytes);
        }
    }
}

/// One app's running totals since the router started: one relaxed atomic add per field per
/// request. They only grow; readers take differences.
pub(crate) struct AppTraffic {
    requests: [AtomicU64; 5],
    response_bytes: AtomicU64,
    /// Buckets of [`LatencyHistogram`].
    latency: [AtomicU64; LATENCY_BUCKETS],
}

impl Default for AppTraffic {
    fn default() -> Self {
        Self {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            response_bytes: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl AppTraffic {
    fn record(&self, class: usize, service: Option<Duration>, bytes: u64) {
        self.requests[class].fetch_add(1, Ordering::Relaxed);
        self.response_bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(service) = service {
            let micros = u64::try_from(service.as_micros()).unwrap_or(u64::MAX);
            self.latency[LatencyHistogram::bucket(micros)].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn totals(&self) -> TrafficTotals {
        TrafficTotals {
            requests: std::array::from_fn(|class| self.requests[class].load(Ordering::Relaxed)),
            response_bytes: self.response_bytes.load(Ordering::Relaxed),
            latency: LatencyHistogram(std::array::from_fn(|bucket| {
                self.latency[bucket].load(Ordering::Relaxed)
            })),
        }
    }
}

/// A reading of running totals: requests by status class (1xx…5xx), response body bytes, and
/// the time apps took to answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrafficTotals {
    pub requests: [u64; 5],
    pub response_bytes: u64,
    pub latency: LatencyHistogram,
}

/// [`crate::Router::traffic`]: every routed app's totals and those of unknown hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrafficReading {
    pub apps: Vec<(AppName, TrafficTotals)>,
    pub unknown_hosts: TrafficTotals,
}

/// Every app's [`AppTraffic`], kept across route tables so an app's totals keep growing while
/// its backends change; an app that leaves the route table (deleted) loses them.
pub(crate) struct Traffic {
    enabled: bool,
    apps: HashMap<AppName, Arc<AppTraffic>>,
    unknown_hosts: Arc<AppTraffic>,
}

/// Counting on, as a router runs unless its config says otherwise.
impl Default for Traffic {
    fn default() -> Self {
        Self::new(true)
    }
}

impl Traffic {
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            apps: HashMap::new(),
            unknown_hosts: Arc::default(),
        }
    }

    /// The app's totals, made at its first table; `None` when counting is off.
    pub(crate) fn app(&mut self, app: &AppName) -> Option<Arc<AppTraffic>> {
        self.enabled
            .then(|| Arc::clone(self.apps.entry(app.clone()).or_default()))
    }

    pub(crate) fn unknown_hosts(&self) -> Option<Arc<AppTraffic>> {
        self.enabled.then(|| Arc::clone(&self.unknown_hosts))
    }

    /// Forgets apps that are no longer routed.
    pub(crate) fn retain<'a>(&mut self, routed: impl IntoIterator<Item = &'a AppName>) {
        let routed: std::collections::HashSet<&AppName> = routed.into_iter().collect();
        self.apps.retain(|app, _| routed.contains(app));
    }

    pub(crate) fn reading(&self) -> TrafficReading {
        let mut apps: Vec<(AppName, TrafficTotals)> = self
            .apps
            .iter()
            .map(|(app, traffic)| (app.clone(), traffic.totals()))
            .collect();
        apps.sort_by(|a, b| a.0.cmp(&b.0));
        TrafficReading {
            apps,
            unknown_hosts: self.unknown_hosts.totals(),
        }
    }
}

/// `slipway_router_open_connections{listener}`: client connections open on the `http` or
/// `https` listener, TLS handshakes in progress included.
pub(crate) fn open_connections(https: bool) -> Gauge {
    let listener = if https { "https" } else { "http" };
    metrics::gauge!("slipway_router_open_connections", "listener" => listener)
}

/// `slipway_router_tls_handshakes_total` by outcome: `full`, `resumed`, `failed`, `timed_out`.
pub(crate) fn count_handshake(outcome: &'static str) {
    metrics::counter!("slipway_router_tls_handshakes_total", "outcome" => outcome).increment(1);
}

/// `slipway_router_closed_connections_total{reason}`: connections the router closed on its own
/// initiative: `header_timeout` (a request head not complete in time, as a slowloris client
/// does) or `idle` (no request for the keep-alive timeout).
pub(crate) fn count_closed(reason: &'static str) {
    metrics::counter!("slipway_router_closed_connections_total", "reason" => reason).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(app: &str) -> AppName {
        app.parse().expect("a valid app name")
    }

    #[test]
    fn finished_requests_add_up_by_class_bytes_and_latency() {
        let mut traffic = Traffic::new(true);
        let shop = traffic.app(&name("shop"));
        let metrics = AppMetrics::new("shop", shop);
        metrics.finished(200, Some(Duration::from_millis(3)), 100);
        metrics.finished(204, Some(Duration::from_millis(3)), 0);
        metrics.finished(503, None, 20);
        metrics.finished(101, None, 0);

        let reading = traffic.reading();
        let [(app, totals)] = reading.apps.as_slice() else {
            panic!("one app: {reading:?}");
        };
        assert_eq!(app.as_str(), "shop");
        assert_eq!(totals.requests, [1, 2, 0, 0, 1]);
        assert_eq!(totals.response_bytes, 120);
        assert_eq!(
            totals.latency.count(),
            2,
            "only answers the app gave are timed"
        );
        assert_eq!(
            totals.latency.0[LatencyHistogram::bucket(3_000)],
            2,
            "{:?}",
            totals.latency.sparse()
        );
    }

    #[test]
    fn an_apps_totals_outlive_tables_until_it_is_no_longer_routed() {
        let mut traffic = Traffic::new(true);
        let first = traffic.app(&name("shop")).expect("counting is on");
        AppMetrics::new("shop", Some(first)).finished(200, None, 1);
        let again = traffic.app(&name("shop")).expect("counting is on");
        AppMetrics::new("shop", Some(again)).finished(200, None, 1);
        traffic.app(&name("blog"));
        traffic.retain([&name("shop"), &name("blog")]);
        let reading = traffic.reading();
        let apps: Vec<(&str, u64)> = reading
            .apps
            .iter()
            .map(|(app, totals)| (app.as_str(), totals.requests[1]))
            .collect();
        assert_eq!(apps, [("blog", 0), ("shop", 2)]);

        traffic.retain([&name("blog")]);
        assert_eq!(traffic.reading().apps.len(), 1);
    }

    #[test]
    fn counting_off_hands_out_nothing() {
        let mut traffic = Traffic::new(false);
        assert!(traffic.app(&name("shop")).is_none());
        assert!(traffic.unknown_hosts().is_none());
        assert!(traffic.reading().apps.is_empty());
    }
}
