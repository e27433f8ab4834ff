use slipway_store::{FormationEntry, StoreError};
use slipway_types::ProcessType;
use uuid::Uuid;

use crate::{Backend, app, on_both, store_on};

fn entry(process: &str, quantity: u32, memory_bytes: Option<i64>) -> FormationEntry {
    FormationEntry {
        process: process.parse().expect("a valid process type"),
        quantity,
        memory_bytes,
    }
}

async fn new_process_types_start_with_one_web_and_no_others(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let app = app(&store, "web-1").await;
    assert!(store.formation(app.id).await.unwrap().is_empty());

    let worker: ProcessType = "worker".parse().unwrap();
    store
        .ensure_formation(app.id, &[ProcessType::web(), worker.clone()])
        .await
        .unwrap();
    assert_eq!(
        store.formation(app.id).await.unwrap(),
        [entry("web", 1, None), entry("worker", 0, None)]
    );

    store
        .set_formation(app.id, &ProcessType::web(), 3, Some(512 << 20))
        .await
        .unwrap();
    store
        .ensure_formation(
            app.id,
            &[ProcessType::web(), worker, "clock".parse().unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(
        store.formation(app.id).await.unwrap(),
        [
            entry("clock", 0, None),
            entry("web", 3, Some(512 << 20)),
            entry("worker", 0, None)
        ],
        "existing rows keep their scaling"
    );
}

async fn set_formation_replaces_both_values_and_adds_missing_rows(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let app = app(&store, "web-1").await;
    let worker: ProcessType = "worker".parse().unwrap();
    store
        .set_formation(app.id, &worker, 2, Some(256 << 20))
        .await
        .unwrap();
    assert_eq!(
        store.formation(app.id).await.unwrap(),
        [entry("worker", 2, Some(256 << 20))]
    );
    store.set_formation(app.id, &worker, 0, None).await.unwrap();
    assert_eq!(
        store.formation(app.id).await.unwrap(),
        [entry("worker", 0, None)]
    );
}

async fn formation_of_a_missing_app_is_not_found(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let err = store
        .set_formation(Uuid::now_v7(), &ProcessType::web(), 1, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = store
        .ensure_formation(Uuid::now_v7(), &[ProcessType::web()])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

on_both!(
    new_process_types_start_with_one_web_and_no_others,
    set_formation_replaces_both_values_and_adds_missing_rows,
    formation_of_a_missing_app_is_not_found,
);
