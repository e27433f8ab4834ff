//! The store against real SQLite files in temporary directories.

mod addons;
mod apps;
mod buildpacks;
mod builds;
mod domains;
mod formation;
mod open;
mod releases;
mod ssh_keys;
mod users;

use std::collections::BTreeMap;
use std::path::Path;

use semver::Version;
use slipway_store::{App, NewRelease, Role, Store, User};
use slipway_types::{AppJson, AppName, ConfigVars, ProcessType};
use sqlx::{Connection, SqliteConnection};
use tempfile::TempDir;

pub fn url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("slipway.db").display())
}

/// A migrated store in its own directory; the directory goes with the `TempDir`.
pub async fn store() -> (Store, TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(&url(dir.path()))
        .await
        .expect("a fresh store opens");
    (store, dir)
}

/// A second, raw connection to the same file: to look behind the API or tamper with it.
pub async fn raw(dir: &Path) -> SqliteConnection {
    SqliteConnection::connect(&url(dir))
        .await
        .expect("a raw connection to the store")
}

pub async fn count(dir: &Path, sql: &'static str) -> i64 {
    let mut conn = raw(dir).await;
    sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .expect("a count")
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
