use http::StatusCode;
use slipway_types::RouteSnapshot;

use crate::support::{HOST, TestRouter, Upstream, dead_addr, dead_backend, site};

#[tokio::test]
async fn an_app_in_maintenance_gets_a_503_page_without_reaching_its_backends() {
    let web = Upstream::start("web.1").await;
    let dead = dead_addr().await;
    let router = TestRouter::start().await;
    let mut routes = site("demo", &[HOST], vec![dead_backend(dead), web.backend()]);
    routes.maintenance = true;
    router.router.update(&RouteSnapshot {
        sites: vec![routes.clone()],
    });

    for _ in 0..3 {
        let reply = router.get(HOST, "/").await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.header("retry-after"), "60");
        assert_eq!(reply.header("content-type"), "text/html; charset=utf-8");
        assert!(
            reply.body.contains("down for maintenance"),
            "{}",
            reply.body
        );
        assert!(
            reply.body.contains(reply.header("x-request-id")),
            "{}",
            reply.body
        );
        assert!(reply.headers.get("x-dyno").is_none(), "no backend answered");
    }

    routes.maintenance = false;
    routes.backends = vec![web.backend()];
    router.router.update(&RouteSnapshot {
        sites: vec![routes],
    });
    let reply = router.get(HOST, "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.dyno(), "web.1");
}

#[tokio::test]
async fn maintenance_is_per_app() {
    let web = Upstream::start("web.1").await;
    let other = Upstream::start("web.2").await;
    let router = TestRouter::start().await;
    let mut down = site("demo", &[HOST], vec![web.backend()]);
    down.maintenance = true;
    router.router.update(&RouteSnapshot {
        sites: vec![
            down,
            site("other", &["other.example.com"], vec![other.backend()]),
        ],
    });
    assert_eq!(
        router.get(HOST, "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        router.get("other.example.com", "/").await.status,
        StatusCode::OK
    );
}
