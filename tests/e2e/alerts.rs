//! Deploy notifications and alerts: a webhook receiver of the test's own on 127.0.0.1 gets
//! `release.succeeded` after a push, `release.failed` after a deploy that fails its health
//! check and `release.rolled_back` after a rollback, each signed with the webhook's secret; a
//! 5xx-rate alert fires once while the app answers errors and resolves once when it answers
//! well again; a crash-loop alert fires once while the app keeps crashing and resolves once
//! the crashes stop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::hmac;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{Env, eventually, text};

/// Largest request the receiver reads.
const MAX_REQUEST: usize = 1 << 20;

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn event(&self) -> String {
        self.json()["event"].as_str().unwrap_or_default().to_owned()
    }

    /// Checks the signature the way the guide tells receivers to.
    fn signed_with(&self, secret: &str) -> bool {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let tag = hmac::sign(&key, &self.body);
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        self.headers.get("x-slipway-signature") == Some(&format!("sha256={hex}"))
    }
}

/// A plain-HTTP webhook receiver on 127.0.0.1 that answers 204 to everything.
#[derive(Clone)]
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let port = listener.local_addr().expect("local addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let receiver = Receiver {
            port,
            seen: seen.clone(),
        };
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    if let Some(received) = read_request(stream).await {
                        seen.lock().expect("receiver lock").push(received);
                    }
                });
            }
        });
        receiver
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn events(&self, name: &str) -> Vec<Received> {
        let seen = self.seen.lock().expect("receiver lock");
        seen.iter().filter(|r| r.event() == name).cloned().collect()
    }

    async fn wait_for(&self, name: &str, timeout: Duration) -> Received {
        let arrived = eventually(timeout, async || !self.events(name).is_empty()).await;
        assert!(arrived, "no `{name}` delivery within {timeout:?}");
        self.events(name).remove(0)
    }
}

async fn read_request(mut stream: TcpStream) -> Option<Received> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buffer.len() > MAX_REQUEST {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length")?.parse().ok()?;
    if length > MAX_REQUEST {
        return None;
    }
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    stream
        .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    Some(Received {
        headers,
        body: buffer[head_end..head_end + length].to_vec(),
    })
}

/// Adds a webhook with the CLI and returns its secret.
fn add_webhook(env: &Env, repo: &std::path::Path, url: &str, events: &str) -> String {
    let out = env.slipway_ok(repo, &["webhooks:add", url, "--events", events, "--json"]);
    let created: Value = serde_json::from_str(&out).expect("webhooks:add --json");
    created["secret"]
        .as_str()
        .expect("the secret is shown at creation")
        .to_owned()
}

/// The app's dashboard overview, signed in with the admin token as the session cookie.
async fn overview_page(env: &Env, app: &str) -> String {
    let token = std::fs::read_to_string(env.data_dir().join("admin.token")).expect("admin token");
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
        .get(format!("{}/apps/{app}", env.api_url()))
        .header("cookie", format!("slipway_session={}", token.trim()))
        .send()
        .await
        .expect("GET the overview page")
        .text()
        .await
        .expect("the page")
}

#[tokio::test(flavor = "multi_thread")]
async fn release_events_are_delivered_signed_to_the_apps_webhook() {
    let env = Env::new();
    let _server = env.start_server();
    env.login();
    let receiver = Receiver::start().await;
    let (app, _cleanup, repo) = env.app_with_repo("hooks", "alerts-app");
    let secret = add_webhook(&env, &repo, &receiver.url(), "release");

    let listed = env.slipway_ok(&repo, &["webhooks", "--json"]);
    assert!(!listed.contains(&secret), "the secret is shown only once");

    env.push_ok(&repo);
    let succeeded = receiver
        .wait_for("release.succeeded", Duration::from_secs(30))
        .await;
    assert!(succeeded.signed_with(&secret), "{succeeded:?}");
    assert!(!succeeded.signed_with("whsec_not-the-secret"));
    let body = succeeded.json();
    assert_eq!(body["app"], app.as_str());
    assert_eq!(body["release"]["version"], "1.0.0");
    assert_eq!(
        succeeded
            .headers
            .get("x-slipway-delivery")
            .map(String::as_str),
        body["id"].as_str()
    );
    assert_eq!(
        succeeded.headers.get("x-slipway-event").map(String::as_str),
        Some("release.succeeded")
    );
    assert!(succeeded.headers.contains_key("x-slipway-timestamp"));

    // The delivery's outcome shows in `webhooks`.
    let recorded = eventually(Duration::from_secs(10), async || {
        env.slipway_ok(&repo, &["webhooks"])
            .contains("release.succeeded ok 204 No Content")
    })
    .await;
    assert!(recorded, "{}", env.slipway_ok(&repo, &["webhooks"]));

    // A config change whose release fails its health check.
    let failed = env.slipway(&repo, &["config:set", "HEALTH=bad"]);
    assert!(!failed.status.success(), "{}", text(&failed));
    let failure = receiver
        .wait_for("release.failed", Duration::from_secs(60))
        .await;
    assert!(failure.signed_with(&secret), "{failure:?}");
    let body = failure.json();
    assert_eq!(body["release"]["version"], "1.0.1");
    let reason = body["release"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("automatic rollback"), "{body}");
    assert_eq!(receiver.events("release.succeeded").len(), 1);

    // The fix, then a rollback: the release rolled away from is reported.
    env.slipway_ok(&repo, &["config:unset", "HEALTH"]);
    env.slipway_ok(&repo, &["releases:rollback"]);
    let rolled = receiver
        .wait_for("release.rolled_back", Duration::from_secs(30))
        .await;
    assert!(rolled.signed_with(&secret), "{rolled:?}");
    let body = rolled.json();
    assert_eq!(body["release"]["version"], "1.0.2", "{body}");
    let reason = body["release"]["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("rolled back to 1.0.0"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_5xx_alert_fires_once_under_errors_and_resolves_once() {
    let env = Env::new();
    let _server = env.start_server_with(&["--metrics-bucket", "2s"]);
    env.login();
    let receiver = Receiver::start().await;
    let (app, _cleanup, repo) = env.app_with_repo("alerting", "alerts-app");
    env.push_ok(&repo);
    let secret = add_webhook(&env, &repo, &receiver.url(), "alert");
    let set = env.slipway_ok(&repo, &["alerts:set", "5xx-rate", "20"]);
    assert!(set.contains("5xx-rate"), "{set}");

    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve(
            &format!("{app}.localhost"),
            ([127, 0, 0, 1], env.http_port).into(),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let get = async |path: &str| {
        client
            .get(format!("http://{app}.localhost:{}{path}", env.http_port))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or_default()
    };

    // Every request fails, for at least a few buckets, until the alert fires.
    let mut fired = false;
    for _ in 0..300 {
        assert_eq!(get("/fail").await, 500);
        tokio::time::sleep(Duration::from_millis(50)).await;
        if !receiver.events("alert.firing").is_empty() {
            fired = true;
            break;
        }
    }
    assert!(fired, "no alert.firing within 300 failing requests");
    // More failing buckets: still firing, not fired again.
    for _ in 0..100 {
        get("/fail").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = env.slipway_ok(&repo, &["alerts"]);
    assert!(status.contains("FIRING"), "{status}");
    let page = overview_page(&env, &app).await;
    assert!(
        page.contains("class=\"alert-firing\"") && page.contains("5xx-rate"),
        "the dashboard lists the firing alert: {page}"
    );

    // Healthy answers until it resolves, then a few buckets more.
    let mut resolved = false;
    for _ in 0..300 {
        assert_eq!(get("/").await, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
        if !receiver.events("alert.resolved").is_empty() {
            resolved = true;
            break;
        }
    }
    assert!(resolved, "no alert.resolved within 300 good requests");
    for _ in 0..100 {
        get("/").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let firing = receiver.events("alert.firing");
    let resolved = receiver.events("alert.resolved");
    assert_eq!(
        (firing.len(), resolved.len()),
        (1, 1),
        "{firing:?} {resolved:?}"
    );
    for delivery in firing.iter().chain(&resolved) {
        assert!(delivery.signed_with(&secret), "{delivery:?}");
        let body = delivery.json();
        assert_eq!(body["app"], app.as_str());
        assert_eq!(body["alert"]["rule"], "5xx-rate");
        assert_eq!(body["alert"]["threshold"], "20%");
    }
    assert!(
        receiver.events("release.succeeded").is_empty(),
        "alert-only webhook"
    );
    let status = env.slipway_ok(&repo, &["alerts"]);
    assert!(!status.contains("FIRING"), "{status}");
    assert!(
        overview_page(&env, &app)
            .await
            .contains("No alert is firing")
    );
    let logs = env.slipway_ok(&repo, &["logs", "-n", "500", "--source", "platform"]);
    assert!(logs.contains("Alert 5xx-rate firing"), "{logs}");
    assert!(logs.contains("Alert 5xx-rate resolved"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_loop_alert_fires_once_and_resolves_when_the_crashes_stop() {
    let env = Env::new();
    let _server = env.start_server();
    env.login();
    let receiver = Receiver::start().await;
    let (app, _cleanup, repo) = env.app_with_repo("crashy", "alerts-app");
    env.push_ok(&repo);
    let secret = add_webhook(&env, &repo, &receiver.url(), "alert");
    env.slipway_ok(&repo, &["alerts:set", "crash-loop", "2/1"]);

    // The process now exits 3 s after each start; the reconciler restarts it with back-off.
    env.slipway_ok(&repo, &["config:set", "CRASH_AFTER=3"]);
    let firing = receiver
        .wait_for("alert.firing", Duration::from_secs(90))
        .await;
    assert!(firing.signed_with(&secret), "{firing:?}");
    let body = firing.json();
    assert_eq!(body["app"], app.as_str());
    assert_eq!(body["alert"]["rule"], "crash-loop");
    assert_eq!(body["alert"]["threshold"], "2/1m");

    // Fixed: no crash for a minute resolves it (checked every 30 s).
    env.slipway_ok(&repo, &["config:unset", "CRASH_AFTER"]);
    let resolved = receiver
        .wait_for("alert.resolved", Duration::from_secs(150))
        .await;
    assert!(resolved.signed_with(&secret), "{resolved:?}");
    assert_eq!(resolved.json()["alert"]["rule"], "crash-loop");
    assert_eq!(receiver.events("alert.firing").len(), 1);
}
