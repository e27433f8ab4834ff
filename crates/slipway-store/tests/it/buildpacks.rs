use slipway_store::StoreError;
use uuid::Uuid;

use crate::{Backend, app, on_both, store_on};

async fn buildpacks_keep_their_order_and_clear(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let app = app(&store, "bp-app").await;
    assert!(store.buildpacks(app.id).await.unwrap().is_empty());

    let list = [
        "https://example.com/z.git#v1".to_owned(),
        "nodejs".to_owned(),
        "file:///srv/a.git".to_owned(),
    ];
    store.set_buildpacks(app.id, &list).await.unwrap();
    assert_eq!(store.buildpacks(app.id).await.unwrap(), list);

    store
        .set_buildpacks(app.id, &["python".to_owned()])
        .await
        .unwrap();
    assert_eq!(store.buildpacks(app.id).await.unwrap(), ["python"]);

    store.set_buildpacks(app.id, &[]).await.unwrap();
    assert!(store.buildpacks(app.id).await.unwrap().is_empty());
}

async fn buildpacks_of_a_missing_app_are_not_found(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let error = store
        .set_buildpacks(Uuid::now_v7(), &["nodejs".to_owned()])
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound(_)), "{error:?}");
}

on_both!(
    buildpacks_keep_their_order_and_clear,
    buildpacks_of_a_missing_app_are_not_found,
);
