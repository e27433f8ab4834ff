//! The metrics time series end to end: after a push and a bounded load of N requests through
//! the real router, `GET /v1/apps/{app}/metrics` and `slipway metrics` count exactly N
//! requests (summed over the buckets once the one holding the last request has closed), show
//! the release as a deploy marker and the process's memory from Docker; the admin series
//! counts the same traffic.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Env, eventually};

/// Requests of the bounded load.
const LOAD: u64 = 60;

/// Short buckets of 2 s, so a bucket closes soon after the load.
const BUCKET: &str = "2s";

fn sum_requests(points: &Value) -> u64 {
    points
        .as_array()
        .expect("points")
        .iter()
        .flat_map(|point| {
            point["requests"]
                .as_array()
                .expect("requests by class")
                .clone()
        })
        .map(|n| n.as_u64().expect("a count"))
        .sum()
}

/// The sum of one column of `slipway metrics`' table.
fn column_sum(table: &str, column: &str) -> u64 {
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("a header").split_whitespace().collect();
    let at = header
        .iter()
        .position(|name| *name == column)
        .unwrap_or_else(|| panic!("no {column} column in {header:?}"));
    lines
        .map(|line| {
            line.split_whitespace()
                .nth(at)
                .and_then(|cell| cell.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no count in column {column} of {line:?}"))
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn request_counts_match_the_load_and_the_release_is_marked() {
    let env = Env::new();
    let server = env.start_server_with(&["--metrics-bucket", BUCKET]);
    env.login();
    let (app, _cleanup, repo) = env.app_with_repo("metrics", "static-server");
    env.push_ok(&repo);

    let host = format!("{app}.localhost");
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve(&host, ([127, 0, 0, 1], env.http_port).into())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let mut ok = 0;
    let mut missing = 0;
    for n in 0..LOAD {
        // Every fifth request asks for a file that is not there: 404s count as 4xx.
        let path = if n % 5 == 0 { "/missing" } else { "/index.txt" };
        let response = client
            .get(format!("http://{host}:{}{path}", env.http_port))
            .send()
            .await
            .expect("a request through the router");
        match response.status().as_u16() {
            200 => ok += 1,
            404 => missing += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, missing), (LOAD * 4 / 5, LOAD / 5));

    // Short buckets (20 min of 2 s ones) and long ones (1 h of 2 min ones) both add up to the
    // load once the bucket of the last request has closed.
    let short_metrics = || -> Value {
        serde_json::from_str(&env.slipway_ok(&repo, &["metrics", "--since", "20m", "--json"]))
            .expect("metrics --json")
    };
    let counted = eventually(Duration::from_secs(30), async || {
        sum_requests(&short_metrics()["points"]) == LOAD
    })
    .await;
    let short = short_metrics();
    assert!(counted, "{short:#}\n{}", server.log_text());
    let points = short["points"].as_array().expect("points");
    assert_eq!(points.len(), 600, "20 minutes of 2 s buckets");
    assert!(points.iter().all(|p| p["width_secs"] == 2));
    let classes: Vec<u64> = (0..5)
        .map(|class| {
            points
                .iter()
                .map(|p| p["requests"][class].as_u64().expect("a count"))
                .sum()
        })
        .collect();
    assert_eq!(classes, [0, LOAD * 4 / 5, 0, LOAD / 5, 0]);
    assert!(
        points
            .iter()
            .any(|p| p["latency_ms"]["p99"].as_f64().is_some_and(|ms| ms > 0.0)),
        "latency percentiles: {short:#}"
    );
    let memory = points
        .iter()
        .flat_map(|p| p["processes"].as_array().expect("processes").clone())
        .find(|process| process["dyno"] == "web.1")
        .unwrap_or_else(|| panic!("no web.1 usage sampled: {short:#}"));
    assert!(
        memory["memory_bytes"].as_u64().is_some_and(|b| b > 0),
        "{memory}"
    );
    let deploys = short["deploys"].as_array().expect("deploys");
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(deploys[0]["version"], "1.0.0");

    let long: Value =
        serde_json::from_str(&env.slipway_ok(&repo, &["metrics", "--since", "1h", "--json"]))
            .expect("metrics --json");
    assert!(
        long["points"]
            .as_array()
            .expect("points")
            .iter()
            .all(|p| p["width_secs"] == 120)
    );
    assert_eq!(sum_requests(&long["points"]), LOAD, "{long:#}");

    let table = env.slipway_ok(&repo, &["metrics", "--since", "20m"]);
    assert_eq!(column_sum(&table, "2XX"), LOAD * 4 / 5, "{table}");
    assert_eq!(column_sum(&table, "4XX"), LOAD / 5, "{table}");
    assert!(
        table.contains("v1.0.0"),
        "the release's bucket names it:\n{table}"
    );

    // The platform's series counts the same requests (this server serves only this app).
    let admin = std::fs::read_to_string(env.data_dir().join("admin.token")).expect("admin.token");
    let platform: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
        .get(format!("{}/v1/admin/metrics?since=20m", env.api_url()))
        .bearer_auth(admin.trim())
        .send()
        .await
        .expect("GET /v1/admin/metrics")
        .json()
        .await
        .expect("platform metrics");
    assert_eq!(sum_requests(&platform["router"]), LOAD, "{platform:#}");
    assert!(
        platform["disk"]["total_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0),
        "{platform:#}"
    );

    let refused = env.slipway(&repo, &["metrics", "--since", "31d"]);
    assert!(!refused.status.success());
    assert!(
        crate::support::text(&refused).contains("since `31d` must be a duration"),
        "{}",
        crate::support::text(&refused)
    );
}
