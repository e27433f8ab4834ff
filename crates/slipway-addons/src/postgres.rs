//! Postgres add-ons. The container gets the official image's environment
//! (`POSTGRES_USER`, `POSTGRES_PASSWORD`, `POSTGRES_DB`, `PGDATA`) and TLS through `-c`
//! arguments naming a certificate, key and `pg_hba.conf` uploaded before the first start, so
//! Slipway's image and the official one behave the same.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use slipway_engine::{ContainerEngine, EngineError};
use slipway_types::{ContainerSpec, Mount, MountSource};
use tokio::io::AsyncWrite;

use crate::job::{self, Job};
use crate::{AddonError, AddonInstance, AddonStatus};

/// Where the official image and ours keep the cluster; the add-on's volume is mounted here.
const DATA_DIR: &str = "/var/lib/postgresql/data";

/// The server user's home in both images; the TLS material goes beside the data directory,
/// outside the volume, and is made anew whenever the container is.
const HOME: &str = "/var/lib/postgresql";
const TLS_DIR: &str = "slipway-tls";

/// Clients must use TLS over the network; the socket inside the container is for the
/// image's own initialisation.
const PG_HBA: &str = "local all all trust\nhostssl all all all scram-sha-256\n";

/// Used when the image's /etc/passwd has no `postgres` user: the official Debian-based image
/// and ours both use 999.
const DEFAULT_UID: u64 = 999;

/// Bounds one libpq connection attempt of a job.
const CONNECT_TIMEOUT_SECONDS: &str = "5";

pub(crate) fn server_spec(addon: &AddonInstance, image: &str) -> ContainerSpec {
    let tls = format!("{HOME}/{TLS_DIR}");
    let cmd = [
        "postgres".to_owned(),
        "-c".to_owned(),
        "ssl=on".to_owned(),
        "-c".to_owned(),
        format!("ssl_cert_file={tls}/server.crt"),
        "-c".to_owned(),
        format!("ssl_key_file={tls}/server.key"),
        "-c".to_owned(),
        format!("hba_file={tls}/pg_hba.conf"),
    ];
    ContainerSpec {
        name: addon.container_name.clone(),
        image: image.to_owned(),
        cmd: cmd.to_vec(),
        env: BTreeMap::from([
            ("POSTGRES_USER".to_owned(), addon.user.clone()),
            ("POSTGRES_PASSWORD".to_owned(), addon.password.clone()),
            ("POSTGRES_DB".to_owned(), addon.database.clone()),
            ("PGDATA".to_owned(), DATA_DIR.to_owned()),
        ]),
        labels: addon.server_labels(),
        network: Some(addon.network.clone()),
        mounts: vec![Mount {
            source: MountSource::Volume(addon.volume.clone()),
            target: DATA_DIR.to_owned(),
            read_only: false,
        }],
        ..ContainerSpec::default()
    }
}

/// Puts a fresh self-signed certificate, its key (owned by the image's postgres user, mode
/// 0600 as PostgreSQL demands) and `pg_hba.conf` into the created container.
pub(crate) async fn prepare(
    engine: &dyn ContainerEngine,
    addon: &AddonInstance,
    id: &str,
) -> Result<(), AddonError> {
    let passwd = match engine.download(id, "/etc/passwd").await {
        Ok(passwd) => passwd,
        Err(EngineError::NotFound { kind: "path", .. }) => Bytes::new(),
        Err(source) => {
            return Err(AddonError::Engine {
                addon: addon.display_name(),
                source,
            });
        }
    };
    let (uid, gid) = postgres_ids(&passwd).unwrap_or((DEFAULT_UID, DEFAULT_UID));
    let (cert, key) = certificate(addon)?;
    let tar = tls_archive(uid, gid, &cert, &key).map_err(|source| AddonError::Io {
        context: format!("packing the TLS files of add-on `{}`", addon.display_name()),
        source,
    })?;
    engine
        .upload(id, HOME, tar)
        .await
        .map_err(|source| AddonError::Engine {
            addon: addon.display_name(),
            source,
        })
}

/// Under Swarm: the TLS volume, mounted where [`server_spec`]'s arguments look for the files.
pub(crate) fn tls_mount(addon: &AddonInstance) -> Mount {
    Mount {
        source: MountSource::Volume(addon.tls_volume()),
        target: format!("{HOME}/{TLS_DIR}"),
        read_only: false,
    }
}

/// Under Swarm: writes fresh TLS files into the add-on's TLS volume through a container that
/// mounts it and never starts (an upload reaches its volumes), then removes that container.
pub(crate) async fn write_tls_volume(
    engine: &Arc<dyn ContainerEngine>,
    addon: &AddonInstance,
    image: &str,
) -> Result<(), AddonError> {
    let engine_error = |source| AddonError::Engine {
        addon: addon.display_name(),
        source,
    };
    engine
        .ensure_volume(&addon.tls_volume(), &addon.server_labels())
        .await
        .map_err(engine_error)?;
    let spec = ContainerSpec {
        name: format!("{}-tls-{:08x}", addon.container_name, rand::random::<u32>()),
        image: image.to_owned(),
        labels: addon.job_labels(),
        mounts: vec![tls_mount(addon)],
        ..ContainerSpec::default()
    };
    let id = engine
        .create_container(&spec)
        .await
        .map_err(|error| match error {
            EngineError::NotFound { kind: "image", .. } => AddonError::ImageMissing {
                image: image.to_owned(),
            },
            error => engine_error(error),
        })?;
    let written = prepare(engine.as_ref(), addon, &id).await;
    let removed = engine.remove_container(&id).await.map_err(engine_error);
    written.and(removed)
}

/// A self-signed certificate for the container's name: `sslmode=require` encrypts without
/// verifying, so nothing needs to trust it.
fn certificate(addon: &AddonInstance) -> Result<(String, String), AddonError> {
    let error = |error: rcgen::Error| AddonError::Certificate {
        addon: addon.display_name(),
        message: error.to_string(),
    };
    let mut params =
        rcgen::CertificateParams::new(vec![addon.container_name.clone()]).map_err(error)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, addon.container_name.clone());
    let key = rcgen::KeyPair::generate().map_err(error)?;
    let cert = params.self_signed(&key).map_err(error)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The uid and gid of `postgres` in a tar holding one /etc/passwd.
fn postgres_ids(passwd_tar: &[u8]) -> Option<(u64, u64)> {
    let mut archive = tar::Archive::new(passwd_tar);
    let mut entry = archive.entries().ok()?.next()?.ok()?;
    let mut text = String::new();
    entry.read_to_string(&mut text).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != "postgres" {
            return None;
        }
        let uid = fields.nth(1)?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

fn tls_archive(uid: u64, gid: u64, cert: &str, key: &str) -> std::io::Result<Bytes> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o700);
    dir.set_uid(uid);
    dir.set_gid(gid);
    dir.set_size(0);
    builder.append_data(&mut dir, format!("{TLS_DIR}/"), std::io::empty())?;
    for (name, contents, mode) in [
        ("server.crt", cert, 0o644),
        ("server.key", key, 0o600),
        ("pg_hba.conf", PG_HBA, 0o644),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(mode);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_size(contents.len() as u64);
        builder.append_data(
            &mut header,
            format!("{TLS_DIR}/{name}"),
            contents.as_bytes(),
        )?;
    }
    Ok(Bytes::from(builder.into_inner()?))
}

/// A job container with the add-on's image, connected to it over TLS through libpq's
/// environment (the password stays off the command line).
fn job_spec(
    addon: &AddonInstance,
    image: &str,
    job: &str,
    entrypoint: &[&str],
    args: &[&str],
) -> ContainerSpec {
    ContainerSpec {
        name: format!(
            "{}-{job}-{:08x}",
            addon.container_name,
            rand::random::<u32>()
        ),
        image: image.to_owned(),
        entrypoint: entrypoint.iter().map(|s| (*s).to_owned()).collect(),
        cmd: args.iter().map(|s| (*s).to_owned()).collect(),
        env: BTreeMap::from([
            ("PGHOST".to_owned(), addon.container_name.clone()),
            ("PGPORT".to_owned(), addon.kind.port().to_string()),
            ("PGUSER".to_owned(), addon.user.clone()),
            ("PGPASSWORD".to_owned(), addon.password.clone()),
            ("PGDATABASE".to_owned(), addon.database.clone()),
            ("PGSSLMODE".to_owned(), "require".to_owned()),
            (
                "PGCONNECT_TIMEOUT".to_owned(),
                CONNECT_TIMEOUT_SECONDS.to_owned(),
            ),
        ]),
        labels: addon.job_labels(),
        network: Some(addon.network.clone()),
        ..ContainerSpec::default()
    }
}

/// Waits, inside the job, until an authenticated TLS query succeeds: the server may still be
/// replaying WAL or finishing its first start when its port opens.
pub(crate) async fn check_ready(
    engine: &Arc<dyn ContainerEngine>,
    addon: &AddonInstance,
    image: &str,
    timeout: Duration,
) -> Result<(), AddonError> {
    let attempts = job::readiness_attempts(timeout);
    let script = "i=0; until psql -X -q -A -t -c 'select 1' >/dev/null; do \
        i=$((i + 1)); [ \"$i\" -lt \"$1\" ] || exit 1; sleep 0.25; done";
    let spec = job_spec(
        addon,
        image,
        "check",
        &["/bin/sh", "-c", script, "check"],
        &[&attempts],
    );
    Job::readiness_check(engine, addon, spec, timeout)
        .run_ok(None, None)
        .await
        .map(drop)
}

/// Streams `pg_dump -Fc` into `sink`; returns the bytes written.
pub(crate) async fn backup(
    engine: &Arc<dyn ContainerEngine>,
    addon: &AddonInstance,
    image: &str,
    sink: &mut (dyn AsyncWrite + Unpin + Send),
    timeout: Duration,
) -> Result<u64, AddonError> {
    let outcome = Job {
        engine,
        addon,
        name: "backup",
        spec: job_spec(
            addon,
            image,
            "backup",
            &["pg_dump"],
            &["--format=custom", "--no-password"],
        ),
        timeout,
    }
    .run_ok(None, Some(sink))
    .await?;
    Ok(outcome.streamed)
}

/// Feeds a custom-format dump to `pg_restore` in one transaction, so a failed restore leaves
/// the database as it was.
pub(crate) async fn restore(
    engine: &Arc<dyn ContainerEngine>,
    addon: &AddonInstance,
    image: &str,
    dump: &Path,
    timeout: Duration,
) -> Result<(), AddonError> {
    let mut file = tokio::fs::File::open(dump)
        .await
        .map_err(|source| AddonError::Io {
            context: format!("opening backup `{}`", dump.display()),
            source,
        })?;
    let dbname = format!("--dbname={}", addon.database);
    let mut spec = job_spec(
        addon,
        image,
        "restore",
        &["pg_restore"],
        &[
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--no-password",
            &dbname,
        ],
    );
    spec.stdin_open = true;
    Job {
        engine,
        addon,
        name: "restore",
        spec,
        timeout,
    }
    .run_ok(Some(&mut file), None)
    .await
    .map(drop)
}

pub(crate) async fn status(
    engine: &Arc<dyn ContainerEngine>,
    addon: &AddonInstance,
    image: &str,
    timeout: Duration,
) -> Result<AddonStatus, AddonError> {
    let query = "select current_setting('server_version'), \
        (select sum(pg_database_size(oid)) from pg_database), \
        (select count(*) from pg_stat_activity \
         where backend_type = 'client backend' and pid <> pg_backend_pid())";
    let outcome = Job {
        engine,
        addon,
        name: "status query",
        spec: job_spec(
            addon,
            image,
            "status",
            &["psql"],
            &["-X", "-q", "-A", "-t", "-F", "|", "-c", query],
        ),
        timeout,
    }
    .run_ok(None, None)
    .await?;
    let text = String::from_utf8_lossy(&outcome.stdout);
    parse_status(text.trim()).ok_or_else(|| AddonError::Protocol {
        addon: addon.display_name(),
        message: format!("status query printed `{}`", text.trim()),
    })
}

/// Parses `17.5 (Debian 17.5-1)|7671299|2`.
fn parse_status(line: &str) -> Option<AddonStatus> {
    let mut fields = line.split('|');
    let version = fields.next()?.split_whitespace().next()?.to_owned();
    let size_bytes = fields.next()?.parse().ok()?;
    let connections = fields.next()?.parse().ok()?;
    Some(AddonStatus {
        running: true,
        version: Some(version),
        size_bytes: Some(size_bytes),
        connections: Some(connections),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AddonKind;

    fn addon() -> AddonInstance {
        AddonInstance::new(
            AddonKind::Postgres,
            "blog".parse().expect("valid app"),
            "db",
            "slipway-blog",
            BTreeMap::from([("slipway.instance".to_owned(), "t".to_owned())]),
        )
    }

    #[test]
    fn server_uses_the_official_environment_and_tls_arguments() {
        let addon = addon();
        let spec = server_spec(&addon, "postgres:17");
        assert_eq!(spec.name, "slipway-blog-addon-db");
        assert_eq!(spec.network.as_deref(), Some("slipway-blog"));
        assert_eq!(spec.env["POSTGRES_USER"], "app_blog");
        assert_eq!(spec.env["POSTGRES_PASSWORD"], addon.password);
        assert_eq!(spec.env["POSTGRES_DB"], "app_blog");
        assert_eq!(spec.env["PGDATA"], DATA_DIR);
        assert_eq!(
            spec.cmd,
            [
                "postgres",
                "-c",
                "ssl=on",
                "-c",
                "ssl_cert_file=/var/lib/postgresql/slipway-tls/server.crt",
                "-c",
                "ssl_key_file=/var/lib/postgresql/slipway-tls/server.key",
                "-c",
                "hba_file=/var/lib/postgresql/slipway-tls/pg_hba.conf",
            ]
        );
        assert!(
            !spec.cmd.iter().any(|arg| arg.contains(&addon.password)),
            "the password stays off the command line"
        );
        assert_eq!(
            spec.mounts,
            [Mount {
                source: MountSource::Volume("slipway-blog-addon-db-data".to_owned()),
                target: DATA_DIR.to_owned(),
                read_only: false,
            }]
        );
        assert_eq!(spec.labels["slipway.role"], "addon");
    }

    #[test]
    fn tls_files_belong_to_the_postgres_user_with_a_private_key() {
        let (cert, key) = certificate(&addon()).expect("certificate");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
        let tar = tls_archive(101, 102, &cert, &key).expect("archive");
        let mut archive = tar::Archive::new(&tar[..]);
        let mut seen = BTreeMap::new();
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            let header = entry.header();
            seen.insert(
                entry.path().expect("path").display().to_string(),
                (
                    header.mode().expect("mode"),
                    header.uid().expect("uid"),
                    header.gid().expect("gid"),
                ),
            );
        }
        assert_eq!(seen["slipway-tls/"], (0o700, 101, 102));
        assert_eq!(seen["slipway-tls/server.key"], (0o600, 101, 102));
        assert_eq!(seen["slipway-tls/server.crt"], (0o644, 101, 102));
        assert_eq!(seen["slipway-tls/pg_hba.conf"], (0o644, 101, 102));
    }

    #[test]
    fn postgres_ids_come_from_the_images_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
            postgres:x:70:71:PostgreSQL:/var/lib/postgresql:/bin/sh\n";
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(passwd.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "passwd", passwd.as_bytes())
            .expect("append");
        let tar = builder.into_inner().expect("tar");
        assert_eq!(postgres_ids(&tar), Some((70, 71)));
        assert_eq!(postgres_ids(b"not a tar"), None);
    }

    #[test]
    fn jobs_connect_over_tls_with_the_password_in_the_environment() {
        let addon = addon();
        let spec = job_spec(&addon, "postgres:17", "backup", &["pg_dump"], &["-Fc"]);
        assert!(spec.name.starts_with("slipway-blog-addon-db-backup-"));
        assert_eq!(spec.env["PGSSLMODE"], "require");
        assert_eq!(spec.env["PGHOST"], addon.container_name);
        assert_eq!(spec.env["PGPASSWORD"], addon.password);
        assert_eq!(spec.labels["slipway.role"], "addon-job");
        assert_eq!(spec.labels["slipway.addon"], "db");
        assert_eq!(spec.network.as_deref(), Some("slipway-blog"));
    }

    #[test]
    fn status_line_is_parsed() {
        assert_eq!(
            parse_status("17.5 (Debian 17.5-1)|7671299|2"),
            Some(AddonStatus {
                running: true,
                version: Some("17.5".to_owned()),
                size_bytes: Some(7_671_299),
                connections: Some(2),
            })
        );
        assert_eq!(parse_status("17.5|x|2"), None);
        assert_eq!(parse_status(""), None);
    }
}
