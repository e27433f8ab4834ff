use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{Empty, Full};
use hyper_util::rt::TokioIo;
use slipway_router::RouterConfig;
use tokio::net::TcpStream;

use crate::support::{
    HOST, PATIENCE, PUBLIC_PORT, TestRouter, Upstream, dead_addr, dead_backend, read_reply, send,
};

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

/// Accepts every connection and closes it unanswered, as Docker's port proxy does for a
/// published port whose container has nothing listening.
async fn closing_proxy() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    addr
}

#[tokio::test]
async fn get_is_retried_when_a_new_connection_closes_unanswered_but_post_is_not() {
    let web = Upstream::start("web.1").await;
    let closing = closing_proxy().await;
    let router = TestRouter::start().await;
    router.route(vec![dead_backend(closing), web.backend()]);

    let reply = router.get(HOST, "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.dyno(), "web.1");

    // A fresh router, whose round robin starts at the closing backend again.
    let router = TestRouter::start().await;
    router.route(vec![dead_backend(closing), web.backend()]);
    let req = Request::post("/form")
        .header("host", HOST)
        .body(Full::new(Bytes::from_static(b"name=value")))
        .expect("request");
    let reply = send(router.addr, req).await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_GATEWAY,
        "a POST may have reached the app"
    );
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

/// The request deadline is one timer per connection, moved for each request: it must still
/// fire for a late request after answered ones, and again after it has fired once.
#[tokio::test]
async fn every_request_on_a_keep_alive_connection_gets_its_own_deadline() {
    let web = Upstream::start("web.1").await;
    let router = TestRouter::with_config(RouterConfig {
        request_timeout: Duration::from_millis(300),
        listen_port: PUBLIC_PORT,
        ..RouterConfig::default()
    })
    .await;
    router.route(vec![web.backend()]);

    let stream = TcpStream::connect(router.addr)
        .await
        .expect("connect to router");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    for (path, expected) in [
        ("/", StatusCode::OK),
        ("/", StatusCode::OK),
        ("/sleep", StatusCode::GATEWAY_TIMEOUT),
        ("/", StatusCode::OK),
        ("/sleep", StatusCode::GATEWAY_TIMEOUT),
    ] {
        let req = Request::get(path)
            .header("host", HOST)
            .body(Empty::<Bytes>::new())
            .expect("request");
        sender.ready().await.expect("connection kept open");
        let response = tokio::time::timeout(PATIENCE, sender.send_request(req))
            .await
            .expect("response in time")
            .expect("response");
        let reply = read_reply(response).await;
        assert_eq!(reply.status, expected, "{path}");
    }
    router.wait_in_flight(web.addr, 0).await;
}
