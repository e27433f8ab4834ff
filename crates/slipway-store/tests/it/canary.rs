use slipway_store::{RunningCanary, StoreError};
use slipway_types::canary::CanaryPolicy;
use slipway_types::{RateLimit, RatePeriod};
use time::OffsetDateTime;

use crate::{Backend, app, name, new_release, on_both, store_on};

const POLICY: CanaryPolicy = CanaryPolicy {
    percent: 20,
    duration_secs: 600,
    max_error_basis_points: 150,
    max_p99_ms: Some(800),
    sticky: true,
};

async fn a_canary_policy_is_set_replaced_and_cleared(backend: Backend) {
    let (store, _db) = store_on(backend).await;
    let app = app(&store, "cnr").await;
    assert_eq!(store.canary_policy(app.id).await.unwrap(), None);
    store.set_canary_policy(app.id, &POLICY).await.unwrap();
    assert_eq!(store.canary_policy(app.id).await.unwrap(), Some(POLICY));
    let plainer = CanaryPolicy {
        percent: 5,
        max_p99_ms: None,
        sticky: false,
        ..POLICY
    };
    store.set_canary_policy(app.id, &plainer).await.unwrap();
    assert_eq!(store.canary_policy(app.id).await.unwrap(), Some(plainer));
    assert!(store.clear_canary_policy(app.id).await.unwrap());
    assert!(!store.clear_canary_policy(app.id).await.unwrap());
    assert_eq!(store.canary_policy(app.id).await.unwrap(), None);
    let missing = store.set_canary_policy(uuid::Uuid::now_v7(), &POLICY).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

async fn one_canary_runs_per_app_until_it_ends(backend: Backend) {
    let (store, _db) = store_on(backend).await;
    let app = app(&store, "cnr").await;
    let release = store
        .create_release(new_release(&app, "1.1.0"), None)
        .await
        .unwrap();
    let canary = RunningCanary {
        app_id: app.id,
        release_id: release.id,
        policy: POLICY,
        started_at: micros_now(),
    };
    store.start_canary(&canary).await.unwrap();
    assert_eq!(
        store.running_canary(app.id).await.unwrap(),
        Some(canary.clone())
    );
    assert_eq!(
        store.running_canaries().await.unwrap(),
        std::slice::from_ref(&canary)
    );
    let again = store.start_canary(&canary).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    store.end_canary(app.id).await.unwrap();
    assert_eq!(store.running_canary(app.id).await.unwrap(), None);
    assert!(store.running_canaries().await.unwrap().is_empty());
}

async fn rate_limits_are_listed_by_app_name(backend: Backend) {
    let (store, _db) = store_on(backend).await;
    let zed = app(&store, "zed").await;
    let abc = app(&store, "abc").await;
    let per_second = RateLimit {
        requests: 100,
        period: RatePeriod::Second,
        burst: 200,
    };
    let per_minute = RateLimit {
        requests: 6000,
        period: RatePeriod::Minute,
        burst: 6000,
    };
    store.set_rate_limit(zed.id, &per_second).await.unwrap();
    store.set_rate_limit(abc.id, &per_second).await.unwrap();
    store.set_rate_limit(abc.id, &per_minute).await.unwrap();
    assert_eq!(store.rate_limit(abc.id).await.unwrap(), Some(per_minute));
    assert_eq!(
        store.rate_limits().await.unwrap(),
        [(name("abc"), per_minute), (name("zed"), per_second)]
    );
    assert!(store.clear_rate_limit(zed.id).await.unwrap());
    assert_eq!(store.rate_limit(zed.id).await.unwrap(), None);
    assert_eq!(store.rate_limits().await.unwrap().len(), 1);
}

/// Now, at the microsecond precision the store keeps.
fn micros_now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .expect("a valid nanosecond")
}

on_both!(
    a_canary_policy_is_set_replaced_and_cleared,
    one_canary_runs_per_app_until_it_ends,
    rate_limits_are_listed_by_app_name,
);
