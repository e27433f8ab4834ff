//! Add-ons: Postgres and Redis servers per app, their URLs in the config, data that survives
//! redeploys and server restarts, backups captured and restored, a failed backup that shows,
//! isolation between apps, and destroying with a final backup.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{Env, eventually, text};

/// Removes an app's add-on containers and volumes when the test ends, pass or fail
/// (`AppCleanup` knows only the app's own volume).
struct AddonCleanup(String);

impl Drop for AddonCleanup {
    fn drop(&mut self) {
        let label = format!("label=slipway.app={}", self.0);
        let lists: [(&[&str], &[&str]); 2] = [
            (&["ps", "-aq"], &["rm", "-f"]),
            (&["volume", "ls", "-q"], &["volume", "rm", "-f"]),
        ];
        for (list, remove) in lists {
            let Ok(out) = Command::new("docker")
                .args(list)
                .args(["--filter", &label])
                .output()
            else {
                continue;
            };
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                Command::new("docker").args(remove).arg(id).output().ok();
            }
        }
    }
}

/// GET `path` through the router: (status, body).
async fn get(env: &Env, app: &str, path: &str) -> (u16, String) {
    let host = format!("{app}.localhost");
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve(&host, ([127, 0, 0, 1], env.http_port).into())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client");
    match client
        .get(format!("http://{host}:{}{path}", env.http_port))
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(error) => (0, error.to_string()),
    }
}

/// The number a 200 answer of the fixture carries.
async fn count(env: &Env, app: &str, path: &str) -> u64 {
    let (status, body) = get(env, app, path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body.trim()
        .parse()
        .unwrap_or_else(|_| panic!("GET {path} answered `{body}`"))
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("running docker")
}

/// `docker inspect -f FORMAT NAME`, or `None` when there is no such object.
fn inspect(args: &[&str]) -> Option<String> {
    let out = docker(args);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn container(app: &str, addon: &str) -> String {
    format!("slipway-{app}-addon-{addon}")
}

/// The container's id and start time: the same after a server restart when it was adopted.
fn identity(name: &str) -> Option<String> {
    inspect(&["inspect", "-f", "{{.Id}} {{.State.StartedAt}}", name])
}

fn running(name: &str) -> bool {
    inspect(&["inspect", "-f", "{{.State.Running}}", name]).as_deref() == Some("true")
}

fn backup_files(env: &Env, app: &str) -> Vec<String> {
    let dir = env.data_dir().join("backups").join(app);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Fails with the command's output: the assertion message says what the server answered.
fn refused(env: &Env, dir: &Path, args: &[&str], expected: &str) {
    let output = env.slipway(dir, args);
    let printed = text(&output);
    assert!(
        !output.status.success(),
        "slipway {args:?} succeeded: {printed}"
    );
    assert!(printed.contains(expected), "slipway {args:?}: {printed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn addons_keep_data_across_deploys_and_restarts_and_back_up_restore_and_destroy() {
    let env = Env::new();
    let server = env.start_server();
    env.login();
    let (app, _cleanup, repo) = env.app_with_repo("pg", "pg-app");
    let _addons = AddonCleanup(app.clone());
    env.push_ok(&repo);

    // Bad input first: nothing is created.
    refused(
        &env,
        &repo,
        &["addons:create", "mysql"],
        "add-on kind `mysql` is unknown: use postgres or redis",
    );
    refused(
        &env,
        &repo,
        &["addons:create", "postgres", "--as", "Bad_Name"],
        "add-on name `Bad_Name` is invalid",
    );

    // Each add-on sets its var with a release of its own.
    let created = env.slipway_ok(&repo, &["addons:create", "postgres"]);
    assert_eq!(
        created,
        format!("Creating postgres on {app}... done, postgres-1 as DATABASE_URL, v1.0.1\n")
    );
    let created = env.slipway_ok(&repo, &["addons:create", "redis"]);
    assert_eq!(
        created,
        format!("Creating redis on {app}... done, redis-1 as REDIS_URL, v1.0.2\n")
    );
    refused(
        &env,
        &repo,
        &["addons:create", "postgres", "--as", "postgres-1"],
        &format!("app `{app}` already has an add-on named `postgres-1`"),
    );
    let config = env.slipway_ok(&repo, &["config"]);
    let db = container(&app, "postgres-1");
    assert!(
        config.contains(&format!("@{db}:5432/")) && config.contains("?sslmode=require\n"),
        "{config}"
    );
    assert!(config.contains("DATABASE_URL=postgres://"), "{config}");
    assert!(config.contains("REDIS_URL=redis://default:"), "{config}");
    let releases = env.slipway_ok(&repo, &["releases"]);
    assert!(
        releases.contains("Attach postgres-1 (DATABASE_URL)")
            && releases.contains("Attach redis-1 (REDIS_URL)"),
        "{releases}"
    );
    let listed = env.slipway_ok(&repo, &["addons"]);
    assert!(
        listed.contains("postgres-1  postgres  DATABASE_URL"),
        "{listed}"
    );
    assert!(
        listed.contains("redis-1     redis     REDIS_URL"),
        "{listed}"
    );

    assert_eq!(count(&env, &app, "/").await, 1);
    assert_eq!(count(&env, &app, "/").await, 2);
    assert_eq!(count(&env, &app, "/redis").await, 1);
    assert_eq!(count(&env, &app, "/redis").await, 2);

    // The data outlives a redeploy.
    env.git_ok(
        &repo,
        &["commit", "-q", "--allow-empty", "-m", "fix: redeploy"],
    );
    env.push_ok(&repo);
    assert_eq!(count(&env, &app, "/").await, 3);
    assert_eq!(count(&env, &app, "/redis").await, 3);

    // A server restart adopts the add-ons without restarting them.
    let before = identity(&db).expect("the postgres container exists");
    server.stop();
    assert!(running(&db), "stopping the server stopped the database");
    let server = env.start_server();
    assert_eq!(count(&env, &app, "/").await, 4);
    assert_eq!(identity(&db), Some(before), "the database was restarted");

    // A stopped add-on is started again.
    assert!(docker(&["stop", &db]).status.success());
    let restarted = eventually(Duration::from_secs(60), async || running(&db)).await;
    assert!(restarted, "the stopped database was not started again");
    let answered = eventually(Duration::from_secs(30), async || {
        get(&env, &app, "/").await.0 == 200
    })
    .await;
    assert!(answered, "the app did not reach its restarted database");
    let rows = count(&env, &app, "/").await;
    assert!(rows >= 6, "rows were lost: {rows}");

    let info = env.slipway_ok(&repo, &["addons:info", "postgres-1"]);
    assert!(info.starts_with("=== postgres-1\n"), "{info}");
    assert!(info.contains("State:         running"), "{info}");
    assert!(info.contains("Version:       17."), "{info}");
    assert!(info.contains("Size on disk:  "), "{info}");
    assert!(!info.contains("Size on disk:  -"), "{info}");
    assert!(info.contains("Connections:   "), "{info}");

    // psql from the add-on's image, over TLS.
    let ssl = env.slipway_ok(
        &repo,
        &[
            "pg:psql",
            "-c",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ],
    );
    assert!(ssl.lines().any(|line| line.trim() == "t"), "{ssl}");

    // Capture, lose the table, restore: the rows are back.
    let captured = env.slipway_ok(&repo, &["pg:backups:capture"]);
    assert!(
        captured.starts_with(&format!("Backing up postgres-1 on {app}... done, b001 (")),
        "{captured}"
    );
    let files = backup_files(&env, &app);
    assert!(
        files.len() == 1 && files[0].starts_with("postgres-1-b001-"),
        "{files:?}"
    );
    let dropped = env.slipway_ok(
        &repo,
        &[
            "run",
            "--",
            "python3",
            "-c",
            "import os, psycopg; psycopg.connect(os.environ['DATABASE_URL'], autocommit=True).execute('DROP TABLE visits')",
        ],
    );
    assert_eq!(dropped, "");
    assert_eq!(count(&env, &app, "/").await, 1, "the table was not dropped");
    let restored = env.slipway_ok(&repo, &["pg:backups:restore"]);
    assert_eq!(
        restored,
        format!("Restoring the latest backup into postgres-1 on {app}... done, b001 restored\n")
    );
    assert_eq!(count(&env, &app, "/").await, rows + 1);
    let psql = env.slipway_ok(&repo, &["pg:psql", "-c", "SELECT count(*) FROM visits"]);
    let restored_rows = (rows + 1).to_string();
    assert!(
        psql.lines().any(|line| line.trim() == restored_rows),
        "{psql}"
    );
    refused(
        &env,
        &repo,
        &["pg:backups:restore", "b999"],
        &format!("backup `b999` not found for app `{app}`"),
    );
    refused(
        &env,
        &repo,
        &["pg:backups:capture", "redis-1"],
        &format!("app `{app}` has no postgres add-on `redis-1`"),
    );

    // A backup while the database is down fails loudly and loses nothing. The reconciler
    // may start the database again before the backup runs: then it is tried once more.
    let mut failure = None;
    for _attempt in 0..5 {
        assert!(docker(&["stop", &db]).status.success());
        let output = env.slipway(&repo, &["pg:backups:capture"]);
        if !output.status.success() {
            failure = Some(text(&output));
            break;
        }
    }
    let failure = failure.expect("a backup of a stopped database succeeded five times");
    assert!(failure.contains("failed"), "{failure}");
    assert!(
        failure.contains("of add-on `postgres-1` failed: "),
        "{failure}"
    );
    let backups = env.slipway_ok(&repo, &["pg:backups"]);
    assert!(
        backups.lines().any(|line| line.contains("failed")) && backups.contains(" failed: "),
        "{backups}"
    );
    let logs = env.slipway_ok(&repo, &["logs", "--source", "platform", "-n", "200"]);
    assert!(logs.contains("FAILED"), "{logs}");
    assert!(server.log_text().contains("backup failed"));
    let failed_backups = env
        .metric(
            "slipway_backups_total",
            &[
                ("app", &app),
                ("addon", "postgres-1"),
                ("outcome", "failed"),
            ],
        )
        .await;
    assert!(failed_backups >= Some(1.0), "{failed_backups:?}");
    let back = eventually(Duration::from_secs(60), async || {
        get(&env, &app, "/").await.0 == 200
    })
    .await;
    assert!(
        back,
        "the database did not come back after the failed backup"
    );
    assert!(count(&env, &app, "/").await > rows + 1, "rows were lost");

    // Another app cannot reach this one's database, by name or by address.
    let (_other, _other_cleanup, other_repo) = env.app_with_repo("iso", "release-app");
    env.push_ok(&other_repo);
    let address = inspect(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &db,
    ])
    .expect("the database's address");
    let probe = format!(
        "import socket\nfor host in ['{db}', '{address}']:\n    try:\n        socket.create_connection((host, 5432), timeout=3).close()\n        print('reached', host)\n    except OSError as error:\n        print('refused', host, error)\n"
    );
    let from_other = env.slipway_ok(&other_repo, &["run", "--", "python3", "-c", &probe]);
    assert!(!from_other.contains("reached"), "{from_other}");
    assert_eq!(from_other.matches("refused").count(), 2, "{from_other}");
    let from_own = env.slipway_ok(&repo, &["run", "--", "python3", "-c", &probe]);
    assert_eq!(from_own.matches("reached").count(), 2, "{from_own}");

    // Destroying needs the name typed out; then the server, its data and its var go, and
    // the final backup stays.
    refused(
        &env,
        &repo,
        &["addons:destroy", "postgres-1"],
        "pass --confirm postgres-1",
    );
    refused(
        &env,
        &repo,
        &["addons:destroy", "postgres-1", "--confirm", "redis-1"],
        "--confirm `redis-1` does not match add-on `postgres-1`",
    );
    assert!(running(&db), "a refused destroy touched the database");
    let volume = format!("{db}-data");
    let destroyed = env.slipway_ok(
        &repo,
        &["addons:destroy", "postgres-1", "--confirm", "postgres-1"],
    );
    assert!(
        destroyed.starts_with(&format!(
            "Destroying postgres-1 on {app}... done, DATABASE_URL removed, v1.0."
        )),
        "{destroyed}"
    );
    assert!(destroyed.contains("Final backup f"), "{destroyed}");
    assert_eq!(identity(&db), None, "the container is still there");
    assert_eq!(
        inspect(&["volume", "inspect", "-f", "{{.Name}}", &volume]),
        None,
        "the volume is still there"
    );
    let config = env.slipway_ok(&repo, &["config"]);
    assert!(!config.contains("DATABASE_URL"), "{config}");
    assert!(config.contains("REDIS_URL"), "{config}");
    let files = backup_files(&env, &app);
    assert!(
        files.iter().any(|file| file.contains("-f0")),
        "no final backup file: {files:?}"
    );
    let kept = env.slipway_ok(&repo, &["pg:backups", "postgres-1"]);
    assert!(
        kept.lines()
            .any(|line| line.contains(" final ") && line.contains(" succeeded ")),
        "{kept}"
    );
    assert_eq!(count(&env, &app, "/redis").await, 4);

    // Destroying the app removes its remaining add-ons with their data.
    let redis = container(&app, "redis-1");
    env.slipway_ok(&repo, &["apps:destroy", "--confirm", &app]);
    assert_eq!(identity(&redis), None, "the redis container is still there");
    assert_eq!(
        inspect(&[
            "volume",
            "inspect",
            "-f",
            "{{.Name}}",
            &format!("{redis}-data")
        ]),
        None,
        "the redis volume is still there"
    );
    server.stop();
}
