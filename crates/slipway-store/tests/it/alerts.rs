use slipway_store::seal::Sealer;
use slipway_store::{MAX_WEBHOOKS_PER_APP, Store, StoreError};
use slipway_types::alerts::{AlertRule, DeliveryInfo, EventKind, FiringAlert, Threshold};
use time::OffsetDateTime;

use crate::{Backend, app, on_both, store_on};

async fn webhook_secrets_are_sealed_at_rest_and_deliveries_are_recorded(backend: Backend) {
    let (store, dir) = store_on(backend).await;
    let store: Store = store.sealing_with(Sealer::from_master_key(&[3; 32], b"test"));
    let web = app(&store, "web").await;
    let hook = store
        .add_webhook(
            web.id,
            "https://hooks.example.test/slipway",
            &[EventKind::Release],
            "whsec-hunter2",
        )
        .await
        .unwrap();
    let sealed: i64 = dir
        .count("SELECT COUNT(*) FROM webhooks WHERE secret_sealed LIKE '%hunter2%'")
        .await;
    assert_eq!(sealed, 0, "the secret is in the clear");
    assert!(!format!("{hook:?}").contains("hunter2"));

    let duplicate = store
        .add_webhook(web.id, &hook.url, &EventKind::ALL, "other")
        .await
        .unwrap_err();
    assert!(
        matches!(duplicate, StoreError::Conflict(_)),
        "{duplicate:?}"
    );

    let delivery = DeliveryInfo {
        event: "release.succeeded".into(),
        ok: false,
        status: "503 Service Unavailable".into(),
        attempts: 6,
        at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
    };
    store.record_delivery(hook.id, &delivery).await.unwrap();
    let listed = store.webhooks(web.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].secret, "whsec-hunter2");
    assert_eq!(listed[0].events, [EventKind::Release]);
    assert!(listed[0].wants(EventKind::Release) && !listed[0].wants(EventKind::Alert));
    assert_eq!(listed[0].last_delivery.as_ref(), Some(&delivery));

    store.remove_webhook(web.id, hook.id).await.unwrap();
    let gone = store.remove_webhook(web.id, hook.id).await.unwrap_err();
    assert!(matches!(gone, StoreError::NotFound(_)), "{gone:?}");
}

async fn an_app_has_a_bounded_number_of_webhooks(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let web = app(&store, "web").await;
    for n in 0..MAX_WEBHOOKS_PER_APP {
        store
            .add_webhook(web.id, &format!("https://h{n}.test/"), &EventKind::ALL, "s")
            .await
            .unwrap();
    }
    let full = store
        .add_webhook(web.id, "https://one-more.test/", &EventKind::ALL, "s")
        .await
        .unwrap_err();
    assert!(matches!(full, StoreError::Conflict(_)), "{full:?}");
}

async fn thresholds_override_defaults_and_can_turn_a_rule_off(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let web = app(&store, "web").await;
    assert!(store.alert_thresholds(web.id).await.unwrap().is_empty());
    store
        .set_alert_threshold(web.id, AlertRule::ErrorRate, Some(Threshold::Percent(5.0)))
        .await
        .unwrap();
    store
        .set_alert_threshold(web.id, AlertRule::ErrorRate, Some(Threshold::Percent(2.5)))
        .await
        .unwrap();
    store
        .set_alert_threshold(web.id, AlertRule::CrashLoop, None)
        .await
        .unwrap();
    let set = store.alert_thresholds(web.id).await.unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(set[&AlertRule::ErrorRate], Some(Threshold::Percent(2.5)));
    assert_eq!(set[&AlertRule::CrashLoop], None);
}

async fn an_alert_fires_once_until_it_resolves_and_goes_with_its_app(backend: Backend) {
    let (store, dir) = store_on(backend).await;
    let web = app(&store, "web").await;
    let alert = FiringAlert {
        rule: AlertRule::ErrorRate,
        value: "40%".into(),
        message: "5xx rate 40% is at or above 5%".into(),
        since: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
    };
    assert!(store.fire_alert(web.id, &alert).await.unwrap());
    assert!(!store.fire_alert(web.id, &alert).await.unwrap());
    assert_eq!(
        store.firing_alerts(web.id).await.unwrap(),
        std::slice::from_ref(&alert)
    );
    assert!(
        store
            .resolve_alert(web.id, AlertRule::ErrorRate)
            .await
            .unwrap()
    );
    assert!(
        !store
            .resolve_alert(web.id, AlertRule::ErrorRate)
            .await
            .unwrap()
    );
    assert!(store.firing_alerts(web.id).await.unwrap().is_empty());

    assert!(store.fire_alert(web.id, &alert).await.unwrap());
    store
        .add_webhook(web.id, "https://h.test/", &EventKind::ALL, "s")
        .await
        .unwrap();
    store.delete_app(web.id).await.unwrap();
    let left: i64 = dir
        .count("SELECT (SELECT COUNT(*) FROM alerts_firing) + (SELECT COUNT(*) FROM webhooks)")
        .await;
    assert_eq!(left, 0);
}

on_both!(
    webhook_secrets_are_sealed_at_rest_and_deliveries_are_recorded,
    an_app_has_a_bounded_number_of_webhooks,
    thresholds_override_defaults_and_can_turn_a_rule_off,
    an_alert_fires_once_until_it_resolves_and_goes_with_its_app,
);
