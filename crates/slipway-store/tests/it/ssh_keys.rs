use slipway_store::{NewSshKey, StoreError};
use uuid::Uuid;

use crate::{Backend, on_both, store_on, user};

fn key<'a>(user_id: Uuid, name: &'a str, fingerprint: &'a str) -> NewSshKey<'a> {
    NewSshKey {
        user_id,
        name,
        algorithm: "ssh-ed25519",
        public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHdvQvJbMVm0E2pHq3S8kP0K9w2S1tW4nq8x6aJ7b1cD",
        fingerprint,
    }
}

async fn keys_are_added_listed_found_and_touched(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let bea = user(&store, "bea@example.com").await;
    let first = store
        .add_ssh_key(key(bea.id, "bea@laptop", "SHA256:first"))
        .await
        .unwrap();
    let second = store
        .add_ssh_key(key(bea.id, "bea@desktop", "SHA256:second"))
        .await
        .unwrap();
    assert_eq!(first.user_id, bea.id);
    assert_eq!(first.name, "bea@laptop");
    assert_eq!(first.last_used_at, None);

    assert_eq!(
        store.ssh_keys(bea.id).await.unwrap(),
        vec![first.clone(), second.clone()]
    );
    assert_eq!(
        store.ssh_key_by_fingerprint("SHA256:second").await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        store
            .ssh_key_by_fingerprint("SHA256:unknown")
            .await
            .unwrap(),
        None
    );

    store.touch_ssh_key(first.id).await.unwrap();
    let touched = store
        .ssh_key_by_fingerprint("SHA256:first")
        .await
        .unwrap()
        .unwrap();
    assert!(
        touched
            .last_used_at
            .is_some_and(|at| at >= first.created_at)
    );
}

async fn a_key_belongs_to_one_user_only(backend: Backend) {
    let (store, dir) = store_on(backend).await;
    let bea = user(&store, "bea@example.com").await;
    let cal = user(&store, "cal@example.com").await;
    store
        .add_ssh_key(key(bea.id, "laptop", "SHA256:shared"))
        .await
        .unwrap();
    for owner in [bea.id, cal.id] {
        let err = store
            .add_ssh_key(key(owner, "again", "SHA256:shared"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains("`SHA256:shared` is already registered")),
            "{err:?}"
        );
    }
    assert_eq!(dir.count("SELECT COUNT(*) FROM ssh_keys").await, 1);
}

async fn a_key_for_a_missing_user_is_not_found(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let err = store
        .add_ssh_key(key(Uuid::now_v7(), "ghost", "SHA256:ghost"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn only_the_owner_removes_a_key(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let bea = user(&store, "bea@example.com").await;
    let cal = user(&store, "cal@example.com").await;
    let added = store
        .add_ssh_key(key(bea.id, "laptop", "SHA256:bea"))
        .await
        .unwrap();

    let err = store.remove_ssh_key(cal.id, added.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.ssh_keys(bea.id).await.unwrap().len(), 1);

    store.remove_ssh_key(bea.id, added.id).await.unwrap();
    assert_eq!(store.ssh_keys(bea.id).await.unwrap(), vec![]);
    assert_eq!(
        store.ssh_key_by_fingerprint("SHA256:bea").await.unwrap(),
        None
    );
    let again = store.remove_ssh_key(bea.id, added.id).await.unwrap_err();
    assert!(matches!(again, StoreError::NotFound(_)), "{again:?}");
}

async fn keys_go_with_their_user(backend: Backend) {
    let (store, dir) = store_on(backend).await;
    let bea = user(&store, "bea@example.com").await;
    store
        .add_ssh_key(key(bea.id, "laptop", "SHA256:bea"))
        .await
        .unwrap();
    let mut conn = dir.raw().await;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(bea.id.to_string())
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(dir.count("SELECT COUNT(*) FROM ssh_keys").await, 0);
}

on_both!(
    keys_are_added_listed_found_and_touched,
    a_key_belongs_to_one_user_only,
    a_key_for_a_missing_user_is_not_found,
    only_the_owner_removes_a_key,
    keys_go_with_their_user,
);
