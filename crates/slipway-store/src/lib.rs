#![doc = include_str!("../README.md")]

mod addons;
mod apps;
mod audit;
mod buildpacks;
mod builds;
mod codec;
mod config;
mod domains;
mod error;
mod formation;
mod releases;
pub mod seal;
mod ssh_keys;
mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use addons::{Addon, Backup, BackupOutcome, NewAddon};
pub use apps::App;
pub use audit::{AuditEvent, AuditFilter, NewAuditEvent};
pub use builds::Build;
pub use domains::{CertFacts, CertPair, Certificate, Domain, IssuedCert};
pub use error::{Result, StoreError};
pub use formation::FormationEntry;
pub use releases::{NewRelease, Release};
pub use ssh_keys::{NewSshKey, SshKey};
pub use users::{Role, TokenRecord, TokenScope, User};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// How long a writer waits for another connection's write to finish before failing: SQLite
/// has one writer at a time, and control-plane transactions are short.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// WAL lets readers run beside the single writer; a few connections are plenty for that.
const MAX_CONNECTIONS: u32 = 8;

/// The control-plane store: a cheap handle to a connection pool, shared by the API handlers,
/// the deployer and the background workers.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// Seals config vars and release config snapshots; `None` writes them as they are.
    sealer: Option<std::sync::Arc<seal::Sealer>>,
}

impl Store {
    /// Opens the store at a `sqlite://PATH` URL (`sqlite:///abs/slipway.db` or
    /// `sqlite://relative.db`), creating the file when missing with mode 0600 (it holds
    /// config vars), in WAL mode with foreign keys on, and brings the schema up to date.
    /// Refuses with [`StoreError::NewerSchema`] a database migrated by a newer slipway.
    /// `sqlite::memory:` (or `mode=memory`) gives [`Store::open_in_memory`].
    pub async fn open(url: &str) -> Result<Store> {
        if !url.starts_with("sqlite:") {
            // Only the scheme is shown: other URLs may carry a password.
            let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
            return Err(config_error(format!(
                "database url scheme `{scheme}` is not supported: use `sqlite://PATH`"
            )));
        }
        if is_in_memory(url) {
            return Self::open_in_memory().await;
        }
        let options = file_options(url)?;
        let path = options.get_filename().to_owned();
        create_private(&path).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await?;
        Self::migrated(pool, &path.display().to_string()).await
    }

    /// A fresh, migrated store that lives as long as the returned handle and its clones. It
    /// has a single connection that never expires: an in-memory SQLite database disappears
    /// with the last connection to it.
    pub async fn open_in_memory() -> Result<Store> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::migrated(pool, "memory").await
    }

    /// Waits for queries in flight, then closes every connection, so the WAL is checkpointed
    /// into the database file before the process exits.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrated(pool: SqlitePool, location: &str) -> Result<Store> {
        if let Err(err) = MIGRATOR.run(&pool).await {
            pool.close().await;
            return Err(migrate_error(err, location));
        }
        Ok(Store { pool, sealer: None })
    }

    /// From now on config vars and the config snapshots of releases are written sealed with
    /// `sealer` (AES-256-GCM, each value bound to its app and key or release). Values written
    /// unsealed before still read.
    pub fn sealing_with(mut self, sealer: seal::Sealer) -> Store {
        self.sealer = Some(std::sync::Arc::new(sealer));
        self
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

fn file_options(url: &str) -> Result<SqliteConnectOptions> {
    let options = SqliteConnectOptions::from_str(url)?;
    if options.get_filename().as_os_str().is_empty() {
        return Err(config_error(format!("database url `{url}` names no file")));
    }
    Ok(options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT))
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
