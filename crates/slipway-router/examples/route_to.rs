//! Runs the router alone with one fixed route, for benchmarks against other proxies:
//!
//! ```sh
//! cargo run --release -p slipway-router --example route_to -- 127.0.0.1:8081 bench.localhost 127.0.0.1:8090
//! cargo run --release -p slipway-router --example route_to -- 127.0.0.1:8081 bench.localhost 127.0.0.1:8090 \
//!     127.0.0.1:8443 [cert.pem key.pem]
//! ```
//! listens on the first address and sends requests for the host to the upstream, until
//! interrupted. With a fourth address it also serves HTTPS there, with the given certificate
//! chain and key or else a self-signed certificate for the host; plain HTTP is still proxied, not
//! redirected. No access log is written, as in a proxy benchmark the other side logs nothing;
//! metrics are recorded into a Prometheus recorder and per-app counters, as in the server.
//! `ROUTE_TO_METRICS=prometheus` leaves the per-app counters out and `ROUTE_TO_METRICS=off`
//! both, to measure what they cost (deploy/bench/metrics.sh). `ROUTE_TO_WORKERS=N` sets the
//! router's worker threads (default: one per CPU; 0 serves connections on the accepting runtime).

use std::net::SocketAddr;
use std::sync::Arc;

use slipway_router::{Router, RouterConfig};
use slipway_types::{Backend, CertSnapshot, RouteSnapshot, ServedCert, SiteRoutes};
use tokio::net::TcpListener;

/// The allocator the `slipway` binary uses, so the router is measured as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str =
    "usage: route_to LISTEN_ADDR HOST UPSTREAM_ADDR [TLS_LISTEN_ADDR [CERT_PEM KEY_PEM]]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, host, upstream, tls) = match args.as_slice() {
        [listen, host, upstream] => (listen, host, upstream, None),
        [listen, host, upstream, tls_listen] => (listen, host, upstream, Some((tls_listen, None))),
        [listen, host, upstream, tls_listen, cert, key] => (
            listen,
            host,
            upstream,
            Some((tls_listen, Some((cert, key)))),
        ),
        _ => return Err(USAGE.into()),
    };
    let metrics = std::env::var("ROUTE_TO_METRICS").unwrap_or_else(|_| "on".to_owned());
    let _recorder = match metrics.as_str() {
        "on" | "prometheus" => {
            Some(metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?)
        }
        "off" => None,
        other => {
            return Err(format!("ROUTE_TO_METRICS `{other}` must be on, prometheus or off").into());
        }
    };
    let listen: SocketAddr = listen.parse()?;
    let tls_listen: Option<SocketAddr> = tls.map(|(addr, _)| addr.parse()).transpose()?;
    // No `https_port`: plain HTTP is benchmarked too, so it must be proxied, not redirected.
    let defaults = RouterConfig::default();
    let worker_threads = match std::env::var("ROUTE_TO_WORKERS") {
        Ok(count) => count
            .parse()
            .map_err(|_| format!("ROUTE_TO_WORKERS `{count}` must be a number of threads"))?,
        Err(_) => defaults.worker_threads,
    };
    let router = Router::new(RouterConfig {
        listen_port: listen.port(),
        app_traffic: metrics == "on",
        worker_threads,
        ..defaults
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
            maintenance: false,
            canary: None,
            rate_limit: None,
        }],
    });
    let mut servers = tokio::task::JoinSet::new();
    if let (Some(addr), Some((_, files))) = (tls_listen, tls) {
        let cert = match files {
            Some((cert, key)) => ServedCert {
                hosts: vec![host.parse()?],
                chain_pem: std::fs::read_to_string(cert)?,
                key_pem: std::fs::read_to_string(key)?,
            },
            None => self_signed(host)?,
        };
        if let Some(err) = router
            .update_certs(&CertSnapshot { certs: vec![cert] })
            .into_iter()
            .next()
        {
            return Err(err.into());
        }
        let listener = TcpListener::bind(addr).await?;
        servers.spawn(Arc::clone(&router).serve_tls(listener, interrupted()));
    }
    let listener = TcpListener::bind(listen).await?;
    servers.spawn(router.serve(listener, interrupted()));
    while let Some(served) = servers.join_next().await {
        served??;
    }
    Ok(())
}

async fn interrupted() {
    tokio::signal::ctrl_c().await.ok();
}

fn self_signed(host: &str) -> Result<ServedCert, Box<dyn std::error::Error>> {
    let generated = rcgen::generate_simple_self_signed(vec![host.to_owned()])?;
    Ok(ServedCert {
        hosts: vec![host.parse()?],
        chain_pem: generated.cert.pem(),
        key_pem: generated.signing_key.serialize_pem(),
    })
}
