use slipway_store::{Role, StoreError, TokenScope};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::store;

#[tokio::test]
async fn users_are_created_counted_and_found() {
    let (store, _dir) = store().await;
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

#[tokio::test]
async fn a_duplicate_email_is_a_conflict() {
    let (store, _dir) = store().await;
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

#[tokio::test]
async fn tokens_round_trip_and_revoke_once() {
    let (store, _dir) = store().await;
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

#[tokio::test]
async fn tokens_need_an_existing_user_and_revoking_an_unknown_token_is_not_found() {
    let (store, _dir) = store().await;
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
