#![doc = include_str!("../README.md")]

mod addons;
mod alerts;
mod apps;
mod audit;
mod buildpacks;
mod builds;
mod canary;
mod codec;
mod config;
mod copy;
mod domains;
mod drains;
mod error;
mod formation;
mod lease;
mod metrics;
mod pipelines;
mod releases;
pub mod seal;
mod ssh_keys;
mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Any, AnyPool, Executor, Transaction};

pub use addons::{Addon, Backup, BackupOutcome, NewAddon};
pub use alerts::{MAX_WEBHOOKS_PER_APP, Webhook};
pub use apps::App;
pub use audit::{AuditEvent, AuditFilter, NewAuditEvent};
pub use builds::Build;
pub use canary::RunningCanary;
pub use copy::TABLES;
pub use domains::{CertFacts, CertPair, Certificate, Domain, IssuedCert};
pub use drains::{Drain, MAX_DRAINS_PER_APP, drain_token, parse_drain_token};
pub use error::{Result, StoreError};
pub use formation::FormationEntry;
pub use lease::{Fence, Lease};
pub use pipelines::{Pipeline, PipelineMember};
pub use releases::{NewRelease, Release};
pub use ssh_keys::{NewSshKey, SshKey};
pub use users::{Role, TokenRecord, TokenScope, User};

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// WAL lets readers run beside the single writer; a few connections are plenty for that.
const MAX_CONNECTIONS: u32 = 8;

/// Each server keeps its own pool against a shared PostgreSQL: a few servers times this stays
/// well under PostgreSQL's default limit of 100 connections.
const POSTGRES_MAX_CONNECTIONS: u32 = 16;

/// How long a query waits for a free connection, or for PostgreSQL to answer a connect.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which database holds the store. The SQL is shared (`$N` placeholders, portable types);
/// only the migrations and how a write transaction starts differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One file, one server process.
    Sqlite,
    /// A shared database that several servers can use at once, one of them leading.
    Postgres,
}

/// The control-plane store: a cheap handle to a connection pool, shared by the API handlers,
/// the deployer and the background workers.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Checked before the writes only a leader may make; `None` for a store no lease guards.
    fence: Option<std::sync::Arc<lease::Fence>>,
    /// Seals config vars and release config snapshots; `None` writes them as they are.
    sealer: Option<std::sync::Arc<seal::Sealer>>,
}

impl Store {
    /// Opens the store at a `sqlite://PATH` URL (`sqlite:///abs/slipway.db` or
    /// `sqlite://relative.db`), creating the file when missing with mode 0600 (it holds
    /// config vars), in WAL mode with foreign keys on, and brings the schema up to date.
    /// Refuses with [`StoreError::NewerSchema`] a database migrated by a newer slipway.
    /// `sqlite::memory:` (or `mode=memory`) gives [`Store::open_in_memory`].
    ///
    /// A `postgres://USER:PASSWORD@HOST/DATABASE` URL opens a PostgreSQL store instead, with
    /// its own migrations and the same behaviour: the database must exist and the user must
    /// be allowed to create tables in it.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Self::open_postgres(url).await;
        }
        if !url.starts_with("sqlite:") {
            // Only the scheme is shown: other URLs may carry a password.
            let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
            return Err(config_error(format!(
                "database url scheme `{scheme}` is not supported: use `sqlite://PATH` or \
                 `postgres://USER:PASSWORD@HOST/DATABASE`"
            )));
        }
        if is_in_memory(url) {
            return Self::open_in_memory().await;
        }
        let path = sqlite_path(url)?;
        create_private(&path).await?;
        let pool = AnyPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(SQLITE_PRAGMAS).await?;
                    Ok(())
                })
            })
            .connect_with(AnyConnectOptions::from_str(&file_url(&path)?)?)
            .await?;
        Self::migrated(pool, Backend::Sqlite, &path.display().to_string()).await
    }

    async fn open_postgres(url: &str) -> Result<Store> {
        let options = AnyConnectOptions::from_str(url)?;
        let location = redacted(url);
        let pool = AnyPoolOptions::new()
            .max_connections(POSTGRES_MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|err| {
                config_error(format!(
                    "cannot connect to the store at `{location}`: {err}"
                ))
            })?;
        Self::migrated(pool, Backend::Postgres, &location).await
    }

    /// A fresh, migrated store that lives as long as the returned handle and its clones. It
    /// has a single connection that never expires: an in-memory SQLite database disappears
    /// with the last connection to it.
    pub async fn open_in_memory() -> Result<Store> {
        sqlx::any::install_default_drivers();
        let options = AnyConnectOptions::from_str("sqlite::memory:")?;
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::migrated(pool, Backend::Sqlite, "memory").await
    }

    /// Waits for queries in flight, then closes every connection, so the WAL is checkpointed
    /// into the database file before the process exits.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrated(pool: AnyPool, backend: Backend, location: &str) -> Result<Store> {
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        if let Err(err) = migrator.run(&pool).await {
            pool.close().await;
            return Err(migrate_error(err, location));
        }
        Ok(Store {
            pool,
            backend,
            sealer: None,
            fence: None,
        })
    }

    /// Which database this store is in.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A transaction for a read-then-write that must not interleave with another writer's.
    /// SQLite takes its write lock up front (`BEGIN IMMEDIATE`), so two such transactions
    /// queue instead of one failing with "database is locked" when it upgrades. PostgreSQL
    /// locks rows as they are written, and the unique constraints catch what a race would
    /// duplicate.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Any>> {
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        Ok(self.pool.begin_with(begin).await?)
    }

    /// From now on config vars and the config snapshots of releases are written sealed with
    /// `sealer` (AES-256-GCM, each value bound to its app and key or release). Values written
    /// unsealed before still read.
    pub fn sealing_with(mut self, sealer: seal::Sealer) -> Store {
        self.sealer = Some(std::sync::Arc::new(sealer));
        self
    }

    /// From now on making a release current (`promote_release`) also checks `fence`: the
    /// write fails with a Conflict when its holder no longer holds the lease.
    pub fn fenced_by(mut self, fence: std::sync::Arc<lease::Fence>) -> Store {
        self.fence = Some(fence);
        self
    }

    pub(crate) fn fence(&self) -> Option<&lease::Fence> {
        self.fence.as_deref()
    }

    pub(crate) fn sealer(&self) -> Option<&seal::Sealer> {
        self.sealer.as_deref()
    }
}

fn is_in_memory(url: &str) -> bool {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|param| param == "mode=memory")
}

/// Set on every SQLite connection: readers beside the single writer (WAL), durable at
/// checkpoints, foreign keys enforced, and a writer waits up to 5 s for another one to finish
/// (control-plane transactions are short) before failing.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";

fn sqlite_path(url: &str) -> Result<std::path::PathBuf> {
    let options = SqliteConnectOptions::from_str(url)?;
    if options.get_filename().as_os_str().is_empty() {
        return Err(config_error(format!("database url `{url}` names no file")));
    }
    Ok(options.get_filename().to_owned())
}

/// A `sqlite:///abs/path` URL the generic driver parses back to `path`: a relative path is
/// resolved from the working directory (a URL would read its first part as a host name), and
/// the characters a URL gives a meaning are escaped.
fn file_url(path: &Path) -> Result<String> {
    let absolute = std::path::absolute(path).map_err(|err| {
        config_error(format!(
            "cannot resolve the store path `{}`: {err}",
            path.display()
        ))
    })?;
    let mut url = String::from("sqlite://");
    for c in absolute.display().to_string().chars() {
        match c {
            '%' => url.push_str("%25"),
            '?' => url.push_str("%3F"),
            '#' => url.push_str("%23"),
            ' ' => url.push_str("%20"),
            c => url.push(c),
        }
    }
    Ok(url)
}

/// The URL without its password, to name the database in errors and logs.
pub fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((credentials, host)) => {
                let user = credentials
                    .split_once(':')
                    .map_or(credentials, |(user, _)| user);
                format!("{scheme}://{user}@{host}")
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Creates the database file readable by its owner only, before SQLite would create it with
/// the umask's permissions. SQLite gives its WAL and shared-memory files the same mode.
async fn create_private(path: &Path) -> Result<()> {
    let created = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(config_error(format!(
            "cannot create the store at `{}`: {err}",
            path.display()
        ))),
    }
}

fn config_error(message: String) -> StoreError {
    StoreError::Database(sqlx::Error::Configuration(message.into()))
}

fn migrate_error(err: MigrateError, location: &str) -> StoreError {
    match err {
        MigrateError::VersionMissing(version) => StoreError::NewerSchema(format!(
            "the store at `{location}` was written by a newer slipway (it has migration \
             {version}, unknown to this one): run that slipway or a later one"
        )),
        MigrateError::Execute(err) | MigrateError::ExecuteMigration(err, _) => {
            StoreError::Database(err)
        }
        other => StoreError::Corrupt(format!(
            "the store at `{location}` cannot be migrated: {other}"
        )),
    }
}
