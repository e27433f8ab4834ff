use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Channel, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{HOST, PATIENCE, TestRouter, Upstream, read_reply, send_streaming};

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
