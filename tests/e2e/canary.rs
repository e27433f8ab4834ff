//! Canary releases (split, promotion and abort by hand, automatic rollback of a failing canary)
//! and per-app rate limiting at the router.

use std::path::Path;
use std::time::{Duration, Instant};

use slipway_types::api::{ReleaseInfo, ReleaseStatus};

use crate::support::{Env, eventually, text};

fn releases(env: &Env, repo: &Path) -> Vec<ReleaseInfo> {
    serde_json::from_str(&env.slipway_ok(repo, &["releases", "--json"])).expect("releases JSON")
}

fn commit(env: &Env, repo: &Path, message: &str) {
    env.git_ok(repo, &["commit", "-q", "--allow-empty", "-m", message]);
}

fn client(env: &Env, app: &str) -> (reqwest::Client, String) {
    let host = format!("{app}.localhost");
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve(&host, ([127, 0, 0, 1], env.http_port).into())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    (client, format!("http://{host}:{}/", env.http_port))
}

/// One request: its status and the release that answered (bodies are `<release> <dyno>`).
async fn hit(client: &reqwest::Client, url: &str) -> (u16, String) {
    let response = client
        .get(url)
        .send()
        .await
        .expect("request through the router");
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    let release = body
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    (status, release)
}

/// `requests` requests, 4 at a time: how many each release answered, and the failures.
async fn load(env: &Env, app: &str, requests: usize) -> (Vec<(String, usize)>, Vec<(u16, String)>) {
    let (client, url) = client(env, app);
    let mut by_release: Vec<(String, usize)> = Vec::new();
    let mut failures = Vec::new();
    for _ in 0..requests / 4 {
        let batch = futures_join4(&client, &url).await;
        for (status, release) in batch {
            if status != 200 {
                failures.push((status, release.clone()));
            }
            match by_release.iter_mut().find(|(r, _)| *r == release) {
                Some((_, count)) => *count += 1,
                None => by_release.push((release, 1)),
            }
        }
    }
    (by_release, failures)
}

async fn futures_join4(client: &reqwest::Client, url: &str) -> [(u16, String); 4] {
    let (a, b, c, d) = tokio::join!(
        hit(client, url),
        hit(client, url),
        hit(client, url),
        hit(client, url)
    );
    [a, b, c, d]
}

fn count(by_release: &[(String, usize)], release: &str) -> usize {
    by_release
        .iter()
        .find(|(r, _)| r == release)
        .map_or(0, |(_, n)| *n)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_gets_its_share_and_is_promoted_or_aborted_by_hand() {
    let env = Env::new();
    let server = env.start_server();
    env.login();
    let (app, _cleanup, repo) = env.app_with_repo("cnr", "canary-app");
    env.push_ok(&repo);
    let first = releases(&env, &repo)[0].version.clone();

    let set = env.slipway_ok(
        &repo,
        &["releases:canary", "--percent", "20", "--duration", "10m"],
    );
    assert!(set.contains("20% of requests for 10m"), "{set}");

    // A config change is not a canary: it goes out at once.
    env.slipway_ok(&repo, &["config:set", "GREETING=hi"]);
    let stable = releases(&env, &repo)[0].clone();
    assert_eq!(stable.status, ReleaseStatus::Succeeded);
    assert!(stable.current);

    commit(&env, &repo, "feat: second");
    let push = env.push_ok(&repo);
    assert!(push.contains("is serving 20% of requests"), "{push}");
    let listed = releases(&env, &repo);
    let canary = listed[0].version.clone();
    assert_eq!(listed[0].status, ReleaseStatus::Canary, "{listed:?}");
    assert!(!listed[0].current);
    let ps = env.slipway_ok(&repo, &["ps"]);
    assert!(ps.contains(&format!("v{canary} (canary)")), "{ps}");
    let status = env.slipway_ok(&repo, &["releases:canary:status"]);
    assert!(status.contains(&format!("v{canary}")), "{status}");

    let (by_release, failures) = load(&env, &app, 500).await;
    assert!(failures.is_empty(), "{failures:?}");
    let share = count(&by_release, &canary);
    println!("canary at 20%: {share} of 500 responses from {canary} ({by_release:?})");
    assert!((50..=150).contains(&share), "{by_release:?}");
    assert_eq!(
        share + count(&by_release, &stable.version),
        500,
        "{by_release:?}"
    );

    let promote = env.slipway_ok(&repo, &["releases:canary:promote"]);
    assert!(promote.contains("done"), "{promote}");
    let listed = releases(&env, &repo);
    assert_eq!(listed[0].version, canary);
    assert_eq!(listed[0].status, ReleaseStatus::Succeeded);
    assert!(listed[0].current);
    let (by_release, failures) = load(&env, &app, 40).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(count(&by_release, &canary), 40, "{by_release:?}");
    assert!(!env.slipway_ok(&repo, &["ps"]).contains("(canary)"));

    commit(&env, &repo, "fix: third");
    env.push_ok(&repo);
    let aborted = releases(&env, &repo)[0].version.clone();
    assert_eq!(releases(&env, &repo)[0].status, ReleaseStatus::Canary);
    env.slipway_ok(&repo, &["releases:canary:abort"]);
    let listed = releases(&env, &repo);
    assert_eq!(listed[0].version, aborted);
    assert_eq!(listed[0].status, ReleaseStatus::Failed);
    let reason = listed[0].status_reason.clone().unwrap_or_default();
    assert!(reason.starts_with("canary aborted by"), "{reason}");
    let (by_release, failures) = load(&env, &app, 40).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(count(&by_release, &canary), 40, "{by_release:?}");
    assert!(!env.slipway_ok(&repo, &["ps"]).contains("(canary)"));
    assert_ne!(first, canary);

    let off = env.slipway(&repo, &["releases:canary:promote"]);
    assert!(!off.status.success(), "nothing to promote");
    assert!(text(&off).contains("runs no canary"), "{}", text(&off));
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_canary_is_rolled_back_automatically() {
    let env = Env::new();
    let server = env.start_server();
    env.login();
    let (app, _cleanup, repo) = env.app_with_repo("cnf", "canary-app");
    env.push_ok(&repo);
    let stable = releases(&env, &repo)[0].version.clone();
    env.slipway_ok(
        &repo,
        &[
            "releases:canary",
            "--percent",
            "20",
            "--duration",
            "10m",
            "--max-error-rate",
            "1%",
        ],
    );
    std::fs::write(repo.join("fail_half"), "").expect("fail_half");
    env.git_ok(&repo, &["add", "fail_half"]);
    commit(&env, &repo, "feat: a release that fails half its requests");
    env.push_ok(&repo);
    let canary = releases(&env, &repo)[0].version.clone();
    assert_eq!(releases(&env, &repo)[0].status, ReleaseStatus::Canary);

    // Requests until the canary is out of the router (bounded by count and time).
    let (client, url) = client(&env, &app);
    let started = Instant::now();
    let mut first_error: Option<Instant> = None;
    let mut last_canary: Option<Instant> = None;
    let (mut total, mut from_canary, mut failed) = (0usize, 0usize, Vec::new());
    let mut quiet_since_canary = 0;
    while total < 4_000 && started.elapsed() < Duration::from_secs(60) && quiet_since_canary < 200 {
        for (status, release) in futures_join4(&client, &url).await {
            total += 1;
            if release == canary {
                from_canary += 1;
                last_canary = Some(Instant::now());
                quiet_since_canary = 0;
            } else {
                quiet_since_canary += 1;
            }
            if status != 200 {
                first_error.get_or_insert_with(Instant::now);
                failed.push((status, release));
            }
        }
    }
    let first_error = first_error.expect("the canary answered 500s");
    let last_canary = last_canary.expect("the canary answered");
    assert!(
        quiet_since_canary >= 200,
        "the canary was still serving after {total} requests"
    );
    assert!(
        failed
            .iter()
            .all(|(status, release)| *status == 500 && *release == canary),
        "only the canary's own 500s fail: {failed:?}"
    );
    assert!(
        failed.len() <= from_canary / 2 + 1,
        "{} failures from {from_canary} canary responses",
        failed.len()
    );
    let removed_from_router = last_canary.duration_since(first_error);

    assert!(
        eventually(Duration::from_secs(40), async || {
            !env.slipway_ok(&repo, &["ps"]).contains("(canary)")
        })
        .await,
        "the canary containers were not removed"
    );
    let containers_removed = first_error.elapsed();
    let listed = releases(&env, &repo);
    assert_eq!(listed[0].version, canary);
    assert_eq!(listed[0].status, ReleaseStatus::Failed);
    let reason = listed[0].status_reason.clone().unwrap_or_default();
    assert!(reason.starts_with("canary rolled back: 5xx "), "{reason}");
    assert!(reason.ends_with("> 1%"), "{reason}");
    assert!(listed.iter().any(|r| r.version == stable && r.current));
    let log = env.slipway_ok(&repo, &["logs", "-n", "300", "--source", "platform"]);
    assert!(log.contains("breached after"), "{log}");
    for line in log.lines().filter(|line| line.contains("anary")) {
        println!("{line}");
    }
    let router_log = env.slipway_ok(&repo, &["logs", "-n", "2000", "--source", "router"]);
    if let Some(first) = router_log.lines().find(|line| line.contains("status=500")) {
        println!("first 5xx: {first}");
    }
    let (by_release, failures) = load(&env, &app, 40).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(count(&by_release, &stable), 40, "{by_release:?}");
    println!(
        "canary rollback: {total} requests, {from_canary} from the canary, {} failed; \
         first 5xx to last canary response {removed_from_router:?}, to no canary \
         container in ps (polled) at most {containers_removed:?}; reason: {reason}",
        failed.len()
    );
    assert!(
        removed_from_router <= Duration::from_secs(5),
        "breach to removal took {removed_from_router:?}"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_over_the_rate_limit_gets_429s_and_one_under_it_none() {
    let env = Env::new();
    let server = env.start_server();
    env.login();
    let (app, _cleanup, repo) = env.app_with_repo("rtl", "canary-app");
    env.push_ok(&repo);
    let set = env.slipway_ok(&repo, &["ratelimit:set", "2/s", "--burst", "20"]);
    assert!(set.contains("2/s per client IP, bursts of 20"), "{set}");
    assert!(
        env.slipway_ok(&repo, &["ratelimit"])
            .contains("bursts of 20")
    );

    let (client, url) = client(&env, &app);
    let mut statuses = Vec::new();
    for _ in 0..15 {
        statuses.push(
            client
                .get(&url)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16(),
        );
    }
    assert!(
        statuses.iter().all(|s| *s == 200),
        "under the burst: {statuses:?}"
    );

    let mut limited = None;
    for _ in 0..30 {
        let response = client.get(&url).send().await.expect("request");
        if response.status().as_u16() == 429 {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            limited = Some((retry_after, response.text().await.unwrap_or_default()));
        }
    }
    let (retry_after, body) = limited.expect("a burst over the limit gets 429s");
    assert!(matches!(retry_after, Some(1..=2)), "{retry_after:?}");
    assert!(body.starts_with("rate limit exceeded"), "{body}");
    let counted = env
        .metric("slipway_router_rate_limited_total", &[("app", &app)])
        .await;
    assert!(counted.is_some_and(|n| n >= 1.0), "{counted:?}");

    env.slipway_ok(&repo, &["ratelimit:clear"]);
    for _ in 0..60 {
        let status = client.get(&url).send().await.expect("request").status();
        assert_eq!(status.as_u16(), 200, "no limit once cleared");
    }
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_restart_aborts_a_running_canary() {
    let env = Env::new();
    let server = env.start_server();
    env.login();
    let (app, _cleanup, repo) = env.app_with_repo("cnx", "canary-app");
    env.push_ok(&repo);
    let stable = releases(&env, &repo)[0].version.clone();
    env.slipway_ok(&repo, &["releases:canary", "--percent", "50"]);
    commit(&env, &repo, "feat: interrupted");
    env.push_ok(&repo);
    let canary = releases(&env, &repo)[0].version.clone();
    assert!(env.slipway_ok(&repo, &["ps"]).contains("(canary)"));
    server.stop();

    let server = env.start_server();
    assert!(
        eventually(Duration::from_secs(30), async || {
            releases(&env, &repo)[0].status == ReleaseStatus::Failed
                && !env.slipway_ok(&repo, &["ps"]).contains("(canary)")
        })
        .await,
        "the canary was not aborted: {:?}",
        releases(&env, &repo)[0]
    );
    let listed = releases(&env, &repo);
    assert_eq!(listed[0].version, canary);
    assert_eq!(
        listed[0].status_reason.as_deref(),
        Some("canary aborted: the server restarted")
    );
    let (by_release, failures) = load(&env, &app, 40).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(count(&by_release, &stable), 40, "{by_release:?}");
    server.stop();
}
