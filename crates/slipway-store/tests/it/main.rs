//! The store against real SQLite files in temporary directories and, for every test that
//! `on_both!` lists, against a fresh database in the PostgreSQL named by
//! `SLIPWAY_TEST_POSTGRES_URL` too (deploy/test.sh starts one and sets it).
#![expect(
    clippy::unwrap_used,
    reason = "test bodies that on_both! runs on each backend are plain async fns, not #[test]s"
)]

mod addons;
mod alerts;
mod apps;
mod buildpacks;
mod builds;
mod canary;
mod copy;
mod domains;
mod drains;
mod formation;
mod lease;
mod metrics;
mod open;
mod pipelines;
mod releases;
mod ssh_keys;
mod users;

use std::collections::BTreeMap;
use std::path::Path;

use semver::Version;
use slipway_store::{App, NewRelease, Role, Store, User};
use slipway_types::{AppJson, AppName, ConfigVars, ProcessType};
use sqlx::{AnyConnection, Connection, SqliteConnection};
use tempfile::TempDir;

/// Where the PostgreSQL half of the tests runs: a user allowed to create databases.
const POSTGRES_URL_VAR: &str = "SLIPWAY_TEST_POSTGRES_URL";

/// Runs each listed `async fn name(backend: Backend)` as two tests, `name::sqlite` and
/// `name::postgres`.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name($crate::Backend::Sqlite).await;
                }

                #[tokio::test]
                async fn postgres() {
                    super::$name($crate::Backend::Postgres).await;
                }
            }
        )*
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// An empty database for one test: a file in a temporary directory, or a database of its own
/// in the test PostgreSQL, dropped with this.
pub struct TestDb {
    url: String,
    dir: Option<TempDir>,
    /// The PostgreSQL server's URL and this test's database in it, to drop at the end.
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                TestDb {
                    url: url(dir.path()),
                    dir: Some(dir),
                    postgres: None,
                }
            }
            Backend::Postgres => {
                let server = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
                    panic!(
                        "{POSTGRES_URL_VAR} is not set: the store tests run against PostgreSQL \
                         too. Run deploy/test.sh, or start a PostgreSQL and export \
                         {POSTGRES_URL_VAR}=postgres://USER:PASSWORD@127.0.0.1:PORT/DATABASE \
                         (the user needs CREATEDB)"
                    )
                });
                let name = format!("slipway_test_{}", uuid::Uuid::now_v7().simple());
                let mut admin = admin(&server).await;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .expect("creating the test database");
                TestDb {
                    url: with_database(&server, &name),
                    dir: None,
                    postgres: Some((server, name)),
                }
            }
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The SQLite database's directory.
    pub fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("a SQLite test database lives in a directory")
            .path()
    }

    /// A second, raw connection to the same database: to look behind the API or tamper with it.
    pub async fn raw(&self) -> AnyConnection {
        sqlx::any::install_default_drivers();
        AnyConnection::connect(&self.url)
            .await
            .expect("a raw connection to the store")
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        let mut conn = self.raw().await;
        sqlx::query_scalar(sql)
            .fetch_one(&mut conn)
            .await
            .expect("a count")
    }
}

impl Drop for TestDb {
    /// Drops the PostgreSQL database, closing whatever connections the test left open.
    fn drop(&mut self) {
        let Some((server, name)) = self.postgres.take() else {
            return;
        };
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database");
            runtime.block_on(async {
                let mut admin = admin(&server).await;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(_))) && !std::thread::panicking() {
            panic!("dropping a test database failed: {dropped:?}");
        }
    }
}

async fn admin(server: &str) -> AnyConnection {
    sqlx::any::install_default_drivers();
    AnyConnection::connect(server).await.unwrap_or_else(|err| {
        panic!(
            "cannot connect to {POSTGRES_URL_VAR} ({}): {err}",
            slipway_store::redacted(server)
        )
    })
}

/// `server` with its database replaced by `name`, query parameters kept.
fn with_database(server: &str, name: &str) -> String {
    let (base, query) = server
        .split_once('?')
        .map_or((server, None), |(b, q)| (b, Some(q)));
    let (scheme, rest) = base.split_once("://").expect("a postgres:// URL");
    let host = rest.split_once('/').map_or(rest, |(host, _)| host);
    match query {
        Some(query) => format!("{scheme}://{host}/{name}?{query}"),
        None => format!("{scheme}://{host}/{name}"),
    }
}

/// A migrated store in a fresh database on `backend`; the database goes with the `TestDb`.
pub async fn store_on(backend: Backend) -> (Store, TestDb) {
    let db = TestDb::new(backend).await;
    let store = Store::open(db.url()).await.expect("a fresh store opens");
    (store, db)
}

pub fn url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("slipway.db").display())
}

/// A raw SQLite connection to the store file in `dir`, for what only SQLite has (pragmas).
pub async fn raw(dir: &Path) -> SqliteConnection {
    SqliteConnection::connect(&url(dir))
        .await
        .expect("a raw connection to the store")
}

pub async fn user(store: &Store, email: &str) -> User {
    store
        .create_user(email, Role::Member)
        .await
        .expect("a new user")
}

pub fn name(s: &str) -> AppName {
    s.parse().expect("a valid app name")
}

pub async fn app(store: &Store, app_name: &str) -> App {
    let owner = user(store, &format!("owner-of-{app_name}@example.com")).await;
    store
        .create_app(&name(app_name), owner.id)
        .await
        .expect("a new app")
}

pub fn v(s: &str) -> Version {
    Version::parse(s).expect("a valid version")
}

pub fn vars(pairs: &[(&str, &str)]) -> ConfigVars {
    pairs
        .iter()
        .map(|(k, v)| (k.parse().expect("a valid config key"), (*v).to_owned()))
        .collect()
}

pub fn new_release(app: &App, version: &str) -> NewRelease {
    NewRelease {
        app_id: app.id,
        version: v(version),
        image: format!("slipway/{}:{version}", app.name),
        config: ConfigVars::new(),
        processes: BTreeMap::from([(ProcessType::web(), "python app.py".to_owned())]),
        app_json: AppJson::default(),
        commit: None,
        description: format!("release {version}"),
        created_by: "dev@example.com".to_owned(),
    }
}
