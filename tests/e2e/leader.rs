//! Two `slipway server` processes on one PostgreSQL database: both serve the API and the
//! router, only the lease holder deploys; when it is killed, the other takes over deploys
//! within the lease time.

use std::process::Command;
use std::time::Duration;

use crate::support::{Env, eventually};

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

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_takes_over_deploys_when_the_leader_dies() {
    let db = Database::new();
    let url = db.url();
    let first = Env::new();
    let leader = first.start_server_with(&["--database-url", &url, "--leader-lease", LEASE]);
    let key = first.data_dir().join("master.key");
    let second = Env::new();
    let follower = second.start_server_with(&[
        "--database-url",
        &url,
        "--leader-lease",
        LEASE,
        "--master-key-file",
        key.to_str().expect("a UTF-8 path"),
    ]);
    first.login();
    let token = std::fs::read_to_string(first.data_dir().join("admin.token"))
        .expect("admin.token written by the first server");
    second.slipway_ok(
        &second.home(),
        &["login", "--url", &second.api_url(), "--token", token.trim()],
    );

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

    let refused = second.slipway(&second.home(), &["config:set", "-a", &app, "COLOR=blue"]);
    let refused_text = crate::support::text(&refused);
    assert!(!refused.status.success(), "{refused_text}");
    assert!(
        refused_text.contains("follower") && refused_text.contains(&first.api_url()),
        "{refused_text}"
    );

    leader.crash();
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
