use slipway_store::seal::Sealer;
use slipway_store::{MAX_DRAINS_PER_APP, Store, StoreError, parse_drain_token};
use slipway_types::drains::DrainUrl;

use crate::{Backend, app, on_both, store_on};

fn url(text: &str) -> DrainUrl {
    DrainUrl::parse(text).expect("a valid drain url")
}

async fn drains_are_listed_per_app_and_removed_by_id(backend: Backend) {
    let (store, _db) = store_on(backend).await;
    let web = app(&store, "web").await;
    let other = app(&store, "other").await;
    let syslog = store
        .add_drain(web.id, &url("syslog+tls://logs.example.com:6514"))
        .await
        .unwrap();
    let https = store
        .add_drain(web.id, &url("https://user:pw@logs.example.com/in"))
        .await
        .unwrap();
    store
        .add_drain(other.id, &url("syslog+tls://logs.example.com:6514"))
        .await
        .unwrap();
    assert_eq!(syslog.app, web.name);
    assert_eq!(parse_drain_token(&syslog.token()), Some(syslog.id));

    let listed = store.drains(Some(web.id)).await.unwrap();
    assert_eq!(listed, [syslog.clone(), https.clone()], "oldest first");
    assert_eq!(store.drains(None).await.unwrap().len(), 3);

    let again = store
        .add_drain(web.id, &url("syslog+tls://logs.example.com:6514"))
        .await
        .unwrap_err();
    assert!(matches!(again, StoreError::Conflict(_)), "{again:?}");

    let elsewhere = store.remove_drain(other.id, syslog.id).await.unwrap_err();
    assert!(
        matches!(elsewhere, StoreError::NotFound(_)),
        "{elsewhere:?}"
    );
    store.remove_drain(web.id, syslog.id).await.unwrap();
    assert_eq!(store.drains(Some(web.id)).await.unwrap(), [https]);

    store.delete_app(web.id).await.unwrap();
    assert_eq!(
        store.drains(None).await.unwrap().len(),
        1,
        "the app's drains go with it"
    );
}

async fn an_app_has_a_bounded_number_of_drains(backend: Backend) {
    let (store, _db) = store_on(backend).await;
    let web = app(&store, "web").await;
    for port in 0..MAX_DRAINS_PER_APP {
        store
            .add_drain(web.id, &url(&format!("syslog://127.0.0.1:{}", 1000 + port)))
            .await
            .unwrap();
    }
    let full = store
        .add_drain(web.id, &url("syslog://127.0.0.1:2000"))
        .await
        .unwrap_err();
    assert!(matches!(full, StoreError::Conflict(_)), "{full:?}");
}

async fn drain_urls_are_sealed_at_rest(backend: Backend) {
    let (store, db) = store_on(backend).await;
    let store: Store = store.sealing_with(Sealer::from_master_key(&[7; 32], b"test"));
    let web = app(&store, "web").await;
    let secret = url("https://user:hunter2@logs.example.com/in?token=t0k3n");
    let drain = store.add_drain(web.id, &secret).await.unwrap();
    assert_eq!(drain.url, secret);

    let mut conn = db.raw().await;
    let (sealed, shown): (String, String) =
        sqlx::query_as("SELECT url_sealed, url_shown FROM drains")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(
        !sealed.contains("hunter2") && !sealed.contains("t0k3n"),
        "{sealed}"
    );
    assert_eq!(shown, "https://user:…@logs.example.com/in?…");
    assert_eq!(store.drains(None).await.unwrap()[0].url, secret);
}

on_both!(
    drains_are_listed_per_app_and_removed_by_id,
    an_app_has_a_bounded_number_of_drains,
    drain_urls_are_sealed_at_rest,
);
