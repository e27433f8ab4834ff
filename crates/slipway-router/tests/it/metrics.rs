//! The per-app series, read back through a Prometheus recorder installed once for this test
//! binary. Each test uses its own app name, since the recorder is shared.

use std::sync::OnceLock;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{Empty, Full};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use slipway_types::RouteSnapshot;

use crate::support::{TestRouter, Upstream, send, send_streaming, site};

fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("no other recorder in this test binary")
    })
}

/// The value of the series whose name and labels are exactly `series`, if rendered.
fn value(series: &str) -> Option<f64> {
    recorder().render().lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().expect("numeric sample"))
    })
}

#[tokio::test]
async fn requests_bytes_latency_and_active_requests_are_counted_per_app() {
    recorder();
    let web = Upstream::start("web.1").await;
    let router = TestRouter::start().await;
    let host = "metered.example.com";
    router.router.update(&RouteSnapshot {
        sites: vec![site("metered", &[host], vec![web.backend()])],
    });

    for _ in 0..3 {
        assert_eq!(router.get(host, "/").await.status, StatusCode::OK);
    }
    let upload = Request::post("/upload")
        .header("host", host)
        .body(Full::new(Bytes::from_static(b"twelve bytes")))
        .expect("request");
    let reply = send(router.addr, upload).await;
    assert_eq!(reply.body, "twelve bytes");

    let slow = Request::get("/slow")
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let pending = tokio::spawn(send_streaming(router.addr, slow));
    router.wait_in_flight(web.addr, 1).await;
    assert_eq!(
        value(r#"slipway_router_active_requests{app="metered"}"#),
        Some(1.0)
    );
    web.release();
    let response = pending.await.expect("slow request");
    assert_eq!(response.status(), StatusCode::OK);
    drop(response);
    router.wait_quiet(web.addr).await;

    assert_eq!(
        value(r#"slipway_router_requests_total{app="metered",status="2xx"}"#),
        Some(5.0)
    );
    assert_eq!(
        value(r#"slipway_router_request_bytes_total{app="metered"}"#),
        Some(12.0)
    );
    assert!(
        value(r#"slipway_router_response_bytes_total{app="metered"}"#).unwrap_or_default() > 12.0
    );
    assert_eq!(
        value(r#"slipway_router_request_duration_seconds_count{app="metered"}"#),
        Some(5.0)
    );
    assert_eq!(
        value(r#"slipway_router_active_requests{app="metered"}"#),
        Some(0.0)
    );
}

#[tokio::test]
async fn error_pages_count_under_their_status_class() {
    recorder();
    let router = TestRouter::start().await;
    let host = "empty.example.com";
    router.router.update(&RouteSnapshot {
        sites: vec![site("emptyapp", &[host], vec![])],
    });
    assert_eq!(
        router.get(host, "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        value(r#"slipway_router_requests_total{app="emptyapp",status="5xx"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(r#"slipway_router_request_duration_seconds_count{app="emptyapp"}"#),
        Some(0.0),
        "no app was asked, so no latency"
    );
}
