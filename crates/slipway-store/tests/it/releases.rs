use std::collections::BTreeMap;

use slipway_store::StoreError;
use slipway_types::ProcessType;
use slipway_types::api::ReleaseStatus;
use uuid::Uuid;

use crate::{Backend, app, new_release, on_both, store_on, v, vars};

async fn a_release_round_trips_with_its_snapshot(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let app = app(&store, "web-1").await;
    let mut new = new_release(&app, "1.0.0");
    new.config = vars(&[("DATABASE_URL", "postgres://db"), ("GREETING", "hi")]);
    new.processes = BTreeMap::from([
        (ProcessType::web(), "gunicorn app:app".to_owned()),
        ("worker".parse().unwrap(), "celery worker".to_owned()),
    ]);
    new.commit = Some("0123456789abcdef".to_owned());
    new.app_json =
        slipway_types::AppJson::parse(r#"{"healthchecks": {"web": [{"path": "/health"}]}}"#)
            .unwrap();

    let release = store.create_release(new.clone(), None).await.unwrap();
    assert_eq!(release.status, ReleaseStatus::Pending);
    assert_eq!(release.status_reason, None);
    assert_eq!(release.config, new.config);
    assert_eq!(release.processes, new.processes);
    assert_eq!(release.app_json, new.app_json);
    assert_eq!(release.commit, new.commit);
    assert_eq!(release.image, new.image);
    assert_eq!(release.description, new.description);
    assert_eq!(release.created_by, new.created_by);

    assert_eq!(
        store.release_by_id(release.id).await.unwrap(),
        Some(release.clone())
    );
    assert_eq!(
        store.release(app.id, &v("1.0.0")).await.unwrap(),
        Some(release.clone())
    );
    assert_eq!(
        store.release(app.id, &v("1.0.0+g0123456")).await.unwrap(),
        Some(release.clone()),
        "build metadata does not name another release"
    );
    assert_eq!(store.release(app.id, &v("1.0.1")).await.unwrap(), None);
    assert_eq!(store.release_by_id(Uuid::now_v7()).await.unwrap(), None);
}

async fn a_release_replaces_the_config_only_when_asked_and_only_with_itself(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let app = app(&store, "web-1").await;
    assert!(store.config(app.id).await.unwrap().is_empty());

    let first = vars(&[("A", "1"), ("B", "2")]);
    store
        .create_release(new_release(&app, "1.0.0"), Some(&first))
        .await
        .unwrap();
    assert_eq!(store.config(app.id).await.unwrap(), first);

    store
        .create_release(new_release(&app, "1.0.1"), None)
        .await
        .unwrap();
    assert_eq!(
        store.config(app.id).await.unwrap(),
        first,
        "no new config given"
    );

    let err = store
        .create_release(new_release(&app, "1.0.1"), Some(&vars(&[("C", "3")])))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("`1.0.1`")),
        "{err:?}"
    );
    assert_eq!(
        store.config(app.id).await.unwrap(),
        first,
        "a refused release leaves the config alone"
    );

    let second = vars(&[("B", "two"), ("C", "3")]);
    store
        .create_release(new_release(&app, "1.0.2"), Some(&second))
        .await
        .unwrap();
    assert_eq!(store.config(app.id).await.unwrap(), second);

    let err = store
        .create_release(new_release(&app, "1.0.2+gdeadbee"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.versions(app.id).await.unwrap().len(), 3);
}

async fn the_same_version_in_another_app_is_fine_and_a_missing_app_not_found(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let one = app(&store, "one").await;
    let two = app(&store, "two").await;
    store
        .create_release(new_release(&one, "1.0.0"), None)
        .await
        .unwrap();
    store
        .create_release(new_release(&two, "1.0.0"), None)
        .await
        .unwrap();

    let mut ghost = new_release(&one, "1.0.0");
    ghost.app_id = Uuid::now_v7();
    let err = store.create_release(ghost, None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn releases_are_ordered_by_semver_not_by_text_or_creation(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let app = app(&store, "web-1").await;
    for version in ["1.9.0", "1.10.0", "1.2.0", "2.0.0", "2.0.0-rc.1", "1.0.0"] {
        store
            .create_release(new_release(&app, version), None)
            .await
            .unwrap();
    }
    let newest_first: Vec<String> = store
        .releases(app.id)
        .await
        .unwrap()
        .iter()
        .map(|r| r.version.to_string())
        .collect();
    assert_eq!(
        newest_first,
        ["2.0.0", "2.0.0-rc.1", "1.10.0", "1.9.0", "1.2.0", "1.0.0"]
    );
    let versions: Vec<String> = store
        .versions(app.id)
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        versions,
        ["1.0.0", "1.2.0", "1.9.0", "1.10.0", "2.0.0-rc.1", "2.0.0"]
    );
}

async fn promoting_makes_a_release_current_and_succeeded(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let app = app(&store, "web-1").await;
    let other = crate::app(&store, "other").await;
    assert_eq!(store.current_release(app.id).await.unwrap(), None);

    let first = store
        .create_release(new_release(&app, "1.0.0"), None)
        .await
        .unwrap();
    store
        .set_release_status(
            first.id,
            ReleaseStatus::Failed,
            Some("health check timed out"),
        )
        .await
        .unwrap();
    let failed = store.release_by_id(first.id).await.unwrap().unwrap();
    assert_eq!(failed.status, ReleaseStatus::Failed);
    assert_eq!(
        failed.status_reason.as_deref(),
        Some("health check timed out")
    );

    store.promote_release(app.id, first.id).await.unwrap();
    let current = store.current_release(app.id).await.unwrap().unwrap();
    assert_eq!(current.id, first.id);
    assert_eq!(current.status, ReleaseStatus::Succeeded);
    assert_eq!(current.status_reason, None);
    let listed = store.app(&app.name).await.unwrap().unwrap();
    assert_eq!(listed.current_release, Some(first.id));

    let second = store
        .create_release(new_release(&app, "1.1.0"), None)
        .await
        .unwrap();
    store.promote_release(app.id, second.id).await.unwrap();
    assert_eq!(
        store.current_release(app.id).await.unwrap().unwrap().id,
        second.id
    );

    let err = store
        .promote_release(other.id, second.id)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.current_release(other.id).await.unwrap(), None);
    assert_eq!(
        store
            .release_by_id(second.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        ReleaseStatus::Succeeded
    );

    let err = store
        .set_release_status(Uuid::now_v7(), ReleaseStatus::Failed, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn the_last_deployed_commit_is_the_newest_succeeded_release_with_one(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let app = app(&store, "web-1").await;
    assert_eq!(store.last_deployed_commit(app.id).await.unwrap(), None);

    let cut = |version: &str, commit: Option<&str>| {
        let mut release = new_release(&app, version);
        release.commit = commit.map(str::to_owned);
        release
    };
    let old = store
        .create_release(cut("1.0.0", Some("aaaa")), None)
        .await
        .unwrap();
    store.promote_release(app.id, old.id).await.unwrap();
    let newer = store
        .create_release(cut("1.1.0", Some("bbbb")), None)
        .await
        .unwrap();
    store.promote_release(app.id, newer.id).await.unwrap();
    assert_eq!(
        store.last_deployed_commit(app.id).await.unwrap().as_deref(),
        Some("bbbb")
    );

    // A config change has no commit; a pending or failed build does not count.
    let config_change = store
        .create_release(cut("1.1.1", None), None)
        .await
        .unwrap();
    store
        .promote_release(app.id, config_change.id)
        .await
        .unwrap();
    store
        .create_release(cut("1.2.0", Some("cccc")), None)
        .await
        .unwrap();
    let failed = store
        .create_release(cut("1.3.0", Some("dddd")), None)
        .await
        .unwrap();
    store
        .set_release_status(failed.id, ReleaseStatus::Failed, Some("crashed"))
        .await
        .unwrap();
    assert_eq!(
        store.last_deployed_commit(app.id).await.unwrap().as_deref(),
        Some("bbbb")
    );
}

async fn config_is_set_directly_only_before_the_first_release(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let app = app(&store, "web-2").await;
    let early = vars(&[("GREETING", "hi")]);
    store.set_config(app.id, &early).await.unwrap();
    assert_eq!(store.config(app.id).await.unwrap(), early);

    store
        .create_release(new_release(&app, "1.0.0"), None)
        .await
        .unwrap();
    let err = store
        .set_config(app.id, &vars(&[("OTHER", "x")]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.config(app.id).await.unwrap(), early);
}

async fn config_vars_and_snapshots_are_sealed_at_rest(backend: Backend) {
    use slipway_store::seal::Sealer;
    use sqlx::Row;

    let (plain_store, dir) = store_on(backend).await;
    let app = app(&plain_store, "sealed-1").await;
    // Written before the store had a key: still readable once it has one.
    plain_store
        .set_config(app.id, &vars(&[("OLD", "written-plain")]))
        .await
        .unwrap();
    let store = plain_store.sealing_with(Sealer::from_master_key(&[3; 32], b"test"));
    assert_eq!(
        store.config(app.id).await.unwrap(),
        vars(&[("OLD", "written-plain")])
    );

    let secret = vars(&[("DATABASE_URL", "postgres://u:hunter2@db/x")]);
    let mut new = new_release(&app, "1.0.0");
    new.config = secret.clone();
    let release = store.create_release(new, Some(&secret)).await.unwrap();
    assert_eq!(store.config(app.id).await.unwrap(), secret);
    assert_eq!(
        store
            .release_by_id(release.id)
            .await
            .unwrap()
            .unwrap()
            .config,
        secret
    );

    let mut conn = dir.raw().await;
    let value: String = sqlx::query("SELECT value FROM config_vars")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    let snapshot: String = sqlx::query("SELECT config FROM releases")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    for stored in [&value, &snapshot] {
        assert!(stored.starts_with("sealed:"), "{stored}");
        assert!(!stored.contains("hunter2"), "{stored}");
    }

    let wrong = store
        .clone()
        .sealing_with(Sealer::from_master_key(&[4; 32], b"test"));
    let err = wrong.config(app.id).await.unwrap_err().to_string();
    assert!(
        err.contains("cannot be decrypted with this master key"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

on_both!(
    a_release_round_trips_with_its_snapshot,
    a_release_replaces_the_config_only_when_asked_and_only_with_itself,
    the_same_version_in_another_app_is_fine_and_a_missing_app_not_found,
    releases_are_ordered_by_semver_not_by_text_or_creation,
    promoting_makes_a_release_current_and_succeeded,
    the_last_deployed_commit_is_the_newest_succeeded_release_with_one,
    config_vars_and_snapshots_are_sealed_at_rest,
    config_is_set_directly_only_before_the_first_release,
);
