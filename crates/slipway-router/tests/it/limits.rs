//! Body size, `Expect: 100-continue`, header and idle deadlines, and the connection cap.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{Channel, Full};
use slipway_router::RouterConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    HOST, PATIENCE, PUBLIC_PORT, TestRouter, Upstream, read_to_close, send, status_of,
};

async fn router_with(config: RouterConfig) -> (Upstream, TestRouter) {
    let web = Upstream::start("web.1").await;
    let router = TestRouter::with_config(RouterConfig {
        listen_port: PUBLIC_PORT,
        ..config
    })
    .await;
    router.route(vec![web.backend()]);
    (web, router)
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_gets_413() {
    let (web, router) = router_with(RouterConfig {
        max_body_bytes: 100,
        ..RouterConfig::default()
    })
    .await;
    let (mut upload, body) = Channel::<Bytes>::new(4);
    tokio::spawn(async move {
        for _ in 0..4 {
            if upload.send_data(Bytes::from(vec![b'x'; 40])).await.is_err() {
                return;
            }
        }
    });
    let req = Request::post("/upload")
        .header("host", HOST)
        .body(body)
        .expect("request");
    let reply = send(router.addr, req).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.body
    );
    assert!(reply.body.contains("100-byte limit"), "{}", reply.body);

    let small = Request::post("/upload")
        .header("host", HOST)
        .body(Full::new(Bytes::from_static(b"small enough")))
        .expect("request");
    let reply = send(router.addr, small).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "small enough");
    router.wait_quiet(web.addr).await;
}

#[tokio::test]
async fn expect_continue_is_answered_before_the_body_is_sent() {
    let (web, router) = router_with(RouterConfig::default()).await;
    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    stream
        .write_all(
            format!(
                "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\n\
                 Expect: 100-continue\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("write head");
    let mut interim = [0; 25];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut interim))
        .await
        .expect("100 in time")
        .expect("read 100");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").await.expect("write body");
    let raw = read_to_close(&mut stream).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert!(raw.ends_with("hello"), "{raw}");
    router.wait_quiet(web.addr).await;
}

#[tokio::test]
async fn expect_continue_with_a_body_over_the_limit_gets_413_without_100() {
    let (web, router) = router_with(RouterConfig {
        max_body_bytes: 100,
        ..RouterConfig::default()
    })
    .await;
    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    stream
        .write_all(
            format!(
                "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 1000\r\n\
                 Expect: 100-continue\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("write head");
    let raw = read_to_close(&mut stream).await;
    assert_eq!(status_of(&raw), 413, "{raw}");
    assert!(!raw.contains("100 Continue"), "{raw}");
    router.wait_quiet(web.addr).await;
}

fn short_deadlines() -> RouterConfig {
    RouterConfig {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(1500),
        ..RouterConfig::default()
    }
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_cut_off() {
    let (web, router) = router_with(short_deadlines()).await;
    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    stream
        .write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n").as_bytes())
        .await
        .expect("write");
    let mut sent = 0;
    let raw = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if stream.write_all(b"X-Slow: 1\r\n").await.is_err() || sent == 50 {
            break read_to_close(&mut stream).await;
        }
        sent += 1;
    };
    assert!(sent < 50, "still open after {sent} header lines");
    assert!(raw.is_empty(), "no request was made: {raw}");
    router.wait_quiet(web.addr).await;
}

#[tokio::test]
async fn a_connection_that_never_sends_anything_is_closed() {
    let (web, router) = router_with(short_deadlines()).await;
    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    let raw = read_to_close(&mut stream).await;
    assert!(raw.is_empty(), "{raw}");
    router.wait_quiet(web.addr).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_outlives_the_header_deadline_then_closes() {
    let (web, router) = router_with(short_deadlines()).await;
    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    let request = format!("GET /a HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    for _ in 0..2 {
        stream.write_all(request.as_bytes()).await.expect("write");
        let head = read_response_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        // Longer than the header deadline, shorter than the idle one.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let rest = read_to_close(&mut stream).await;
    assert!(rest.is_empty(), "{rest}");
    router.wait_quiet(web.addr).await;
}

/// Reads one response with a `content-length` body and returns its head.
async fn read_response_head(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .and_then(|value| value.parse().ok())
                .expect("content-length");
            if body.len() >= length {
                return head.to_owned();
            }
        }
        let mut buf = [0; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "closed early: {text}");
        received.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let (web, router) = router_with(RouterConfig {
        max_connections: 1,
        ..RouterConfig::default()
    })
    .await;
    let first = TcpStream::connect(router.addr).await.expect("connect");
    router.wait_connections(1).await;

    let mut second = TcpStream::connect(router.addr).await.expect("connect");
    second
        .write_all(
            format!("GET /b HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
    let mut byte = [0; 1];
    let waited = tokio::time::timeout(Duration::from_millis(500), second.read(&mut byte)).await;
    assert!(
        waited.is_err(),
        "the second connection was served while the first held the slot"
    );
    assert_eq!(router.router.open_connections(), 1);

    drop(first);
    let raw = read_to_close(&mut second).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    router.wait_quiet(web.addr).await;
}
