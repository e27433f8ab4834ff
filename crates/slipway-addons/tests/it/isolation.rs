//! One app's containers cannot reach another app's add-ons.

use slipway_addons::AddonKind;

use crate::{Fixture, network};

/// Tries a TCP connection for at most 3 seconds; prints `connected` when it opens.
const CONNECT: &str = r#"timeout 3 bash -c 'exec 3<>"/dev/tcp/$HOST/$PORT"' && echo connected"#;

#[tokio::test]
async fn another_apps_containers_cannot_reach_an_addon() {
    Fixture::run(|fx| async move {
        let owner = fx.app("owner");
        let stranger = fx.app("stranger");
        let cache = fx.addon(AddonKind::Redis, &owner, "cache");
        let db = fx.addon(AddonKind::Postgres, &owner, "db");
        let (provisioned_cache, provisioned_db) = tokio::join!(
            fx.provisioner.provision(&cache),
            fx.provisioner.provision(&db)
        );
        provisioned_cache.expect("provision redis");
        provisioned_db.expect("provision postgres");

        for (addon, port) in [(&cache, "6379"), (&db, "5432")] {
            let ip = fx.address(addon).await.to_string();
            let env = [("HOST", ip.as_str()), ("PORT", port)];

            let own = fx.client(&network(&owner), CONNECT, &env).await;
            assert_eq!(
                own.code, 0,
                "the owner's containers connect: {}",
                own.stderr
            );
            assert_eq!(own.stdout.trim(), "connected");

            let other = fx.client(&network(&stranger), CONNECT, &env).await;
            assert_ne!(
                other.code, 0,
                "{} is reachable from another app",
                addon.name
            );
            assert!(!other.stdout.contains("connected"));

            let by_name = fx
                .client(
                    &network(&stranger),
                    r#"getent hosts "$NAME""#,
                    &[("NAME", &addon.container_name)],
                )
                .await;
            assert_ne!(
                by_name.code, 0,
                "{} resolves: {}",
                addon.name, by_name.stdout
            );
        }

        let out = fx
            .client(
                &network(&stranger),
                r#"psql "$URL" -X -q -c 'select 1'"#,
                &[("URL", &db.url())],
            )
            .await;
        assert_ne!(out.code, 0, "psql from another app fails");
    })
    .await;
}
