use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{HOST, PATIENCE, TestRouter, Upstream, read_to_close, send, status_of};

#[tokio::test]
async fn a_route_update_swaps_backends_without_a_restart() {
    let old = Upstream::start("web.1").await;
    let new = Upstream::start("web.2").await;
    let router = TestRouter::start().await;

    assert_eq!(router.get(HOST, "/").await.status, StatusCode::NOT_FOUND);

    router.route(vec![old.backend()]);
    assert_eq!(router.get(HOST, "/").await.dyno(), "web.1");

    router.route(vec![new.backend()]);
    for _ in 0..3 {
        assert_eq!(router.get(HOST, "/").await.dyno(), "web.2");
    }
}

#[tokio::test]
async fn a_removed_backend_is_drained_not_cut_off() {
    let old = Upstream::start("web.1").await;
    let new = Upstream::start("web.2").await;
    let router = TestRouter::start().await;
    router.route(vec![old.backend()]);

    let slow = tokio::spawn(send(router.addr, slow_request()));
    router.wait_in_flight(old.addr, 1).await;

    router.route(vec![new.backend()]);
    assert_eq!(
        router.router.in_flight(old.addr),
        1,
        "still counted after removal"
    );
    assert_eq!(router.get(HOST, "/").await.dyno(), "web.2");

    old.release();
    let reply = slow.await.expect("slow request task");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "slow done");
    router.wait_in_flight(old.addr, 0).await;
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight() {
    let web = Upstream::start("web.1").await;
    let mut router = TestRouter::start().await;
    router.route(vec![web.backend()]);

    let slow = tokio::spawn(send(router.addr, slow_request()));
    router.wait_in_flight(web.addr, 1).await;

    router.begin_shutdown();
    let mut refused = false;
    for _ in 0..500 {
        if TcpStream::connect(router.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "the router still accepts connections after shutdown"
    );
    assert!(
        !router.task.is_finished(),
        "serve returned with a request in flight"
    );

    web.release();
    let reply = slow.await.expect("slow request task");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "slow done");
    tokio::time::timeout(PATIENCE, &mut router.task)
        .await
        .expect("serve returns once drained")
        .expect("serve task")
        .expect("serve result");
}

fn slow_request() -> Request<Empty<Bytes>> {
    Request::get("/slow")
        .header("host", HOST)
        .body(Empty::new())
        .expect("request")
}

/// A client reusing a keep-alive connection just as the router stops still gets its answer,
/// with `Connection: close`, instead of a connection closed under its request.
#[tokio::test]
async fn a_request_on_a_kept_alive_connection_during_shutdown_is_answered_then_closed() {
    let web = Upstream::start("web.1").await;
    let mut router = TestRouter::start().await;
    router.route(vec![web.backend()]);

    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    let request = format!("GET /again HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut first = [0; 12];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut first))
        .await
        .expect("first answer in time")
        .expect("read");
    assert_eq!(&first, b"HTTP/1.1 200");
    router.wait_in_flight(web.addr, 0).await;

    router.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write again");
    let rest = read_to_close(&mut stream).await;
    let second = &rest[rest.find("HTTP/1.1 ").expect("a second response")..];
    assert_eq!(status_of(second), 200, "{second}");
    assert!(second.contains("\r\nconnection: close\r\n"), "{second}");
    tokio::time::timeout(PATIENCE, &mut router.task)
        .await
        .expect("serve returns once drained")
        .expect("serve task")
        .expect("serve result");
}
