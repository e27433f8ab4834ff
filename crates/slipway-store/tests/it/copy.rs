use slipway_store::seal::Sealer;
use slipway_store::{AuditFilter, NewAddon, NewAuditEvent, Store, StoreError, TABLES};
use slipway_types::api::{AuditOutcome, BackupTrigger};

use crate::{Backend, app, new_release, on_both, store_on, user, vars};

fn sealer() -> Sealer {
    Sealer::from_master_key(&[9; 32], b"test")
}

/// The copy names every table: a table added by a migration must be added to `TABLES` too.
async fn the_copy_knows_every_table_of_the_schema(backend: Backend) {
    let (store, _db) = store_on(backend).await;
    let mut known: Vec<&str> = TABLES.to_vec();
    known.extend(["_sqlx_migrations", "leases"]);
    known.sort_unstable();
    assert_eq!(store.table_names().await.unwrap(), known);
}

/// A SQLite store with a bit of everything, copied into a fresh store on `backend`, reads
/// back the same, sealed values included.
async fn a_sqlite_store_copies_into_an_empty_one_and_reads_the_same(backend: Backend) {
    let (source, _source_db) = store_on(Backend::Sqlite).await;
    let source = source.sealing_with(sealer());
    let owner = user(&source, "owner@example.com").await;
    source
        .create_token(owner.id, slipway_store::TokenScope::Write, None)
        .await
        .unwrap();
    let web = app(&source, "web").await;
    let mut first = new_release(&web, "1.0.0");
    first.config = vars(&[("SECRET", "hunter2")]);
    let first = source
        .create_release(first, Some(&vars(&[("SECRET", "hunter2")])))
        .await
        .unwrap();
    source.promote_release(web.id, first.id).await.unwrap();
    source
        .create_release(new_release(&web, "1.1.0"), None)
        .await
        .unwrap();
    source.set_maintenance(web.id, true).await.unwrap();
    source
        .create_addon(NewAddon {
            app_id: web.id,
            name: "postgres-1",
            kind: "postgres",
            config_var: "DATABASE_URL",
            sealed: &[0, 1, 2, 255],
        })
        .await
        .unwrap();
    source
        .start_backup(web.id, "postgres-1", BackupTrigger::Manual)
        .await
        .unwrap();
    source
        .audit(NewAuditEvent {
            actor: "owner@example.com",
            action: "app.create",
            target: "web",
            source_ip: None,
            detail: None,
            outcome: AuditOutcome::Ok,
        })
        .await
        .unwrap();

    let (target, _target_db) = store_on(backend).await;
    let target = target.sealing_with(sealer());
    let counts = source.copy_into(&target).await.unwrap();
    assert!(counts.contains(&("releases", 2)), "{counts:?}");

    assert_eq!(target.users().await.unwrap(), source.users().await.unwrap());
    assert_eq!(
        target.tokens(owner.id).await.unwrap(),
        source.tokens(owner.id).await.unwrap()
    );
    assert_eq!(target.apps().await.unwrap(), source.apps().await.unwrap());
    let current = target.current_release(web.id).await.unwrap();
    assert_eq!(current.map(|r| r.id), Some(first.id));
    assert_eq!(
        target.releases(web.id).await.unwrap(),
        source.releases(web.id).await.unwrap()
    );
    assert_eq!(
        target.config(web.id).await.unwrap(),
        vars(&[("SECRET", "hunter2")])
    );
    assert!(target.maintenance(web.id).await.unwrap());
    assert_eq!(
        target.addons(web.id).await.unwrap(),
        source.addons(web.id).await.unwrap()
    );
    assert_eq!(
        target.backups(web.id, None).await.unwrap(),
        source.backups(web.id, None).await.unwrap()
    );
    let all = AuditFilter {
        limit: 10,
        ..AuditFilter::default()
    };
    assert_eq!(
        target.audit_events(all).await.unwrap(),
        source.audit_events(all).await.unwrap()
    );

    let again = source.copy_into(&target).await.unwrap_err();
    assert!(
        matches!(&again, StoreError::Conflict(message) if message.contains("empty database")),
        "{again:?}"
    );
    let target: Store = target;
    assert_eq!(
        target.users().await.unwrap(),
        source.users().await.unwrap(),
        "nothing was copied twice"
    );
}

on_both!(
    the_copy_knows_every_table_of_the_schema,
    a_sqlite_store_copies_into_an_empty_one_and_reads_the_same,
);
