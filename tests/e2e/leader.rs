//! Two `slipway server` processes on one PostgreSQL database: both serve the API and the
//! router, only the lease holder deploys and a follower has it carry out the changes sent to
//! the follower; when the leader is killed, the other takes over deploys within the lease time.

use std::process::Command;
use std::time::Duration;

use crate::support::{Env, Server, eventually};

/// The lease time the servers run with: the shortest allowed, to keep the test short.
const LEASE: &str = "3s";

/// A fresh database in the PostgreSQL named by `SLIPWAY_TEST_POSTGRES_URL`, dropped after.
struct Database {
    server: String,
    name: String,
}

impl Database {
    fn new() -> Self {
        let server = std::env::var("SLIPWAY_TEST_POSTGRES_URL").unwrap_or_else(|_| {
            panic!(
                "SLIPWAY_TEST_POSTGRES_URL is not set: this test needs a PostgreSQL. Run \
                 deploy/test.sh, or export SLIPWAY_TEST_POSTGRES_URL=postgres://USER:PASSWORD@127.0.0.1:PORT/DB \
                 (the user needs CREATEDB)"
            )
        });
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "slipway_e2e_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        psql(
            &server,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        psql(&server, &format!("CREATE DATABASE {name}"));
        Self { server, name }
    }

    fn url(&self) -> String {
        let (host, _) = self
            .server
            .rsplit_once('/')
            .expect("a postgres://…/DATABASE URL");
        format!("{host}/{}", self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        psql(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(url: &str, sql: &str) {
    let output = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("running psql (Debian package postgresql-client)");
    assert!(
        output.status.success(),
        "psql `{sql}` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A leader and a follower on a fresh database, in that order, each in its own env; the
/// follower's CLI is signed in to the follower with the admin token. Bind the result in this
/// order so the servers stop before their database is dropped.
fn two_servers(lease: &str) -> (Database, Env, Server, Env, Server, String) {
    let db = Database::new();
    let url = db.url();
    let first = Env::new();
    let leader = first.start_server_with(&["--database-url", &url, "--leader-lease", lease]);
    let key = first.data_dir().join("master.key");
    let second = Env::new();
    let follower = second.start_server_with(&[
        "--database-url",
        &url,
        "--leader-lease",
        lease,
        "--master-key-file",
        key.to_str().expect("a UTF-8 path"),
    ]);
    let token = std::fs::read_to_string(first.data_dir().join("admin.token"))
        .expect("admin.token written by the first server")
        .trim()
        .to_owned();
    second.slipway_ok(
        &second.home(),
        &["login", "--url", &second.api_url(), "--token", &token],
    );
    (db, first, leader, second, follower, token)
}

/// One API call to `env`'s server with a bearer token; the status and the JSON answer.
async fn call(
    env: &Env,
    token: &str,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let mut request = client
        .request(method, format!("{}{path}", env.api_url()))
        .bearer_auth(token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("an API request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json)
}

/// The `error.message` of an API refusal.
fn error_message(answer: &serde_json::Value) -> &str {
    answer["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_has_the_leader_carry_out_changes() {
    let (_db, first, _leader, second, _follower, token) = two_servers(LEASE);

    // `apps:create`, the remote and the push all go to the follower.
    let (app, _cleanup, repo) = second.app_with_repo("forwarded", "static-server");
    let remote = second.git_ok(&repo, &["remote", "get-url", "platform"]);
    assert!(remote.contains(&second.api_url()), "{remote}");
    let pushed = second.push_ok(&repo);
    assert!(pushed.contains("Released"), "{pushed}");
    assert_eq!(
        first.get_app(&app).await.0,
        200,
        "the leader's router serves the release the leader deployed"
    );

    let set = second.slipway(&second.home(), &["config:set", "-a", &app, "COLOR=blue"]);
    assert!(set.status.success(), "{}", crate::support::text(&set));
    let releases = second.slipway_ok(&second.home(), &["releases", "-a", &app]);
    assert!(releases.contains("COLOR"), "{releases}");
    let (status, events) = call(
        &first,
        &token,
        reqwest::Method::GET,
        &format!("/v1/admin/audit?app={app}"),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200, "{events}");
    let config_changes = events
        .as_array()
        .expect("a list of audit events")
        .iter()
        .filter(|event| event["action"] == "config.update")
        .count();
    assert_eq!(config_changes, 1, "audited once, by the leader: {events}");

    // A request another server already forwarded is not forwarded again.
    let (status, refused) = call(
        &second,
        &token,
        reqwest::Method::PATCH,
        &format!("/v1/apps/{app}/config"),
        &[("x-slipway-forwarded-by", "http://127.0.0.1:9")],
        Some(r#"{"COLOR":"red"}"#),
    )
    .await;
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error"]["code"], "not_leader", "{refused}");
    assert!(
        error_message(&refused).contains("does not pass on a change another server forwarded"),
        "{refused}"
    );
    let config = second.slipway_ok(&second.home(), &["config", "-a", &app]);
    assert!(
        config.contains("blue") && !config.contains("red"),
        "{config}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_takes_over_deploys_when_the_leader_dies() {
    // Long enough that the request right after the kill surely comes before the lease expires.
    let (_db, first, leader, second, follower, token) = two_servers("6s");
    first.login();
    let (app, _cleanup, repo) = first.app_with_repo("leader", "static-server");
    first.push_ok(&repo);
    assert_eq!(first.get_app(&app).await.0, 200);
    assert!(
        eventually(Duration::from_secs(30), async || second
            .get_app(&app)
            .await
            .0
            == 200)
        .await,
        "the follower's router never learned the app's route"
    );

    leader.crash();
    let (status, refused) = call(
        &second,
        &token,
        reqwest::Method::PATCH,
        &format!("/v1/apps/{app}/config"),
        &[],
        Some(r#"{"COLOR":"green"}"#),
    )
    .await;
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error"]["code"], "not_leader", "{refused}");
    let message = error_message(&refused);
    assert!(
        message.contains(&format!(
            "the leader at {} does not answer",
            first.api_url()
        )) && !message.contains('\n'),
        "{refused}"
    );

    let last = std::sync::Mutex::new(String::new());
    let took_over = eventually(Duration::from_secs(30), async || {
        let set = second.slipway(&second.home(), &["config:set", "-a", &app, "COLOR=green"]);
        *last.lock().unwrap() = crate::support::text(&set);
        set.status.success()
    })
    .await;
    assert!(
        took_over,
        "the follower did not take over deploys: {}\n{}",
        last.lock().unwrap(),
        follower.log_text()
    );
    let releases = second.slipway_ok(&second.home(), &["releases", "-a", &app]);
    assert!(releases.contains("COLOR"), "{releases}");
    assert_eq!(second.get_app(&app).await.0, 200);
    follower.stop();
}

/// The documented move from SQLite to PostgreSQL: stop the server, `slipway store:copy`, start
/// it on the new store; apps, config and the admin token carry over.
#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_store_moves_to_postgres_with_store_copy() {
    let db = Database::new();
    let env = Env::new();
    let server = env.start_server();
    env.login();
    let app = crate::support::unique_app("moved");
    let _cleanup = crate::support::AppCleanup(app.clone());
    env.slipway_ok(&env.home(), &["apps:create", &app]);
    env.slipway_ok(&env.home(), &["config:set", "-a", &app, "GREETING=hello"]);
    server.stop();

    let sqlite = format!("sqlite://{}", env.data_dir().join("slipway.db").display());
    let copy = Command::new(crate::support::slipway_bin())
        .args(["store:copy", "--from", &sqlite, "--to", &db.url()])
        .output()
        .expect("running slipway store:copy");
    let copied = crate::support::text(&copy);
    assert!(copy.status.success(), "{copied}");
    assert!(copied.contains("apps: 1 rows"), "{copied}");

    let server = env.start_server_with(&["--database-url", &db.url()]);
    let config = env.slipway_ok(&env.home(), &["config", "-a", &app]);
    assert!(
        config.contains("GREETING") && config.contains("hello"),
        "{config}"
    );
    server.stop();
}
