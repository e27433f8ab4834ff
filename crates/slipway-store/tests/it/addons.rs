use slipway_store::{BackupOutcome, NewAddon, StoreError};
use slipway_types::api::{BackupStatus, BackupTrigger};
use uuid::Uuid;

use crate::{Backend, app, on_both, store_on};

fn postgres(app_id: Uuid, name: &'static str, var: &'static str) -> NewAddon<'static> {
    NewAddon {
        app_id,
        name,
        kind: "postgres",
        config_var: var,
        sealed: b"\x01sealed bytes\x00\xff",
    }
}

async fn addons_are_created_found_listed_and_deleted(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let app = app(&store, "web-1").await;
    let other = crate::app(&store, "other").await;
    let db = store
        .create_addon(postgres(app.id, "postgres-1", "DATABASE_URL"))
        .await
        .unwrap();
    let cache = store
        .create_addon(NewAddon {
            kind: "redis",
            ..postgres(app.id, "cache", "REDIS_URL")
        })
        .await
        .unwrap();
    store
        .create_addon(postgres(other.id, "postgres-1", "DATABASE_URL"))
        .await
        .unwrap();

    assert_eq!(db.sealed, b"\x01sealed bytes\x00\xff");
    assert_eq!(
        store.addon(app.id, "postgres-1").await.unwrap(),
        Some(db.clone())
    );
    assert_eq!(store.addon(app.id, "nope").await.unwrap(), None);
    assert_eq!(
        store.addons(app.id).await.unwrap(),
        vec![db.clone(), cache.clone()]
    );

    store.delete_addon(db.id).await.unwrap();
    assert_eq!(store.addons(app.id).await.unwrap(), vec![cache]);
    let err = store.delete_addon(db.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn a_taken_name_or_an_unknown_kind_is_a_conflict_and_a_missing_app_not_found(
    backend: Backend,
) {
    let (store, _dir) = store_on(backend).await;
    let app = app(&store, "web-1").await;
    store
        .create_addon(postgres(app.id, "db", "DATABASE_URL"))
        .await
        .unwrap();
    let err = store
        .create_addon(postgres(app.id, "db", "DB_URL"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m == "add-on `db` already exists"),
        "{err:?}"
    );
    let err = store
        .create_addon(NewAddon {
            kind: "mysql",
            ..postgres(app.id, "other", "OTHER_URL")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("`mysql`")),
        "{err:?}"
    );
    let err = store
        .create_addon(postgres(Uuid::now_v7(), "db", "DATABASE_URL"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn backups_count_per_app_and_record_their_outcome(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let app = app(&store, "web-1").await;
    let other = crate::app(&store, "other").await;

    let first = store
        .start_backup(app.id, "postgres-1", BackupTrigger::Manual)
        .await
        .unwrap();
    assert_eq!((first.number, first.status), (1, BackupStatus::Running));
    assert_eq!(first.label(), "b001");
    let second = store
        .start_backup(app.id, "postgres-1", BackupTrigger::Scheduled)
        .await
        .unwrap();
    assert_eq!(second.label(), "a002");
    let elsewhere = store
        .start_backup(other.id, "postgres-1", BackupTrigger::Final)
        .await
        .unwrap();
    assert_eq!(elsewhere.label(), "f001");

    let done = store
        .finish_backup(
            first.id,
            BackupOutcome::Succeeded {
                file: "postgres-1-b001.dump",
                size_bytes: 4096,
            },
        )
        .await
        .unwrap();
    assert_eq!(done.status, BackupStatus::Succeeded);
    assert_eq!(done.file.as_deref(), Some("postgres-1-b001.dump"));
    assert_eq!(done.size_bytes, Some(4096));
    assert!(done.finished_at.unwrap() >= done.started_at);
    let failed = store
        .finish_backup(
            second.id,
            BackupOutcome::Failed {
                error: "postgres add-on `postgres-1` is not running",
            },
        )
        .await
        .unwrap();
    assert_eq!(failed.status, BackupStatus::Failed);
    assert_eq!(
        failed.error.as_deref(),
        Some("postgres add-on `postgres-1` is not running")
    );
    assert_eq!(failed.file, None);

    assert_eq!(
        store.backups(app.id, None).await.unwrap(),
        vec![failed.clone(), done.clone()]
    );
    assert_eq!(store.backup(app.id, 1).await.unwrap(), Some(done));
    assert_eq!(store.backup(app.id, 3).await.unwrap(), None);
}

async fn backups_outlive_their_addon_and_go_with_the_app(backend: Backend) {
    let (store, dir) = store_on(backend).await;
    let app = app(&store, "web-1").await;
    let db = store
        .create_addon(postgres(app.id, "postgres-1", "DATABASE_URL"))
        .await
        .unwrap();
    let last = store
        .start_backup(app.id, "postgres-1", BackupTrigger::Final)
        .await
        .unwrap();
    store
        .start_backup(app.id, "cache", BackupTrigger::Manual)
        .await
        .unwrap();
    store.delete_addon(db.id).await.unwrap();

    let kept = store.backups(app.id, Some("postgres-1")).await.unwrap();
    assert_eq!(kept, vec![last.clone()]);
    store.delete_backup(last.id).await.unwrap();
    assert!(matches!(
        store.delete_backup(last.id).await.unwrap_err(),
        StoreError::NotFound(_)
    ));

    store.delete_app(app.id).await.unwrap();
    assert_eq!(dir.count("SELECT COUNT(*) FROM addon_backups").await, 0);
}

async fn running_backups_a_stopped_server_left_are_failed_at_start(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let app = app(&store, "web-1").await;
    let running = store
        .start_backup(app.id, "postgres-1", BackupTrigger::Scheduled)
        .await
        .unwrap();
    let done = store
        .start_backup(app.id, "postgres-1", BackupTrigger::Manual)
        .await
        .unwrap();
    store
        .finish_backup(
            done.id,
            BackupOutcome::Succeeded {
                file: "x.dump",
                size_bytes: 1,
            },
        )
        .await
        .unwrap();

    assert_eq!(
        store
            .fail_running_backups("interrupted by a server restart")
            .await
            .unwrap(),
        1
    );
    let backup = store.backup(app.id, running.number).await.unwrap().unwrap();
    assert_eq!(backup.status, BackupStatus::Failed);
    assert_eq!(
        backup.error.as_deref(),
        Some("interrupted by a server restart")
    );
    let done = store.backup(app.id, done.number).await.unwrap().unwrap();
    assert_eq!(done.status, BackupStatus::Succeeded);
}

on_both!(
    addons_are_created_found_listed_and_deleted,
    a_taken_name_or_an_unknown_kind_is_a_conflict_and_a_missing_app_not_found,
    backups_count_per_app_and_record_their_outcome,
    backups_outlive_their_addon_and_go_with_the_app,
    running_backups_a_stopped_server_left_are_failed_at_start,
);
