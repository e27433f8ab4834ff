//! Runs the router alone with four routes to the same upstream, for measuring what a canary
//! split and a rate limit cost per request (`deploy/bench/canary.sh`):
//!
//! ```sh
//! cargo run --release -p slipway-router --example canary_split -- 127.0.0.1:8081 127.0.0.1:8090
//! ```
//!
//! `plain.localhost` has one backend; `pair.localhost` two (the same upstream under two container
//! ids); `split.localhost` one plus a canary backend taking 20% of the requests, so against
//! `pair` only the split and its per-release counters differ (with a second backend the router
//! keeps each request's headers for a retry, whichever side it is on); `limited.localhost` has one
//! backend and a rate limit too high to refuse anything, so every request pays for a bucket
//! check. Listens until interrupted; no access log, metrics recorded as in the server.

use std::net::SocketAddr;

use slipway_router::{Router, RouterConfig};
use slipway_types::{Backend, CanaryRoutes, RateLimit, RatePeriod, RouteSnapshot, SiteRoutes};
use tokio::net::TcpListener;

const USAGE: &str = "usage: canary_split LISTEN_ADDR UPSTREAM_ADDR";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream] = args.as_slice() else {
        return Err(USAGE.into());
    };
    let _metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let listen: SocketAddr = listen.parse()?;
    let upstream: SocketAddr = upstream.parse()?;
    let backend = |id: &str, release: &str| Backend {
        addr: upstream,
        id: id.to_owned(),
        dyno: "web.1".to_owned(),
        release: release.to_owned(),
    };
    let site = |app: &str| SiteRoutes {
        app: app.parse().expect("valid app name"),
        hosts: vec![format!("{app}.localhost")],
        backends: vec![backend(&format!("{app}-stable"), "1.0.0")],
        maintenance: false,
        canary: None,
        rate_limit: None,
    };
    let router = Router::new(RouterConfig {
        listen_port: listen.port(),
        ..RouterConfig::default()
    });
    router.update(&RouteSnapshot {
        sites: vec![
            site("plain"),
            SiteRoutes {
                backends: vec![backend("pair-1", "1.0.0"), backend("pair-2", "1.0.0")],
                ..site("pair")
            },
            SiteRoutes {
                canary: Some(CanaryRoutes {
                    release: "1.1.0".to_owned(),
                    backends: vec![backend("split-canary", "1.1.0")],
                    percent: 20,
                    sticky: false,
                }),
                ..site("split")
            },
            SiteRoutes {
                rate_limit: Some(RateLimit {
                    requests: 1_000_000_000,
                    period: RatePeriod::Second,
                    burst: 1_000_000_000,
                }),
                ..site("limited")
            },
        ],
    });
    let listener = TcpListener::bind(listen).await?;
    router
        .serve(listener, async {
            tokio::signal::ctrl_c().await.ok();
        })
        .await?;
    Ok(())
}
