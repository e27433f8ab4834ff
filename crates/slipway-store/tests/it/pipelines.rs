use slipway_store::{PipelineMember, StoreError};
use slipway_types::{PipelineName, Stage};
use uuid::Uuid;

use crate::{Backend, app, on_both, store_on, user};

fn pipeline_name(s: &str) -> PipelineName {
    s.parse().expect("a valid pipeline name")
}

async fn pipelines_are_created_found_listed_and_names_are_unique(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let owner = user(&store, "lead@example.com").await;
    let shop = store
        .create_pipeline(&pipeline_name("shop"), owner.id)
        .await
        .unwrap();
    let blog = store
        .create_pipeline(&pipeline_name("blog"), owner.id)
        .await
        .unwrap();
    assert_eq!(shop.owner, owner.id);
    assert_eq!(
        store.pipeline(&pipeline_name("shop")).await.unwrap(),
        Some(shop.clone())
    );
    assert_eq!(store.pipeline(&pipeline_name("nope")).await.unwrap(), None);
    assert_eq!(store.pipelines().await.unwrap(), vec![blog, shop]);

    let err = store
        .create_pipeline(&pipeline_name("shop"), owner.id)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m == "pipeline `shop` already exists"),
        "{err:?}"
    );
    let err = store
        .create_pipeline(&pipeline_name("orphan"), Uuid::now_v7())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn members_list_staging_first_and_an_app_joins_one_pipeline_only(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let owner = user(&store, "lead@example.com").await;
    let shop = store
        .create_pipeline(&pipeline_name("shop"), owner.id)
        .await
        .unwrap();
    let other = store
        .create_pipeline(&pipeline_name("other"), owner.id)
        .await
        .unwrap();
    let prod_b = app(&store, "shop-prod-b").await;
    let prod_a = app(&store, "shop-prod-a").await;
    let staging = app(&store, "shop-staging").await;
    for (member, stage) in [
        (&prod_b, Stage::Production),
        (&staging, Stage::Staging),
        (&prod_a, Stage::Production),
    ] {
        store
            .add_pipeline_app(shop.id, member.id, stage)
            .await
            .unwrap();
    }
    let member = |app: &slipway_store::App, stage| PipelineMember {
        app_id: app.id,
        app: app.name.clone(),
        stage,
    };
    assert_eq!(
        store.pipeline_apps(shop.id).await.unwrap(),
        vec![
            member(&staging, Stage::Staging),
            member(&prod_a, Stage::Production),
            member(&prod_b, Stage::Production),
        ]
    );
    assert_eq!(
        store.app_pipeline(staging.id).await.unwrap(),
        Some((shop.clone(), Stage::Staging))
    );

    // Neither another pipeline nor another stage of the same one.
    for pipeline in [other.id, shop.id] {
        let err = store
            .add_pipeline_app(pipeline, staging.id, Stage::Production)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m)
                if m == "the app is already in pipeline `shop` as a staging app"),
            "{err:?}"
        );
    }
    let err = store
        .add_pipeline_app(
            Uuid::now_v7(),
            app(&store, "loner").await.id,
            Stage::Staging,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    store.remove_pipeline_app(staging.id).await.unwrap();
    assert_eq!(store.app_pipeline(staging.id).await.unwrap(), None);
    let err = store.remove_pipeline_app(staging.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    store
        .add_pipeline_app(other.id, staging.id, Stage::Production)
        .await
        .unwrap();
    assert_eq!(
        store.app_pipeline(staging.id).await.unwrap(),
        Some((other, Stage::Production))
    );
}

async fn stages_outside_the_two_are_refused_by_the_schema(backend: Backend) {
    let (store, dir) = store_on(backend).await;
    let owner = user(&store, "lead@example.com").await;
    let shop = store
        .create_pipeline(&pipeline_name("shop"), owner.id)
        .await
        .unwrap();
    let review = app(&store, "review-app").await;
    let mut conn = dir.raw().await;
    let inserted = sqlx::query(
        "INSERT INTO pipeline_apps (app_id, pipeline_id, stage, added_at) VALUES ($1, $2, 'review', 0)",
    )
    .bind(review.id.to_string())
    .bind(shop.id.to_string())
    .execute(&mut conn)
    .await;
    assert!(inserted.is_err(), "a `review` stage was stored");
    assert_eq!(dir.count("SELECT COUNT(*) FROM pipeline_apps").await, 0);
}

async fn deleting_a_pipeline_or_an_app_drops_the_membership_and_nothing_else(backend: Backend) {
    let (store, dir) = store_on(backend).await;
    let owner = user(&store, "lead@example.com").await;
    let shop = store
        .create_pipeline(&pipeline_name("shop"), owner.id)
        .await
        .unwrap();
    let staging = app(&store, "shop-staging").await;
    let prod = app(&store, "shop-prod").await;
    store
        .add_pipeline_app(shop.id, staging.id, Stage::Staging)
        .await
        .unwrap();
    store
        .add_pipeline_app(shop.id, prod.id, Stage::Production)
        .await
        .unwrap();

    store.delete_app(prod.id).await.unwrap();
    assert_eq!(store.pipeline_apps(shop.id).await.unwrap().len(), 1);

    store.delete_pipeline(shop.id).await.unwrap();
    assert_eq!(store.app_pipeline(staging.id).await.unwrap(), None);
    assert!(store.app(&staging.name).await.unwrap().is_some());
    assert_eq!(dir.count("SELECT COUNT(*) FROM pipeline_apps").await, 0);
    let err = store.delete_pipeline(shop.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

on_both!(
    pipelines_are_created_found_listed_and_names_are_unique,
    members_list_staging_first_and_an_app_joins_one_pipeline_only,
    stages_outside_the_two_are_refused_by_the_schema,
    deleting_a_pipeline_or_an_app_drops_the_membership_and_nothing_else,
);
