use std::time::Duration;

use slipway_store::{Fence, Store, StoreError};

use crate::{Backend, app, new_release, on_both, store_on};

const LEADER: &str = "leader";
const LONG: Duration = Duration::from_secs(60);

async fn a_free_lease_is_taken_and_renewed_by_its_holder_only(backend: Backend) {
    let (store, _db) = store_on(backend).await;
    assert_eq!(store.lease(LEADER).await.unwrap(), None);

    let first = store
        .acquire_lease(LEADER, "server-a", "http://a:7070", LONG)
        .await
        .unwrap()
        .expect("a free lease is taken");
    assert_eq!((first.holder.as_str(), first.term), ("server-a", 1));
    assert!(first.expires_at > first.renewed_at);
    assert!(
        store
            .acquire_lease(LEADER, "server-b", "http://b:7070", LONG)
            .await
            .unwrap()
            .is_none(),
        "a held lease is not taken"
    );

    let renewed = store
        .acquire_lease(LEADER, "server-a", "http://a:7070", LONG)
        .await
        .unwrap()
        .expect("the holder renews");
    assert_eq!(renewed.term, 1, "renewing keeps the term");
    assert_eq!(renewed.acquired_at, first.acquired_at);
    assert!(renewed.expires_at >= first.expires_at);
    assert!(store.holds_lease(LEADER, "server-a", 1).await.unwrap());
    assert!(!store.holds_lease(LEADER, "server-b", 1).await.unwrap());
    assert_eq!(store.lease(LEADER).await.unwrap(), Some(renewed));
}

async fn an_expired_lease_changes_hands_with_a_new_term(backend: Backend) {
    let (store, _db) = store_on(backend).await;
    store
        .acquire_lease(
            LEADER,
            "server-a",
            "http://a:7070",
            Duration::from_millis(200),
        )
        .await
        .unwrap()
        .expect("a free lease is taken");
    let mut taken = None;
    for _ in 0..50 {
        taken = store
            .acquire_lease(LEADER, "server-b", "http://b:7070", LONG)
            .await
            .unwrap();
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let taken = taken.expect("the expired lease is taken within 5 s");
    assert_eq!(
        (taken.holder.as_str(), taken.holder_url.as_str(), taken.term),
        ("server-b", "http://b:7070", 2)
    );
    assert!(
        !store.holds_lease(LEADER, "server-a", 1).await.unwrap(),
        "the old term is fenced off"
    );
    assert!(
        store
            .acquire_lease(LEADER, "server-a", "http://a:7070", LONG)
            .await
            .unwrap()
            .is_none(),
        "the old holder cannot renew a lease it lost"
    );
}

async fn a_released_lease_is_free_at_once(backend: Backend) {
    let (store, _db) = store_on(backend).await;
    let first = store
        .acquire_lease(LEADER, "server-a", "http://a:7070", LONG)
        .await
        .unwrap()
        .expect("a free lease is taken");
    let renewed = store
        .acquire_lease(LEADER, "server-a", "http://a:7070", LONG)
        .await
        .unwrap()
        .expect("the holder renews");
    store.release_lease(&first).await.unwrap();
    assert!(
        store.holds_lease(LEADER, "server-a", 1).await.unwrap(),
        "a lease renewed since the one released stays"
    );

    store.release_lease(&renewed).await.unwrap();
    assert!(!store.holds_lease(LEADER, "server-a", 1).await.unwrap());
    let next = store
        .acquire_lease(LEADER, "server-b", "http://b:7070", LONG)
        .await
        .unwrap()
        .expect("a released lease is taken");
    assert_eq!((next.holder.as_str(), next.term), ("server-b", 2));
}

async fn racing_servers_get_the_lease_once(backend: Backend) {
    let (store, _db) = store_on(backend).await;
    let contenders: Vec<_> = (0..8)
        .map(|i| {
            let store: Store = store.clone();
            tokio::spawn(async move {
                store
                    .acquire_lease(LEADER, &format!("server-{i}"), "http://x:7070", LONG)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for contender in contenders {
        winners += usize::from(contender.await.unwrap().is_some());
    }
    assert_eq!(winners, 1);
}

on_both!(
    a_free_lease_is_taken_and_renewed_by_its_holder_only,
    an_expired_lease_changes_hands_with_a_new_term,
    a_released_lease_is_free_at_once,
    racing_servers_get_the_lease_once,
);

/// A server that lost the lease cannot make a release current: the new leader decides.
async fn a_fenced_store_promotes_only_while_its_server_leads(backend: Backend) {
    let (store, _db) = store_on(backend).await;
    let fence = std::sync::Arc::new(Fence::new(LEADER, "server-a"));
    let fenced = store.clone().fenced_by(fence.clone());
    let web = app(&store, "fenced").await;
    let first = store
        .create_release(new_release(&web, "1.0.0"), None)
        .await
        .unwrap();
    let err = fenced.promote_release(web.id, first.id).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "no lease yet: {err:?}"
    );

    let lease = store
        .acquire_lease(
            LEADER,
            "server-a",
            "http://a:7070",
            Duration::from_millis(300),
        )
        .await
        .unwrap()
        .expect("a free lease is taken");
    fence.hold(lease.term);
    fenced.promote_release(web.id, first.id).await.unwrap();

    let second = store
        .create_release(new_release(&web, "1.1.0"), None)
        .await
        .unwrap();
    let mut taken = None;
    for _ in 0..50 {
        taken = store
            .acquire_lease(LEADER, "server-b", "http://b:7070", LONG)
            .await
            .unwrap();
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(taken.is_some(), "the expired lease is taken within 5 s");
    let err = fenced.promote_release(web.id, second.id).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(message) if message.contains("no longer holds")),
        "{err:?}"
    );
    let current = store.current_release(web.id).await.unwrap();
    assert_eq!(
        current.map(|r| r.id),
        Some(first.id),
        "the stale promote changed nothing"
    );
}

on_both!(a_fenced_store_promotes_only_while_its_server_leads);
