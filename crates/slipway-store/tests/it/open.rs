use std::os::unix::fs::PermissionsExt;

use slipway_store::{Role, Store, StoreError};

use crate::{Backend, on_both, raw, store_on, url};

#[tokio::test]
async fn open_creates_an_owner_only_file_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slipway.db");
    assert!(!path.exists());

    let store = Store::open(&url(dir.path())).await.unwrap();
    assert!(path.exists());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode was {mode:o}");

    let mut conn = raw(dir.path()).await;
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(journal, "wal");

    store
        .create_user("a@example.com", Role::Admin)
        .await
        .unwrap();
    let wal = dir.path().join("slipway.db-wal");
    let mode = std::fs::metadata(&wal).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "WAL mode was {mode:o}");
    store.close().await;
}

async fn data_survives_closing_and_reopening(backend: Backend) {
    let (store, db) = store_on(backend).await;
    let user = store
        .create_user("admin@example.com", Role::Admin)
        .await
        .unwrap();
    store.close().await;

    let reopened = Store::open(db.url()).await.unwrap();
    assert_eq!(reopened.user(user.id).await.unwrap(), Some(user));
    assert_eq!(reopened.user_count().await.unwrap(), 1);
}

#[tokio::test]
async fn relative_urls_are_resolved_from_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = std::env::current_dir().unwrap();
    let up = "../".repeat(cwd.components().count());
    let relative = format!("{up}{}/relative.db", dir.path().display()).replace("//", "/");
    assert!(!relative.starts_with('/'));

    Store::open(&format!("sqlite://{relative}")).await.unwrap();
    assert!(dir.path().join("relative.db").exists());
}

#[tokio::test]
async fn foreign_urls_are_refused_without_echoing_credentials() {
    let err = Store::open("mysql://slipway:hunter2@db/slipway")
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("`mysql`"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[tokio::test]
async fn an_unreachable_postgres_is_reported_without_its_password() {
    let err = Store::open("postgres://slipway:hunter2@127.0.0.1:1/slipway")
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("cannot connect to the store at `postgres://slipway@127.0.0.1:1/slipway`"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

#[tokio::test]
async fn a_path_with_spaces_and_percent_signs_is_kept_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("my store 100%.db");
    let store = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store
        .create_user("a@example.com", Role::Admin)
        .await
        .unwrap();
    assert!(path.exists(), "{path:?}");
}

#[tokio::test]
async fn a_missing_directory_is_reported_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope").join("slipway.db");
    let err = Store::open(&format!("sqlite://{}", missing.display()))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
}

async fn a_store_written_by_a_newer_slipway_is_refused(backend: Backend) {
    let (store, db) = store_on(backend).await;
    store.close().await;
    let known = db.count("SELECT COUNT(*) FROM _sqlx_migrations").await;
    let mut conn = db.raw().await;
    sqlx::query(match backend {
        Backend::Sqlite => {
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99990101000000, 'from the future', TRUE, X'00', 0)"
        }
        Backend::Postgres => {
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99990101000000, 'from the future', TRUE, '\\x00', 0)"
        }
    })
    .execute(&mut conn)
    .await
    .unwrap();
    drop(conn);

    let err = Store::open(db.url()).await.unwrap_err();
    let StoreError::NewerSchema(message) = &err else {
        panic!("expected NewerSchema, got {err:?}");
    };
    assert!(message.contains("newer slipway"), "{message}");
    let location = match backend {
        Backend::Sqlite => db.path().join("slipway.db").display().to_string(),
        Backend::Postgres => slipway_store::redacted(db.url()),
    };
    assert!(message.contains(&location), "{message}");
    assert_eq!(
        db.count("SELECT COUNT(*) FROM _sqlx_migrations").await,
        known + 1,
        "refusing must not apply or remove migrations"
    );
}

#[tokio::test]
async fn in_memory_stores_keep_their_data_across_calls_and_are_separate() {
    let one = Store::open_in_memory().await.unwrap();
    let two = Store::open_in_memory().await.unwrap();
    one.create_user("a@example.com", Role::Admin).await.unwrap();
    let clone = one.clone();
    assert_eq!(clone.user_count().await.unwrap(), 1);
    assert_eq!(two.user_count().await.unwrap(), 0);
}

async fn concurrent_writers_wait_for_each_other(backend: Backend) {
    let (store, _db) = store_on(backend).await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create_user(&format!("user{i}@example.com"), Role::Member)
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(store.user_count().await.unwrap(), 16);
}

async fn unreadable_values_are_reported_as_corrupt_naming_the_column(backend: Backend) {
    let (store, db) = store_on(backend).await;
    let user = store
        .create_user("x@example.com", Role::Member)
        .await
        .unwrap();
    let mut conn = db.raw().await;
    sqlx::query(match backend {
        Backend::Sqlite => "PRAGMA ignore_check_constraints = ON",
        Backend::Postgres => "ALTER TABLE users DROP CONSTRAINT users_role_check",
    })
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("UPDATE users SET role = 'overlord'")
        .execute(&mut conn)
        .await
        .unwrap();

    let err = store.user(user.id).await.unwrap_err();
    let StoreError::Corrupt(message) = &err else {
        panic!("expected Corrupt, got {err:?}");
    };
    assert!(message.contains("`users.role`"), "{message}");
    assert!(message.contains("`overlord`"), "{message}");
}

#[tokio::test]
async fn an_in_memory_url_creates_no_file() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    store
        .create_user("a@example.com", Role::Admin)
        .await
        .unwrap();
    assert_eq!(store.user_count().await.unwrap(), 1);
    let cwd = std::env::current_dir().unwrap();
    let stray = std::fs::read_dir(&cwd)
        .unwrap()
        .filter_map(|entry| entry.ok())
        .any(|entry| entry.file_name().to_string_lossy().contains("memory"));
    assert!(
        !stray,
        "a file named after the in-memory database appeared in {cwd:?}"
    );
}

on_both!(
    data_survives_closing_and_reopening,
    a_store_written_by_a_newer_slipway_is_refused,
    concurrent_writers_wait_for_each_other,
    unreadable_values_are_reported_as_corrupt_naming_the_column,
);
