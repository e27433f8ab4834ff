//! The router's Prometheus series, through the `metrics` facade. An app's handles are looked up
//! once per route table and kept with the site, so a request records its figures without
//! building label sets or searching the registry.
//!
//! Handles come from the recorder installed when they are first used: the binary installs its
//! exporter before the router serves its first request.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

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
}

impl AppMetrics {
    pub(crate) fn new(app: &str) -> Self {
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
