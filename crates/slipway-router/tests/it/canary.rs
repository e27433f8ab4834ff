//! Canary splits and rate limits through a real router: shares, the sticky cookie, per-release
//! counters, and 429s with `Retry-After`.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use slipway_types::{Backend, CanaryRoutes, RateLimit, RatePeriod, RouteSnapshot};

use crate::support::{HOST, TestRouter, Upstream, send, site};

fn canary_backend(upstream: &Upstream) -> Backend {
    Backend {
        release: "v1.1.0".to_owned(),
        ..upstream.backend()
    }
}

fn route_canary(router: &TestRouter, stable: &Upstream, canary: &Upstream, sticky: bool) {
    let mut routes = site("demo", &[HOST], vec![stable.backend()]);
    routes.canary = Some(CanaryRoutes {
        release: "v1.1.0".to_owned(),
        backends: vec![canary_backend(canary)],
        percent: 20,
        sticky,
    });
    router.router.update(&RouteSnapshot {
        sites: vec![routes],
    });
}

#[tokio::test]
async fn the_canary_gets_its_share_and_its_requests_are_counted() {
    let stable = Upstream::start("web.1").await;
    let canary = Upstream::start("canary.web.1").await;
    let router = TestRouter::start().await;
    route_canary(&router, &stable, &canary, false);

    let mut to_canary = 0;
    for _ in 0..400 {
        let reply = router.get(HOST, "/").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.headers.get("set-cookie").is_none(), "not sticky");
        if reply.dyno() == "canary.web.1" {
            to_canary += 1;
        }
    }
    assert!((40..=120).contains(&to_canary), "{to_canary} of 400");
    let app = "demo".parse().expect("app name");
    router.wait_quiet(canary.addr).await;
    let counts = router.router.release_counts(&app, "v1.1.0");
    assert_eq!(counts.requests, to_canary);
    assert_eq!(counts.errors, 0);
    assert!(counts.p99().is_some_and(|p99| p99 < Duration::from_secs(5)));
    assert_eq!(
        router.router.release_counts(&app, "v1.0.0").requests,
        400 - to_canary
    );
}

#[tokio::test]
async fn a_sticky_split_pins_each_client_with_a_cookie() {
    let stable = Upstream::start("web.1").await;
    let canary = Upstream::start("canary.web.1").await;
    let router = TestRouter::start().await;
    route_canary(&router, &stable, &canary, true);

    let reply = router.get(HOST, "/").await;
    let cookie = reply.header("set-cookie").to_owned();
    let (pair, attributes) = cookie.split_once(';').expect("cookie attributes");
    assert!(attributes.contains("HttpOnly"), "{cookie}");
    let side = reply.dyno().to_owned();
    for _ in 0..20 {
        let req = Request::get("/")
            .header("host", HOST)
            .header("cookie", format!("theme=dark; {pair}"))
            .body(Empty::<Bytes>::new())
            .expect("request");
        let again = send(router.addr, req).await;
        assert_eq!(
            again.dyno(),
            side,
            "the cookie keeps the client on its side"
        );
        assert!(again.headers.get("set-cookie").is_none());
    }
}

#[tokio::test]
async fn a_client_over_the_rate_limit_gets_429_with_retry_after() {
    let upstream = Upstream::start("web.1").await;
    let router = TestRouter::start().await;
    let mut routes = site("demo", &[HOST], vec![upstream.backend()]);
    routes.rate_limit = Some(RateLimit {
        requests: 1,
        period: RatePeriod::Minute,
        burst: 3,
    });
    router.router.update(&RouteSnapshot {
        sites: vec![routes.clone()],
    });

    for _ in 0..3 {
        assert_eq!(router.get(HOST, "/").await.status, StatusCode::OK);
    }
    let refused = router.get(HOST, "/").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.header("retry-after").parse().expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert!(
        refused.body.starts_with("rate limit exceeded"),
        "{}",
        refused.body
    );
    assert!(refused.headers.get("x-request-id").is_some());

    // An unrelated route update keeps the buckets; removing the limit lifts it.
    router.router.update(&RouteSnapshot {
        sites: vec![
            routes.clone(),
            site("other", &["other.example.com"], vec![]),
        ],
    });
    assert_eq!(
        router.get(HOST, "/").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    routes.rate_limit = None;
    router.router.update(&RouteSnapshot {
        sites: vec![routes],
    });
    assert_eq!(router.get(HOST, "/").await.status, StatusCode::OK);
}
