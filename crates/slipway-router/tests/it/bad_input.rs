//! Malformed, hostile and interrupted traffic: each gets the right status or a closed
//! connection, nothing panics, and no request or connection is left counted afterwards.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use slipway_router::{AccessLogSink, RouterConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{
    HOST, PATIENCE, PUBLIC_PORT, TestRouter, Upstream, dead_backend, raw_exchange, status_of,
};

async fn routed() -> (Upstream, TestRouter) {
    let web = Upstream::start("web.1").await;
    let router = TestRouter::start().await;
    router.route(vec![web.backend()]);
    (web, router)
}

/// Sends `request` and checks the status the router answers with, then that the router still
/// serves a normal request and let go of everything.
async fn expect_status(request: &[u8], expected: u16) {
    let (web, router) = routed().await;
    let raw = raw_exchange(router.addr, request).await;
    assert_eq!(status_of(&raw), expected, "{raw}");
    assert_eq!(router.get(HOST, "/after").await.status, StatusCode::OK);
    router.wait_quiet(web.addr).await;
}

#[tokio::test]
async fn a_malformed_request_line_gets_400() {
    expect_status(b"GARBAGE\r\n\r\n", 400).await;
    expect_status(b"GET / HTTP/9.9\r\nHost: demo.example.com\r\n\r\n", 400).await;
}

#[tokio::test]
async fn malformed_headers_get_400() {
    expect_status(b"GET / HTTP/1.1\r\nHost demo.example.com\r\n\r\n", 400).await;
    expect_status(
        b"GET / HTTP/1.1\r\nHost: demo.example.com\r\nX-Bad: a\0b\r\n\r\n",
        400,
    )
    .await;
}

#[tokio::test]
async fn a_missing_or_invalid_host_gets_400() {
    expect_status(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 400).await;
    expect_status(b"GET / HTTP/1.0\r\n\r\n", 400).await;
    expect_status(
        b"GET / HTTP/1.1\r\nHost: demo example.com\r\nConnection: close\r\n\r\n",
        400,
    )
    .await;
    expect_status(
        b"GET / HTTP/1.1\r\nHost: :8080\r\nConnection: close\r\n\r\n",
        400,
    )
    .await;
}

#[tokio::test]
async fn a_host_with_a_port_or_a_trailing_dot_is_routed() {
    let (web, router) = routed().await;
    for host in [
        "demo.example.com:8080",
        "demo.example.com.",
        "DEMO.example.com.:80",
    ] {
        let request = format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let raw = raw_exchange(router.addr, request.as_bytes()).await;
        assert_eq!(status_of(&raw), 200, "{host}: {raw}");
        assert!(raw.contains(&format!("host: {host}\n")), "{host}: {raw}");
    }
    router.wait_quiet(web.addr).await;
}

#[tokio::test]
async fn huge_headers_get_431() {
    let big = "a".repeat(100 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {big}\r\n\r\n");
    expect_status(request.as_bytes(), 431).await;
}

#[tokio::test]
async fn an_absurd_content_length_is_refused() {
    expect_status(
        b"POST /upload HTTP/1.1\r\nHost: demo.example.com\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        400,
    )
    .await;
    expect_status(
        b"POST /upload HTTP/1.1\r\nHost: demo.example.com\r\nContent-Length: -1\r\n\r\n",
        400,
    )
    .await;
    expect_status(
        b"POST /upload HTTP/1.1\r\nHost: demo.example.com\r\nContent-Length: 1000000000000\r\n\r\n",
        413,
    )
    .await;
}

#[tokio::test]
async fn duplicate_content_lengths_that_disagree_get_400() {
    expect_status(
        b"POST /upload HTTP/1.1\r\nHost: demo.example.com\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc",
        400,
    )
    .await;
}

#[tokio::test]
async fn a_transfer_encoding_that_does_not_end_in_chunked_gets_400() {
    expect_status(
        b"POST /upload HTTP/1.1\r\nHost: demo.example.com\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        400,
    )
    .await;
}

/// The classic CL.TE smuggling attempt: a front end that trusted `Content-Length` would pass
/// the tail on as a second request. The router decodes the chunked body, answers once and
/// closes, so the tail never becomes a request.
#[tokio::test]
async fn content_length_with_chunked_cannot_smuggle_a_request() {
    let (web, router) = routed().await;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n\
         0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
    );
    let raw = raw_exchange(router.addr, request.as_bytes()).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert_eq!(
        raw.matches("HTTP/1.1 ").count(),
        1,
        "one response only: {raw}"
    );
    assert!(raw.contains("POST /\n"), "{raw}");
    assert!(!raw.contains("smuggled"), "{raw}");
    assert!(!raw.contains("content-length: 40"), "{raw}");
    router.wait_quiet(web.addr).await;
}

#[tokio::test]
async fn invalid_utf8_in_the_path_gets_400() {
    expect_status(
        b"GET /caf\xc3\xa9/\xff\xfe HTTP/1.1\r\nHost: demo.example.com\r\n\r\n",
        400,
    )
    .await;
}

/// A backend that sends a response head and part of the body, then resets the connection.
async fn resetting_upstream() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial")
                    .await;
                let _ = stream.set_zero_linger();
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_backend_that_resets_mid_response_cuts_the_client_off_cleanly() {
    let addr = resetting_upstream().await;
    let router = TestRouter::start().await;
    router.route(vec![dead_backend(addr)]);

    let raw = raw_exchange(
        router.addr,
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert!(raw.contains("content-length: 100000"), "{raw}");
    assert!(
        raw.ends_with("partial"),
        "the client got what was sent: {raw}"
    );
    router.wait_quiet(addr).await;
}

#[tokio::test]
async fn a_backend_that_never_answers_gets_504_and_lets_go() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let router = TestRouter::with_config(RouterConfig {
        request_timeout: Duration::from_millis(300),
        listen_port: PUBLIC_PORT,
        ..RouterConfig::default()
    })
    .await;
    router.route(vec![dead_backend(addr)]);

    let raw = raw_exchange(
        router.addr,
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&raw), 504, "{raw}");
    router.wait_quiet(addr).await;
    accepted.abort();
}

#[tokio::test]
async fn a_client_that_disconnects_mid_upload_is_logged_as_499() {
    let web = Upstream::start("web.1").await;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let router = TestRouter::with_config(RouterConfig {
        listen_port: PUBLIC_PORT,
        access_log: Some(AccessLogSink::new({
            let lines = Arc::clone(&lines);
            move |_, line| lines.lock().expect("lines").push(line)
        })),
        ..RouterConfig::default()
    })
    .await;
    router.route(vec![web.backend()]);

    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    stream
        .write_all(
            format!(
                "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 1000\r\n\r\nfirst part"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    assert_eq!(web.first_upload_chunk().await, "first part");
    drop(stream);

    router.wait_quiet(web.addr).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let logged = lines.lock().expect("lines").clone();
        if let Some(line) = logged.first() {
            assert!(line.starts_with("at=error code=H27 "), "{line}");
            assert!(line.contains(" status=499 "), "{line}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no log line");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_client_that_disconnects_while_waiting_releases_the_backend() {
    let (web, router) = routed().await;
    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    stream
        .write_all(format!("GET /slow HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    router.wait_in_flight(web.addr, 1).await;
    drop(stream);
    router.wait_quiet(web.addr).await;
    web.release();
}
