use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use slipway_router::{AccessLogSink, RouterConfig};
use slipway_types::{AppName, RouteSnapshot};

use crate::support::{HOST, PUBLIC_PORT, TestRouter, Upstream, site};

type Lines = Arc<Mutex<Vec<(AppName, String)>>>;

async fn router_with_sink() -> (TestRouter, Lines) {
    let lines = Lines::default();
    let sink = {
        let lines = Arc::clone(&lines);
        AccessLogSink::new(move |app, line| {
            lines.lock().expect("lines").push((app.clone(), line));
        })
    };
    let router = TestRouter::with_config(RouterConfig {
        listen_port: PUBLIC_PORT,
        access_log: Some(sink),
        ..RouterConfig::default()
    })
    .await;
    (router, lines)
}

/// The line is written when the response body ends, which can be just after the client has
/// read it.
async fn wait_for_lines(lines: &Lines, count: usize) -> Vec<(AppName, String)> {
    for _ in 0..250 {
        let seen = lines.lock().expect("lines").clone();
        if seen.len() >= count {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "expected {count} access log lines, got {:?}",
        lines.lock().expect("lines")
    );
}

#[tokio::test]
async fn the_sink_gets_each_line_of_a_known_app() {
    let web = Upstream::start("web.1").await;
    let (router, lines) = router_with_sink().await;
    router.route(vec![web.backend()]);

    let reply = router.get(HOST, "/hello?x=1").await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = wait_for_lines(&lines, 1).await;
    let (app, line) = &seen[0];
    assert_eq!(app.as_str(), "demo");
    assert!(
        line.starts_with("at=info method=GET path=\"/hello?x=1\" host=demo.example.com "),
        "{line}"
    );
    assert!(line.contains(" dyno=web.1 "), "{line}");
    assert!(line.contains(" status=200 "), "{line}");
    let request_id = reply.header("x-request-id");
    assert!(
        line.contains(&format!(" request_id={request_id} ")),
        "{line}"
    );
}

#[tokio::test]
async fn errors_of_a_known_app_reach_the_sink_and_unknown_hosts_do_not() {
    let (router, lines) = router_with_sink().await;
    router.router.update(&RouteSnapshot {
        sites: vec![site("demo", &[HOST], vec![])],
    });

    assert_eq!(
        router.get("nope.example.com", "/").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        router.get(HOST, "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let seen = wait_for_lines(&lines, 1).await;
    // A page's line is written as its last frame is sent, so a line for the 404 would
    // already be here.
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (app, line) = &seen[0];
    assert_eq!(app.as_str(), "demo");
    assert!(
        line.starts_with("at=error code=H14 desc=\"No web processes running\" method=GET"),
        "{line}"
    );
}
