//! Add-ons as Swarm services on the engine's own single-node swarm: pinned to this node, on
//! the app's attachable overlay, reached by the URL's host, probed, dumped and restored from
//! containers on that overlay, recreated on their volume, and destroyed without a trace.

use std::time::Instant;

use slipway_addons::{AddonInstance, AddonKind};
use slipway_engine::{ContainerEngine, EngineError, Swarm, TaskState};
use slipway_types::labels;

use crate::{Fixture, volume_exists};

/// What `docker <args>` prints, trimmed; the engine trait cannot show a service's placement
/// or a network's driver.
async fn docker(args: &[&str]) -> String {
    let output = tokio::process::Command::new("docker")
        .args(args)
        .output()
        .await
        .expect("the docker CLI");
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Checks the add-on is a one-replica service whose task runs on this node, with nothing
/// published on the host, and that no plain container has its name.
async fn assert_pinned_service(fx: &Fixture, addon: &AddonInstance) {
    let node = fx
        .engine
        .swarm_status()
        .await
        .expect("swarm status")
        .expect("a swarm");
    let service = fx
        .engine
        .service(&addon.container_name)
        .await
        .expect("service")
        .expect("the add-on is a service");
    assert_eq!(service.replicas, Some(1));
    assert_eq!(service.labels["slipway.role"], "addon");
    assert_eq!(service.labels["slipway.addon"], addon.name);
    let constraints = docker(&[
        "service",
        "inspect",
        "--format",
        "{{json .Spec.TaskTemplate.Placement.Constraints}}",
        &addon.container_name,
    ])
    .await;
    assert_eq!(constraints, format!(r#"["node.id=={}"]"#, node.node_id));
    let tasks = fx.engine.tasks(&addon.container_name).await.expect("tasks");
    let serving: Vec<&TaskState> = tasks.iter().filter(|task| task.serving()).collect();
    assert_eq!(serving.len(), 1, "{tasks:?}");
    assert_eq!(serving[0].node_id, node.node_id);
    assert_eq!(
        serving[0].published_port, None,
        "not reachable from outside"
    );
    assert!(matches!(
        fx.engine.inspect(&addon.container_name).await,
        Err(EngineError::NotFound { .. })
    ));
    let network = docker(&[
        "network",
        "inspect",
        "--format",
        "{{.Driver}} {{.Attachable}}",
        &addon.network,
    ])
    .await;
    assert_eq!(network, "overlay true");
}

/// Checks the service, its containers and both volumes are gone.
async fn assert_destroyed(fx: &Fixture, addon: &AddonInstance) {
    assert_eq!(
        fx.engine
            .service(&addon.container_name)
            .await
            .expect("service"),
        None
    );
    let left = fx
        .engine
        .list_containers(&[
            (labels::APP, addon.app.as_str()),
            ("slipway.addon", &addon.name),
        ])
        .await
        .expect("list containers");
    assert!(left.is_empty(), "{left:?}");
    assert!(!volume_exists(&addon.volume).await);
    assert!(!volume_exists(&addon.tls_volume()).await);
}

/// Reads the test table over TLS with the app's URL, from a container on the overlay.
async fn notes(fx: &Fixture, addon: &AddonInstance) -> Vec<String> {
    let out = fx
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
async fn postgres_runs_as_a_pinned_service_and_backs_up_restores_and_is_recreated() {
    Fixture::run_on_swarm(|fx| async move {
        let app = fx.app("swpg");
        let addon = fx.addon(AddonKind::Postgres, &app, "db");
        let started = Instant::now();
        fx.provisioner.provision(&addon).await.expect("provision");
        eprintln!(
            "provisioned postgres as a service in {:?}",
            started.elapsed()
        );
        assert_pinned_service(&fx, &addon).await;

        let out = fx
            .client(
                &addon.network,
                r#"psql "$URL" -X -q -A -t -v ON_ERROR_STOP=1 \
                    -c 'create table notes (body text)' \
                    -c "insert into notes values ('kept')" \
                    -c 'select ssl from pg_stat_ssl where pid = pg_backend_pid()'"#,
                &[("URL", &addon.url())],
            )
            .await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.stdout.trim(), "t", "TLS from the volume's certificate");

        let status = fx.provisioner.status(&addon).await.expect("status");
        assert!(status.running);
        assert!(status.version.expect("a version").starts_with("17."));
        assert!(status.size_bytes.expect("a size") > 1_000_000);
        assert_eq!(status.connections, Some(0));

        let dir = tempfile::tempdir().expect("tempdir");
        let dump = dir.path().join("db.dump");
        let written = fx.provisioner.backup(&addon, &dump).await.expect("backup");
        assert!(written > 0);
        assert!(std::fs::read(&dump).expect("dump").starts_with(b"PGDMP"));
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

        fx.provisioner
            .ensure_running(&addon)
            .await
            .expect("a running service is left as it is");
        fx.engine
            .remove_service(&addon.container_name)
            .await
            .expect("remove the service");
        fx.provisioner
            .ensure_running(&addon)
            .await
            .expect("recreate the removed service");
        assert_pinned_service(&fx, &addon).await;
        assert_eq!(notes(&fx, &addon).await, ["kept"], "same volume, same data");

        fx.provisioner.destroy(&addon).await.expect("destroy");
        assert_destroyed(&fx, &addon).await;
        let stopped = fx.provisioner.status(&addon).await.expect("status");
        assert!(!stopped.running);
    })
    .await;
}

/// Runs RESP `commands` after `AUTH` against the add-on's URL host from a container on the
/// overlay (bash's /dev/tcp; the Postgres image has no redis-cli) and returns the replies'
/// lines, `QUIT`'s `+OK` last.
async fn redis(fx: &Fixture, addon: &AddonInstance, commands: &[&[&str]]) -> Vec<String> {
    let mut request = String::new();
    let auth: &[&str] = &["AUTH", "default", &addon.password];
    for words in std::iter::once(auth)
        .chain(commands.iter().copied())
        .chain(std::iter::once(&["QUIT"][..]))
    {
        request.push_str(&format!("*{}\r\n", words.len()));
        for word in words {
            request.push_str(&format!("${}\r\n{word}\r\n", word.len()));
        }
    }
    let out = fx
        .client(
            &addon.network,
            r#"exec 3<>"/dev/tcp/$HOST/6379" && printf '%s' "$REQUEST" >&3 && timeout 10 cat <&3"#,
            &[("HOST", &addon.container_name), ("REQUEST", &request)],
        )
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout
        .lines()
        .map(|line| line.trim_end_matches('\r').to_owned())
        .collect()
}

#[tokio::test]
async fn redis_runs_as_a_pinned_service_reached_by_its_name_and_is_destroyed() {
    Fixture::run_on_swarm(|fx| async move {
        let app = fx.app("swredis");
        let addon = fx.addon(AddonKind::Redis, &app, "cache");
        fx.provisioner.provision(&addon).await.expect("provision");
        assert_pinned_service(&fx, &addon).await;
        assert!(!volume_exists(&addon.tls_volume()).await, "postgres only");

        assert_eq!(
            redis(&fx, &addon, &[&["SET", "k", "kept"], &["GET", "k"]]).await,
            ["+OK", "+OK", "$4", "kept", "+OK"]
        );
        let status = fx.provisioner.status(&addon).await.expect("status");
        assert!(status.running);
        assert!(status.version.expect("a version").starts_with("8."));
        assert!(status.size_bytes.expect("an AOF size") > 0);
        assert_eq!(status.connections, Some(0));

        fx.provisioner.destroy(&addon).await.expect("destroy");
        assert_destroyed(&fx, &addon).await;
        fx.provisioner
            .destroy(&addon)
            .await
            .expect("destroying twice is fine");
    })
    .await;
}
