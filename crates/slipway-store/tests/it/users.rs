use slipway_store::{Role, StoreError, TokenScope};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::{Backend, on_both, store_on};

async fn users_are_created_counted_and_found(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    assert_eq!(store.user_count().await.unwrap(), 0);

    let admin = store
        .create_user("admin@example.com", Role::Admin)
        .await
        .unwrap();
    let member = store
        .create_user("bea@example.com", Role::Member)
        .await
        .unwrap();
    assert_eq!(store.user_count().await.unwrap(), 2);
    assert_eq!(store.user(admin.id).await.unwrap(), Some(admin.clone()));
    assert_eq!(
        store.user_by_email("bea@example.com").await.unwrap(),
        Some(member.clone())
    );
    assert_eq!(store.user(Uuid::now_v7()).await.unwrap(), None);
    assert_eq!(store.users().await.unwrap(), vec![admin, member]);
}

async fn a_duplicate_email_is_a_conflict(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    store
        .create_user("admin@example.com", Role::Admin)
        .await
        .unwrap();
    let err = store
        .create_user("admin@example.com", Role::Member)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m == "user `admin@example.com` already exists"),
        "{err:?}"
    );
    assert_eq!(store.user_count().await.unwrap(), 1);
}

async fn tokens_round_trip_and_revoke_once(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let user = store
        .create_user("admin@example.com", Role::Admin)
        .await
        .unwrap();
    let expires = OffsetDateTime::now_utc() + Duration::days(30);
    let token = store
        .create_token(user.id, TokenScope::Write, Some(expires))
        .await
        .unwrap();
    assert_eq!(token.user_id, user.id);
    assert_eq!(token.revoked_at, None);
    // Kept to the microsecond: what create returns is what a later read returns.
    let kept = token.expires_at.unwrap();
    assert!((expires - kept).abs() < Duration::microseconds(1));
    assert_eq!(store.token(token.id).await.unwrap(), Some(token.clone()));

    let forever = store
        .create_token(user.id, TokenScope::Read, None)
        .await
        .unwrap();
    assert_eq!(
        store.tokens(user.id).await.unwrap(),
        vec![forever.clone(), token.clone()]
    );

    store.revoke_token(token.id).await.unwrap();
    let revoked_at = store.token(token.id).await.unwrap().unwrap().revoked_at;
    assert!(revoked_at.is_some());
    store.revoke_token(token.id).await.unwrap();
    assert_eq!(
        store.token(token.id).await.unwrap().unwrap().revoked_at,
        revoked_at,
        "a second revocation keeps the first time"
    );
    assert_eq!(
        store.token(forever.id).await.unwrap().unwrap().revoked_at,
        None
    );
}

async fn tokens_need_an_existing_user_and_revoking_an_unknown_token_is_not_found(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let err = store
        .create_token(Uuid::now_v7(), TokenScope::Read, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = store.revoke_token(Uuid::now_v7()).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

#[test]
fn roles_and_scopes_round_trip_through_their_names() {
    for role in [Role::Admin, Role::Member] {
        assert_eq!(Role::parse(role.as_str()), Some(role));
    }
    for scope in [TokenScope::Read, TokenScope::Write, TokenScope::Admin] {
        assert_eq!(TokenScope::parse(&scope.to_string()), Some(scope));
    }
    assert_eq!(Role::parse("root"), None);
    assert!(TokenScope::Admin > TokenScope::Write && TokenScope::Write > TokenScope::Read);
}

async fn collaborators_are_added_listed_and_removed(backend: Backend) {
    let (store, _db) = store_on(backend).await;
    let app = crate::app(&store, "shared").await;
    let friend = crate::user(&store, "friend@example.com").await;
    assert!(!store.is_collaborator(app.id, friend.id).await.unwrap());
    store.add_collaborator(app.id, friend.id).await.unwrap();
    assert!(store.is_collaborator(app.id, friend.id).await.unwrap());
    let again = store.add_collaborator(app.id, friend.id).await.unwrap_err();
    assert!(
        matches!(again, slipway_store::StoreError::Conflict(_)),
        "{again:?}"
    );
    let listed = store.collaborators(app.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].email, "friend@example.com");
    store.remove_collaborator(app.id, friend.id).await.unwrap();
    assert!(store.collaborators(app.id).await.unwrap().is_empty());
    let gone = store
        .remove_collaborator(app.id, friend.id)
        .await
        .unwrap_err();
    assert!(
        matches!(gone, slipway_store::StoreError::NotFound(_)),
        "{gone:?}"
    );
}

async fn the_last_admin_and_owners_of_apps_cannot_be_removed(backend: Backend) {
    let (store, _db) = store_on(backend).await;
    let admin = store
        .create_user("root@example.com", slipway_store::Role::Admin)
        .await
        .unwrap();
    let last = store.remove_user(admin.id).await.unwrap_err();
    assert!(last.to_string().contains("last admin"), "{last}");
    let app = crate::app(&store, "owned").await;
    let owner = store.user(app.owner).await.unwrap().unwrap();
    let owns = store.remove_user(owner.id).await.unwrap_err();
    assert!(owns.to_string().contains("owned"), "{owns}");
    let member = crate::user(&store, "leaving@example.com").await;
    let token = store
        .create_token(member.id, slipway_store::TokenScope::Read, None)
        .await
        .unwrap();
    store.add_collaborator(app.id, member.id).await.unwrap();
    store.remove_user(member.id).await.unwrap();
    assert!(store.user(member.id).await.unwrap().is_none());
    assert!(store.token(token.id).await.unwrap().is_none());
    assert!(store.collaborators(app.id).await.unwrap().is_empty());
}

async fn passwords_and_token_addresses_are_kept(backend: Backend) {
    let (store, _db) = store_on(backend).await;
    let user = crate::user(&store, "pw@example.com").await;
    let (found, hash) = store
        .user_with_password("pw@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.id, hash), (user.id, None));
    store
        .set_password_hash(user.id, "$argon2id$v=19$stub")
        .await
        .unwrap();
    let (_, hash) = store
        .user_with_password("pw@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hash.as_deref(), Some("$argon2id$v=19$stub"));
    assert!(
        store
            .user_with_password("nobody@example.com")
            .await
            .unwrap()
            .is_none()
    );
    let token = store
        .create_token(user.id, slipway_store::TokenScope::Write, None)
        .await
        .unwrap();
    assert!(
        store
            .note_token_address(token.id, "10.0.0.1")
            .await
            .unwrap()
    );
    assert!(
        !store
            .note_token_address(token.id, "10.0.0.1")
            .await
            .unwrap()
    );
    assert!(
        store
            .note_token_address(token.id, "10.0.0.2")
            .await
            .unwrap()
    );
}

on_both!(
    users_are_created_counted_and_found,
    a_duplicate_email_is_a_conflict,
    tokens_round_trip_and_revoke_once,
    tokens_need_an_existing_user_and_revoking_an_unknown_token_is_not_found,
    collaborators_are_added_listed_and_removed,
    the_last_admin_and_owners_of_apps_cannot_be_removed,
    passwords_and_token_addresses_are_kept,
);
