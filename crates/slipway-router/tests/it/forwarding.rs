use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;

use crate::support::{HOST, PUBLIC_PORT, TestRouter, Upstream, send};

async fn routed() -> (Upstream, TestRouter) {
    let web = Upstream::start("web.1").await;
    let router = TestRouter::start().await;
    router.route(vec![web.backend()]);
    (web, router)
}

#[tokio::test]
async fn forwarding_headers_reach_the_app() {
    let (_web, router) = routed().await;
    let req = Request::get("/path?q=1")
        .header("host", HOST)
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-port", "1")
        .header("via", "1.1 edge")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let reply = send(router.addr, req).await;

    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.starts_with("GET /path?q=1\n"), "{}", reply.body);
    assert_eq!(
        reply.echoed("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(reply.echoed("x-forwarded-proto"), Some("http"));
    assert_eq!(
        reply.echoed("x-forwarded-port"),
        Some(PUBLIC_PORT.to_string().as_str())
    );
    let via: Vec<&str> = reply
        .body
        .lines()
        .filter_map(|line| line.strip_prefix("via: "))
        .collect();
    assert_eq!(via, ["1.1 edge", "1.1 slipway"]);
    let start = reply
        .echoed("x-request-start")
        .and_then(|value| value.strip_prefix("t="))
        .expect("x-request-start");
    let millis: u128 = start.parse().expect("unix millis");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    assert!(millis <= now && now - millis < 600_000, "{millis} vs {now}");
}

#[tokio::test]
async fn a_valid_request_id_is_kept() {
    let (_web, router) = routed().await;
    let id = "client-supplied-id-0123+/=";
    let req = Request::get("/")
        .header("host", HOST)
        .header("x-request-id", id)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let reply = send(router.addr, req).await;

    assert_eq!(reply.echoed("x-request-id"), Some(id));
    assert_eq!(reply.header("x-request-id"), id);
}

#[tokio::test]
async fn an_invalid_request_id_is_replaced() {
    let (_web, router) = routed().await;
    for bad in ["too-short", "has_underscores_which_are_not_allowed"] {
        let req = Request::get("/")
            .header("host", HOST)
            .header("x-request-id", bad)
            .body(Empty::<Bytes>::new())
            .expect("request");
        let reply = send(router.addr, req).await;

        let seen = reply.echoed("x-request-id").expect("app sees an id");
        assert_ne!(seen, bad);
        assert_eq!(seen.len(), 36, "a uuid: {seen}");
        assert_eq!(
            reply.header("x-request-id"),
            seen,
            "the client gets the same id"
        );
    }
}

#[tokio::test]
async fn requests_without_an_id_get_a_fresh_one_each() {
    let (_web, router) = routed().await;
    let first = router.get(HOST, "/").await;
    let second = router.get(HOST, "/").await;
    assert_ne!(first.header("x-request-id"), second.header("x-request-id"));
    assert_eq!(
        first.echoed("x-request-id"),
        Some(first.header("x-request-id"))
    );
}

#[tokio::test]
async fn hop_by_hop_headers_do_not_cross_the_router() {
    let (_web, router) = routed().await;
    let req = Request::get("/")
        .header("host", HOST)
        .header("connection", "keep-alive, x-client-hop")
        .header("x-client-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("te", "trailers")
        .header("x-end-to-end", "1")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let reply = send(router.addr, req).await;

    for hop in [
        "connection",
        "x-client-hop",
        "keep-alive",
        "proxy-authorization",
        "te",
    ] {
        assert_eq!(reply.echoed(hop), None, "{hop} reached the app");
    }
    assert_eq!(reply.echoed("x-end-to-end"), Some("1"));
    assert!(
        !reply.headers.contains_key("x-upstream-hop"),
        "a header the app named in Connection reached the client"
    );
}
