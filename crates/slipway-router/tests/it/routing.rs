use http::StatusCode;
use slipway_types::RouteSnapshot;

use crate::support::{HOST, TestRouter, Upstream, get_h2, site};

#[tokio::test]
async fn host_matches_case_insensitively_and_ignores_the_port() {
    let web = Upstream::start("web.1").await;
    let router = TestRouter::start().await;
    router.route(vec![web.backend()]);

    for host in [
        HOST,
        "Demo.Example.COM",
        "demo.example.com:8080",
        "DEMO.example.com.:80",
    ] {
        let reply = router.get(host, "/").await;
        assert_eq!(reply.status, StatusCode::OK, "{host}");
        assert_eq!(reply.dyno(), "web.1");
        assert_eq!(
            reply.echoed("host"),
            Some(host),
            "the app sees the host as sent"
        );
    }
}

#[tokio::test]
async fn each_host_reaches_its_own_app() {
    let demo = Upstream::start("web.1").await;
    let other = Upstream::start("web.2").await;
    let router = TestRouter::start().await;
    router.router.update(&RouteSnapshot {
        sites: vec![
            site("demo", &[HOST, "www.demo.test"], vec![demo.backend()]),
            site("other", &["other.example.com"], vec![other.backend()]),
        ],
    });

    assert_eq!(router.get("www.demo.test", "/").await.dyno(), "web.1");
    assert_eq!(router.get(HOST, "/").await.dyno(), "web.1");
    assert_eq!(router.get("other.example.com", "/").await.dyno(), "web.2");
}

#[tokio::test]
async fn unknown_host_gets_a_404_page() {
    let router = TestRouter::start().await;
    router.route(vec![]);

    let reply = router.get("nope.example.com", "/").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.header("content-type"), "text/html; charset=utf-8");
    assert!(
        reply
            .body
            .contains("No app is configured for <code>nope.example.com</code>"),
        "{}",
        reply.body
    );
    let request_id = reply.header("x-request-id");
    assert!(
        reply.body.contains(request_id),
        "the page names the request id"
    );
}

#[tokio::test]
async fn app_without_backends_gets_a_503_page() {
    let router = TestRouter::start().await;
    router.route(vec![]);

    let reply = router.get(HOST, "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.header("content-type"), "text/html; charset=utf-8");
    assert!(
        reply.body.contains("No web processes are running"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn http2_clients_are_routed_by_authority() {
    let web = Upstream::start("web.1").await;
    let router = TestRouter::start().await;
    router.route(vec![web.backend()]);

    let reply = get_h2(router.addr, "http://Demo.Example.com/h2?x=1").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.dyno(), "web.1");
    assert!(reply.body.starts_with("GET /h2?x=1\n"), "{}", reply.body);
    assert_eq!(reply.echoed("host"), Some("Demo.Example.com"));
    assert_eq!(reply.echoed("via"), Some("2 slipway"));
}
