//! A Postgres add-on from provisioning to destruction: TLS from the app network, backup and
//! restore, restarts and a recreated container on the same volume.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use slipway_addons::{AddonInstance, AddonKind};
use slipway_engine::{ContainerEngine, EngineError};

use crate::{Fixture, volume_exists};

/// Reads the test table over TLS with the app's URL, as an app on the network would.
async fn notes(fixture: &Fixture, addon: &AddonInstance) -> Vec<String> {
    let out = fixture
        .client(
            &addon.network,
            r#"psql "$URL" -X -q -A -t -c 'select body from notes order by body'"#,
            &[("URL", &addon.url())],
        )
        .await;
    assert_eq!(out.code, 0, "reading notes: {}", out.stderr);
    out.stdout.lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn postgres_serves_tls_backs_up_restores_and_survives_restarts() {
    Fixture::run(|fx| async move {
        let app = fx.app("pg");
        let addon = fx.addon(AddonKind::Postgres, &app, "db");
        let started = Instant::now();
        fx.provisioner.provision(&addon).await.expect("provision");
        eprintln!("provisioned postgres in {:?}", started.elapsed());

        let out = fx
            .client(
                &addon.network,
                r#"psql "$URL" -X -q -A -t -v ON_ERROR_STOP=1 \
                    -c 'create table notes (body text)' \
                    -c "insert into notes values ('kept')" \
                    -c 'select body from notes' \
                    -c 'select ssl from pg_stat_ssl where pid = pg_backend_pid()'"#,
                &[("URL", &addon.url())],
            )
            .await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.stdout.lines().collect::<Vec<_>>(), ["kept", "t"]);

        let out = fx
            .client(
                &addon.network,
                r#"psql "${URL/sslmode=require/sslmode=disable}" -X -q -c 'select 1'"#,
                &[("URL", &addon.url())],
            )
            .await;
        assert_ne!(out.code, 0, "a cleartext connection is refused");
        assert!(
            out.stderr.contains("no pg_hba.conf entry"),
            "{}",
            out.stderr
        );

        let status = fx.provisioner.status(&addon).await.expect("status");
        assert!(status.running);
        let version = status.version.expect("a version");
        assert!(version.starts_with("17."), "{version}");
        assert!(status.size_bytes.expect("a size") > 1_000_000);
        assert_eq!(status.connections, Some(0));

        let dir = tempfile::tempdir().expect("tempdir");
        let dump = dir.path().join("db.dump");
        let written = fx.provisioner.backup(&addon, &dump).await.expect("backup");
        let meta = std::fs::metadata(&dump).expect("dump written");
        assert_eq!(meta.len(), written);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let head = std::fs::read(&dump).expect("read dump");
        assert!(head.starts_with(b"PGDMP"), "custom format");

        let out = fx
            .client(
                &addon.network,
                r#"psql "$URL" -X -q -c 'drop table notes'"#,
                &[("URL", &addon.url())],
            )
            .await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        fx.provisioner
            .restore(&addon, &dump)
            .await
            .expect("restore");
        assert_eq!(notes(&fx, &addon).await, ["kept"]);

        fx.engine
            .stop(&addon.container_name, Duration::from_secs(30))
            .await
            .expect("stop");
        let stopped = fx.provisioner.status(&addon).await.expect("status");
        assert!(!stopped.running);
        assert_eq!(stopped.version, None);
        fx.provisioner
            .ensure_running(&addon)
            .await
            .expect("restart a stopped add-on");
        assert_eq!(notes(&fx, &addon).await, ["kept"]);

        fx.engine
            .remove_container(&addon.container_name)
            .await
            .expect("remove the container");
        fx.provisioner
            .ensure_running(&addon)
            .await
            .expect("recreate a removed add-on");
        assert_eq!(notes(&fx, &addon).await, ["kept"], "same volume, same data");

        fx.provisioner.destroy(&addon).await.expect("destroy");
        assert!(matches!(
            fx.engine.inspect(&addon.container_name).await,
            Err(EngineError::NotFound { .. })
        ));
        assert!(!volume_exists(&addon.volume).await);
    })
    .await;
}

#[tokio::test]
async fn a_failed_restore_leaves_the_database_as_it_was() {
    Fixture::run(|fx| async move {
        let app = fx.app("pgbad");
        let addon = fx.addon(AddonKind::Postgres, &app, "db");
        fx.provisioner.provision(&addon).await.expect("provision");
        let out = fx
            .client(
                &addon.network,
                r#"psql "$URL" -X -q -c 'create table notes (body text)' \
                    -c "insert into notes values ('before')""#,
                &[("URL", &addon.url())],
            )
            .await;
        assert_eq!(out.code, 0, "{}", out.stderr);

        let dir = tempfile::tempdir().expect("tempdir");
        let garbage = dir.path().join("garbage.dump");
        std::fs::write(&garbage, b"this is not a dump").expect("write");
        let error = fx
            .provisioner
            .restore(&addon, &garbage)
            .await
            .expect_err("not a dump");
        let message = error.to_string();
        assert!(message.starts_with("restore of add-on `"), "{message}");
        assert!(!message.contains(&addon.password), "{message}");
        assert_eq!(notes(&fx, &addon).await, ["before"]);
    })
    .await;
}
