use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Channel, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{GIGABYTE, HOST, PATIENCE, TestRouter, Upstream, read_reply, send_streaming};

#[tokio::test]
async fn response_chunks_arrive_before_the_app_finishes() {
    let web = Upstream::start("web.1").await;
    let router = TestRouter::start().await;
    router.route(vec![web.backend()]);

    let req = Request::get("/stream")
        .header("host", HOST)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let mut response = send_streaming(router.addr, req).await;
    assert_eq!(response.status(), StatusCode::OK);

    let first = next_data(response.body_mut()).await;
    assert_eq!(
        first, "first\n",
        "the first chunk came while the app was still writing"
    );

    web.release();
    let rest = tokio::time::timeout(PATIENCE, response.into_body().collect())
        .await
        .expect("rest in time")
        .expect("rest")
        .to_bytes();
    assert_eq!(rest, "last\n");
}

async fn next_data(body: &mut hyper::body::Incoming) -> Bytes {
    loop {
        let frame = tokio::time::timeout(PATIENCE, body.frame())
            .await
            .expect("frame in time")
            .expect("a frame")
            .expect("frame ok");
        if let Ok(data) = frame.into_data() {
            return data;
        }
    }
}

#[tokio::test]
async fn request_chunks_reach_the_app_before_the_client_finishes() {
    let web = Upstream::start("web.1").await;
    let router = TestRouter::start().await;
    router.route(vec![web.backend()]);

    let (mut upload, body) = Channel::<Bytes>::new(1);
    let req = Request::post("/upload")
        .header("host", HOST)
        .body(body)
        .expect("request");
    let response = tokio::spawn(send_streaming(router.addr, req));

    upload
        .send_data(Bytes::from_static(b"part one, "))
        .await
        .expect("send first part");
    assert_eq!(web.first_upload_chunk().await, "part one, ");

    upload
        .send_data(Bytes::from_static(b"part two"))
        .await
        .expect("send second part");
    drop(upload);
    let reply = read_reply(response.await.expect("response task")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "part one, part two");
}

#[tokio::test]
async fn upgraded_connections_carry_bytes_both_ways() {
    let web = Upstream::start("web.1").await;
    let router = TestRouter::start().await;
    router.route(vec![web.backend()]);

    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    stream
        .write_all(
            format!(
                "GET /ws HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("write upgrade request");

    let head = read_head(&mut stream).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("\r\nupgrade: echo\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(head.contains("\r\nx-request-id: "), "{head}");
    router.wait_in_flight(web.addr, 1).await;

    for message in [&b"ping"[..], b"hello, tunnel"] {
        stream.write_all(message).await.expect("write");
        let mut echoed = vec![0; message.len()];
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut echoed))
            .await
            .expect("echo in time")
            .expect("echo");
        assert_eq!(echoed, message);
    }

    drop(stream);
    router.wait_in_flight(web.addr, 0).await;
}

/// Reads a response head byte by byte so nothing after it is consumed.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout_at(deadline, stream.read_u8())
            .await
            .expect("response head in time")
            .expect("read");
        head.push(byte);
        assert!(head.len() < 8192, "response head too long");
    }
    String::from_utf8(head).expect("ascii head")
}

#[tokio::test]
async fn a_websocket_echoes_through_the_router() {
    let web = Upstream::start("web.1").await;
    let router = TestRouter::start().await;
    router.route(vec![web.backend()]);

    let stream = TcpStream::connect(router.addr).await.expect("connect");
    let (mut socket, response) =
        tokio_tungstenite::client_async(format!("ws://{HOST}/websocket"), stream)
            .await
            .expect("websocket handshake through the router");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    router.wait_in_flight(web.addr, 1).await;
    assert_eq!(
        router.router.open_connections(),
        1,
        "the tunnel still counts as a connection"
    );

    for text in ["hello", "through the router", &"long ".repeat(10_000)] {
        socket
            .send(Message::text(text))
            .await
            .expect("send message");
        let echoed = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("echo in time")
            .expect("a message")
            .expect("message ok");
        assert_eq!(echoed.to_text().expect("text"), text);
    }
    socket.close(None).await.expect("close");
    drop(socket);
    router.wait_quiet(web.addr).await;
}

#[tokio::test]
async fn http2_requests_on_one_connection_are_relayed_concurrently() {
    const STREAMS: usize = 8;
    let web = Upstream::start("web.1").await;
    let router = TestRouter::start().await;
    router.route(vec![web.backend()]);

    let stream = TcpStream::connect(router.addr).await.expect("connect");
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let requests: Vec<_> = (0..STREAMS)
        .map(|_| {
            let mut sender = sender.clone();
            tokio::spawn(async move {
                let req = Request::get(format!("http://{HOST}/slow"))
                    .version(Version::HTTP_2)
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                sender.send_request(req).await.expect("response")
            })
        })
        .collect();
    // Every request is at the app at once: none waits for another on the one connection.
    router.wait_in_flight(web.addr, STREAMS).await;
    assert_eq!(router.router.open_connections(), 1);
    for _ in 0..STREAMS {
        web.release();
    }
    for request in requests {
        let reply = read_reply(request.await.expect("request task")).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "slow done");
    }
    drop(sender);
    router.wait_quiet(web.addr).await;
}

/// The router streams a body far larger than the memory it uses: the whole test process
/// (upstream, router and client) stays far below the 1 GiB that passes through it.
#[tokio::test]
async fn a_gigabyte_download_streams_in_flat_memory() {
    const RSS_CEILING_KIB: u64 = 256 * 1024;
    let web = Upstream::start("web.1").await;
    let router = TestRouter::start().await;
    router.route(vec![web.backend()]);

    let req = Request::get("/gigabyte")
        .header("host", HOST)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let mut response = send_streaming(router.addr, req).await;
    assert_eq!(response.status(), StatusCode::OK);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let mut received = 0;
    let mut peak_rss = 0;
    let mut next_check = 0;
    while let Some(frame) = tokio::time::timeout_at(deadline, response.body_mut().frame())
        .await
        .expect("download finishes in time")
    {
        if let Ok(data) = frame.expect("frame").into_data() {
            received += data.len();
        }
        if received >= next_check {
            peak_rss = peak_rss.max(rss_kib());
            next_check += 64 << 20;
        }
    }
    assert_eq!(received, GIGABYTE);
    assert!(
        peak_rss < RSS_CEILING_KIB,
        "resident set reached {peak_rss} KiB while streaming"
    );
    router.wait_quiet(web.addr).await;
}

/// This process's resident set size, from `/proc/self/status`.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches(" kB").parse().ok())
        .expect("VmRSS in /proc/self/status")
}
