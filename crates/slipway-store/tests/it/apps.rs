use slipway_store::{AuditFilter, NewAuditEvent, StoreError};
use slipway_types::ProcessType;
use slipway_types::api::AuditOutcome;
use uuid::Uuid;

use crate::{Backend, app, name, new_release, on_both, store_on, user, vars};

async fn apps_are_created_found_and_listed_by_name(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let owner = user(&store, "dev@example.com").await;
    let zeta = store.create_app(&name("zeta"), owner.id).await.unwrap();
    let alpha = store.create_app(&name("alpha"), owner.id).await.unwrap();
    assert_eq!(alpha.owner, owner.id);
    assert_eq!(alpha.current_release, None);

    assert_eq!(store.app(&name("zeta")).await.unwrap(), Some(zeta.clone()));
    assert_eq!(store.app(&name("nope")).await.unwrap(), None);
    assert_eq!(store.apps().await.unwrap(), vec![alpha, zeta]);
}

async fn a_taken_name_is_a_conflict_and_a_missing_owner_not_found(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let owner = user(&store, "dev@example.com").await;
    store.create_app(&name("web-1"), owner.id).await.unwrap();
    let err = store
        .create_app(&name("web-1"), owner.id)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m == "app `web-1` already exists"),
        "{err:?}"
    );
    let err = store
        .create_app(&name("orphan"), Uuid::now_v7())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn deleting_an_app_removes_everything_it_owns_and_nothing_else(backend: Backend) {
    let (store, dir) = store_on(backend).await;
    let doomed = app(&store, "doomed").await;
    let kept = app(&store, "kept").await;
    for target in [&doomed, &kept] {
        let release = store
            .create_release(new_release(target, "1.0.0"), Some(&vars(&[("A", "1")])))
            .await
            .unwrap();
        store.promote_release(target.id, release.id).await.unwrap();
        store.create_build(target.id, "abc1234").await.unwrap();
        store
            .ensure_formation(target.id, &[ProcessType::web()])
            .await
            .unwrap();
    }
    store
        .audit(NewAuditEvent {
            actor: "dev@example.com",
            action: "app.delete",
            target: "doomed",
            source_ip: None,
            detail: None,
            outcome: AuditOutcome::Ok,
        })
        .await
        .unwrap();

    store.delete_app(doomed.id).await.unwrap();

    assert_eq!(store.app(&name("doomed")).await.unwrap(), None);
    assert!(store.config(doomed.id).await.unwrap().is_empty());
    assert!(store.releases(doomed.id).await.unwrap().is_empty());
    assert!(store.builds(doomed.id).await.unwrap().is_empty());
    assert!(store.formation(doomed.id).await.unwrap().is_empty());
    for (table, left) in [
        ("SELECT COUNT(*) FROM apps", 1),
        ("SELECT COUNT(*) FROM config_vars", 1),
        ("SELECT COUNT(*) FROM releases", 1),
        ("SELECT COUNT(*) FROM builds", 1),
        ("SELECT COUNT(*) FROM formation", 1),
        ("SELECT COUNT(*) FROM audit_events", 1),
    ] {
        assert_eq!(dir.count(table).await, left, "{table}");
    }
    assert!(store.current_release(kept.id).await.unwrap().is_some());

    let err = store.delete_app(doomed.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn audit_events_come_newest_first_up_to_the_limit(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    for action in ["app.create", "config.set", "app.delete"] {
        store
            .audit(NewAuditEvent {
                actor: "dev@example.com",
                action,
                target: "web-1",
                source_ip: Some("127.0.0.1"),
                detail: Some("{\"keys\":[\"A\"]}"),
                outcome: AuditOutcome::Ok,
            })
            .await
            .unwrap();
    }
    let events = store.audit_events(limit(2)).await.unwrap();
    let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["app.delete", "config.set"]);
    assert_eq!(events[0].actor, "dev@example.com");
    assert_eq!(events[0].target, "web-1");
    assert_eq!(events[0].source_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(events[0].detail.as_deref(), Some("{\"keys\":[\"A\"]}"));
    assert!(events[0].at >= events[1].at);
    assert_eq!(events[0].outcome, Some(AuditOutcome::Ok));
    assert_eq!(store.audit_events(limit(10)).await.unwrap().len(), 3);
    assert!(store.audit_events(limit(-1)).await.unwrap().is_empty());
    let of_target = AuditFilter {
        target: Some("other"),
        ..limit(10)
    };
    assert!(store.audit_events(of_target).await.unwrap().is_empty());
    let of_actor = AuditFilter {
        actor: Some("dev@example.com"),
        ..limit(10)
    };
    assert_eq!(store.audit_events(of_actor).await.unwrap().len(), 3);
}

fn limit(limit: i64) -> AuditFilter<'static> {
    AuditFilter {
        limit,
        ..AuditFilter::default()
    }
}

async fn maintenance_mode_switches_per_app(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let web = app(&store, "web-1").await;
    let other = app(&store, "web-2").await;
    assert!(!store.maintenance(web.id).await.unwrap());
    store.set_maintenance(web.id, true).await.unwrap();
    assert!(store.maintenance(web.id).await.unwrap());
    assert!(!store.maintenance(other.id).await.unwrap());
    assert_eq!(
        store.apps_in_maintenance().await.unwrap(),
        vec![name("web-1")]
    );
    store.set_maintenance(web.id, false).await.unwrap();
    assert!(store.apps_in_maintenance().await.unwrap().is_empty());
    store.delete_app(other.id).await.unwrap();
    assert!(matches!(
        store.set_maintenance(other.id, true).await,
        Err(StoreError::NotFound(_))
    ));
}

on_both!(
    apps_are_created_found_and_listed_by_name,
    a_taken_name_is_a_conflict_and_a_missing_owner_not_found,
    deleting_an_app_removes_everything_it_owns_and_nothing_else,
    audit_events_come_newest_first_up_to_the_limit,
    maintenance_mode_switches_per_app,
);
