use slipway_store::StoreError;
use slipway_types::api::BuildStatus;
use uuid::Uuid;

use crate::{Backend, app, on_both, store_on, v};

async fn a_build_collects_its_output_and_records_its_outcome(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let app = app(&store, "web-1").await;
    let build = store.create_build(app.id, "abc1234").await.unwrap();
    assert_eq!(build.status, BuildStatus::Pending);
    assert_eq!(build.output, "");
    assert_eq!(build.finished_at, None);
    assert_eq!(
        store.build(app.id, build.id).await.unwrap(),
        Some(build.clone())
    );

    store
        .append_build_output(build.id, "-----> Python app detected\n")
        .await
        .unwrap();
    store
        .append_build_output(build.id, "       Installing requirements\n")
        .await
        .unwrap();
    store
        .finish_build(build.id, BuildStatus::Succeeded, Some(&v("1.2.0")))
        .await
        .unwrap();

    let done = store.build(app.id, build.id).await.unwrap().unwrap();
    assert_eq!(
        done.output,
        "-----> Python app detected\n       Installing requirements\n"
    );
    assert_eq!(done.status, BuildStatus::Succeeded);
    assert_eq!(done.release_version, Some(v("1.2.0")));
    assert!(done.finished_at.unwrap() >= done.created_at);
    assert_eq!(done.commit, "abc1234");
}

async fn builds_are_listed_newest_first_and_scoped_to_their_app(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let app = app(&store, "web-1").await;
    let other = crate::app(&store, "other").await;
    let first = store.create_build(app.id, "1111111").await.unwrap();
    let second = store.create_build(app.id, "2222222").await.unwrap();
    store.create_build(other.id, "3333333").await.unwrap();

    let ids: Vec<Uuid> = store
        .builds(app.id)
        .await
        .unwrap()
        .iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(ids, [second.id, first.id]);
    assert_eq!(store.build(other.id, first.id).await.unwrap(), None);
}

async fn unknown_builds_and_apps_are_not_found(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let err = store.create_build(Uuid::now_v7(), "abc").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = store
        .append_build_output(Uuid::now_v7(), "x")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = store
        .finish_build(Uuid::now_v7(), BuildStatus::Failed, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn builds_left_pending_by_a_crash_are_failed_with_a_note_on_its_own_line(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let app = app(&store, "web-1").await;
    let silent = store.create_build(app.id, "1111111").await.unwrap();
    let mid_line = store.create_build(app.id, "2222222").await.unwrap();
    store
        .append_build_output(mid_line.id, "-----> Installing")
        .await
        .unwrap();
    let whole_lines = store.create_build(app.id, "3333333").await.unwrap();
    store
        .append_build_output(whole_lines.id, "-----> Installing\n")
        .await
        .unwrap();
    let finished = store.create_build(app.id, "4444444").await.unwrap();
    store
        .append_build_output(finished.id, "done\n")
        .await
        .unwrap();
    store
        .finish_build(finished.id, BuildStatus::Succeeded, Some(&v("1.0.0")))
        .await
        .unwrap();

    let failed = store
        .fail_unfinished_builds("build interrupted: slipway restarted")
        .await
        .unwrap();
    assert_eq!(failed, 3);

    let read = |id| {
        let store = store.clone();
        let app_id = app.id;
        async move { store.build(app_id, id).await.unwrap().unwrap() }
    };
    let note = "build interrupted: slipway restarted\n";
    assert_eq!(read(silent.id).await.output, note);
    assert_eq!(
        read(mid_line.id).await.output,
        format!("-----> Installing\n{note}")
    );
    assert_eq!(
        read(whole_lines.id).await.output,
        format!("-----> Installing\n{note}")
    );
    for id in [silent.id, mid_line.id, whole_lines.id] {
        let build = read(id).await;
        assert_eq!(build.status, BuildStatus::Failed);
        assert!(build.finished_at.is_some());
    }
    let untouched = read(finished.id).await;
    assert_eq!(untouched.output, "done\n");
    assert_eq!(untouched.status, BuildStatus::Succeeded);

    assert_eq!(store.fail_unfinished_builds("again").await.unwrap(), 0);
}

on_both!(
    a_build_collects_its_output_and_records_its_outcome,
    builds_are_listed_newest_first_and_scoped_to_their_app,
    unknown_builds_and_apps_are_not_found,
    builds_left_pending_by_a_crash_are_failed_with_a_note_on_its_own_line,
);
