use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use slipway_router::RouterConfig;

use crate::support::{HOST, PUBLIC_PORT, TestRouter, Upstream, dead_addr, dead_backend, send};

#[tokio::test]
async fn get_is_retried_on_another_backend_when_connecting_fails() {
    let web = Upstream::start("web.1").await;
    let dead = dead_addr().await;
    let router = TestRouter::start().await;
    // A fresh table starts its round robin at the first backend, so the first request tries
    // the dead one.
    router.route(vec![dead_backend(dead), web.backend()]);

    for _ in 0..4 {
        let reply = router.get(HOST, "/").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.dyno(), "web.1");
    }
    assert_eq!(router.router.in_flight(dead), 0);
}

#[tokio::test]
async fn post_to_a_dead_backend_gets_502_without_retry() {
    let web = Upstream::start("web.1").await;
    let dead = dead_addr().await;
    let router = TestRouter::start().await;
    router.route(vec![dead_backend(dead), web.backend()]);

    let req = Request::post("/form")
        .header("host", HOST)
        .body(Full::new(Bytes::from_static(b"name=value")))
        .expect("request");
    let reply = send(router.addr, req).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.header("content-type"), "text/html; charset=utf-8");
    assert!(
        reply.body.contains("The app could not be reached."),
        "{}",
        reply.body
    );
    assert!(
        !reply.body.contains(&dead.to_string()),
        "error pages do not show internal addresses"
    );
}

#[tokio::test]
async fn get_with_only_a_dead_backend_gets_502() {
    let dead = dead_addr().await;
    let router = TestRouter::start().await;
    router.route(vec![dead_backend(dead)]);

    let reply = router.get(HOST, "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn an_app_that_does_not_answer_in_time_gets_504() {
    let web = Upstream::start("web.1").await;
    let router = TestRouter::with_config(RouterConfig {
        request_timeout: Duration::from_millis(300),
        listen_port: PUBLIC_PORT,
        ..RouterConfig::default()
    })
    .await;
    router.route(vec![web.backend()]);

    let reply = router.get(HOST, "/sleep").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        reply.body.contains("The app did not respond in time."),
        "{}",
        reply.body
    );
    router.wait_in_flight(web.addr, 0).await;
}
