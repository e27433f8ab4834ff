//! Runs the router alone with one fixed route, for benchmarks against other proxies:
//!
//! ```sh
//! cargo run --release -p slipway-router --example route_to -- 127.0.0.1:8081 bench.localhost 127.0.0.1:8090
//! ```
//! listens on the first address and sends requests for the host to the upstream, until
//! interrupted. No access log is written, as in a proxy benchmark the other side logs nothing.

use std::net::SocketAddr;

use slipway_router::{Router, RouterConfig};
use slipway_types::{Backend, RouteSnapshot, SiteRoutes};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, host, upstream] = args.as_slice() else {
        return Err("usage: route_to LISTEN_ADDR HOST UPSTREAM_ADDR".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let router = Router::new(RouterConfig {
        listen_port: listen.port(),
        ..RouterConfig::default()
    });
    router.update(&RouteSnapshot {
        sites: vec![SiteRoutes {
            app: "bench".parse()?,
            hosts: vec![host.clone()],
            backends: vec![Backend {
                addr: upstream.parse()?,
                id: "upstream".to_owned(),
                dyno: "web.1".to_owned(),
                release: "bench".to_owned(),
            }],
        }],
    });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    router
        .serve(listener, async {
            tokio::signal::ctrl_c().await.ok();
        })
        .await?;
    Ok(())
}
