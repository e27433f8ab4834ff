//! Add-ons: a dedicated Postgres or Redis server per add-on on the app's network (a
//! container, or with `--runtime swarm` a single-replica service on the app's overlay
//! network), its credentials sealed in the store, its URL in a config var. `slipway-addons` runs the
//! servers; this module keeps them running (a reconcile pass at start and every few
//! seconds), takes and restores Postgres backups under `<data-dir>/backups/<app>/`, takes
//! the daily ones and expires them after the retention.

mod schedule;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slipway_addons::{AddonError, AddonImages, AddonInstance, AddonKind, AddonStatus, Provisioner};
use slipway_engine::{ContainerEngine, EngineError, Swarm};
use slipway_store::{Addon, App, Backup, BackupOutcome, StoreError};
use slipway_types::AppName;
use slipway_types::api::{AddonDetail, AddonInfo, BackupInfo, BackupTrigger};
use time::OffsetDateTime;
use tokio::sync::OwnedMutexGuard;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::Platform;
use crate::error::ApiError;
use crate::runs::{Launch, RunRequest, Terminal};

pub use slipway_store::seal::{SealError, Sealer};

/// How often every add-on's server is checked and restarted when it stopped.
const RECONCILE_EVERY: Duration = Duration::from_secs(10);
/// How often the backup schedule and the retention are looked at.
const SCHEDULE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum AddonsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The add-on's server could not do what was asked; the message is for the user.
    #[error(transparent)]
    Addon(#[from] AddonError),
    #[error("preparing the network of app `{app}` failed: {source}")]
    Network {
        app: AppName,
        #[source]
        source: EngineError,
    },
    #[error("the stored settings of add-on `{name}` cannot be read: {reason}")]
    Corrupt { name: String, reason: String },
    /// Another request holds the add-on (creating it waits for its server and a release).
    #[error(
        "add-on `{addon}` of app `{app}` is busy (being created, restored or backed up): run apps:destroy again once that is done"
    )]
    Busy { app: AppName, addon: String },
    #[error("backup {label} of add-on `{addon}` failed: {reason}")]
    BackupFailed {
        label: String,
        addon: String,
        reason: String,
    },
    #[error("the file of backup {label} (`{}`) is missing on the server", path.display())]
    MissingFile { label: String, path: PathBuf },
    #[error("{what} `{}` failed: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<AddonsError> for ApiError {
    /// What the add-on's server did is the user's to know; what broke inside slipway is not.
    fn from(error: AddonsError) -> Self {
        match error {
            AddonsError::Store(error) => error.into(),
            AddonsError::Addon(_)
            | AddonsError::Busy { .. }
            | AddonsError::BackupFailed { .. }
            | AddonsError::MissingFile { .. } => ApiError::conflict(error.to_string()),
            AddonsError::Seal(_)
            | AddonsError::Network { .. }
            | AddonsError::Corrupt { .. }
            | AddonsError::Io { .. } => ApiError::internal(error),
        }
    }
}

pub struct AddonsConfig {
    pub images: AddonImages,
    /// `<data-dir>/backups`: one folder per app.
    pub backups_dir: PathBuf,
    /// How long scheduled backups are kept.
    pub retention: Duration,
}

/// Add-on servers, their sealed settings and their backups.
pub struct Addons {
    engine: Arc<dyn ContainerEngine>,
    /// With `--runtime swarm`: add-on servers are its services, app networks its overlays.
    swarm: Option<Arc<dyn Swarm>>,
    provisioner: Provisioner,
    sealer: Sealer,
    postgres_image: String,
    backups_dir: PathBuf,
    retention: Duration,
    /// One per add-on: creating, destroying, backing up, restoring and reconciling it never
    /// overlap.
    locks: Mutex<HashMap<AddonKey, Arc<tokio::sync::Mutex<()>>>>,
    /// The last reconcile failure of each add-on, so a lasting one is logged when it starts
    /// and when it ends rather than every few seconds.
    failing: Mutex<HashMap<AddonKey, String>>,
}

impl Addons {
    pub fn new(
        engine: Arc<dyn ContainerEngine>,
        swarm: Option<Arc<dyn Swarm>>,
        master_key: &[u8],
        config: AddonsConfig,
    ) -> Self {
        let provisioner = Provisioner::new(engine.clone(), config.images.clone());
        Self {
            provisioner: match &swarm {
                Some(swarm) => provisioner.with_swarm(swarm.clone()),
                None => provisioner,
            },
            engine,
            swarm,
            sealer: Sealer::from_master_key(master_key, b"slipway add-on credentials v1"),
            postgres_image: config.images.postgres,
            backups_dir: config.backups_dir,
            retention: config.retention,
            locks: Mutex::default(),
            failing: Mutex::default(),
        }
    }

    fn lock_of(&self, app_id: Uuid, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry((app_id, name.to_owned())).or_default().clone()
    }

    /// Serializes everything that changes one add-on.
    pub async fn lock(&self, app_id: Uuid, name: &str) -> OwnedMutexGuard<()> {
        self.lock_of(app_id, name).lock_owned().await
    }

    /// The add-on's lock if its holder lets go within `wait`.
    pub async fn lock_within(
        &self,
        app_id: Uuid,
        name: &str,
        wait: Duration,
    ) -> Option<OwnedMutexGuard<()>> {
        tokio::time::timeout(wait, self.lock(app_id, name))
            .await
            .ok()
    }

    fn try_lock(&self, app_id: Uuid, name: &str) -> Option<OwnedMutexGuard<()>> {
        self.lock_of(app_id, name).try_lock_owned().ok()
    }

    /// The instance as the store keeps it: JSON sealed to the app and the add-on's name.
    pub fn seal(&self, app_id: Uuid, instance: &AddonInstance) -> Result<Vec<u8>, AddonsError> {
        let json = serde_json::to_vec(instance).map_err(|e| AddonsError::Corrupt {
            name: instance.name.clone(),
            reason: e.to_string(),
        })?;
        Ok(self.sealer.seal(&owner(app_id, &instance.name), &json)?)
    }

    /// Everything needed to run the add-on, credentials included, from its store row.
    pub fn instance(&self, addon: &Addon) -> Result<AddonInstance, AddonsError> {
        let json = self
            .sealer
            .open(&owner(addon.app_id, &addon.name), &addon.sealed)?;
        serde_json::from_slice(&json).map_err(|e| AddonsError::Corrupt {
            name: addon.name.clone(),
            reason: e.to_string(),
        })
    }

    /// The app's network first: an app that never deployed has none yet. Under Swarm it is
    /// the attachable overlay the app's services, add-ons and jobs share.
    async fn network(
        &self,
        instance: &AddonInstance,
        labels: &AppLabels,
    ) -> Result<(), AddonsError> {
        match &self.swarm {
            Some(swarm) => {
                swarm
                    .ensure_overlay_network(&instance.network, labels)
                    .await
            }
            None => self.engine.ensure_network(&instance.network, labels).await,
        }
        .map_err(|source| AddonsError::Network {
            app: instance.app.clone(),
            source,
        })
    }

    /// Starts a new add-on's server and waits until it takes connections.
    pub async fn provision(
        &self,
        instance: &AddonInstance,
        labels: &AppLabels,
    ) -> Result<(), AddonsError> {
        self.network(instance, labels).await?;
        Ok(self.provisioner.provision(instance).await?)
    }

    async fn ensure_running(
        &self,
        instance: &AddonInstance,
        labels: &AppLabels,
    ) -> Result<(), AddonsError> {
        self.network(instance, labels).await?;
        Ok(self.provisioner.ensure_running(instance).await?)
    }

    /// Removes the add-on's container and volume: its data is gone after this.
    pub async fn remove(&self, instance: &AddonInstance) -> Result<(), AddonsError> {
        Ok(self.provisioner.destroy(instance).await?)
    }

    pub async fn status(&self, instance: &AddonInstance) -> Result<AddonStatus, AddonsError> {
        Ok(self.provisioner.status(instance).await?)
    }

    fn app_backups(&self, app: &AppName) -> PathBuf {
        self.backups_dir.join(app.as_str())
    }

    /// Where a backup's dump is on this server.
    pub fn backup_path(&self, app: &AppName, file: &str) -> PathBuf {
        self.app_backups(app).join(file)
    }

    /// Replaces the database's contents with a backup's. The caller holds the add-on's lock
    /// and has checked that the backup succeeded.
    pub async fn restore(
        &self,
        instance: &AddonInstance,
        backup: &Backup,
    ) -> Result<(), AddonsError> {
        let missing = |path: PathBuf| AddonsError::MissingFile {
            label: backup.label(),
            path,
        };
        let Some(file) = &backup.file else {
            return Err(missing(self.app_backups(&instance.app)));
        };
        let path = self.backup_path(&instance.app, file);
        if !path.is_file() {
            return Err(missing(path));
        }
        Ok(self.provisioner.restore(instance, &path).await?)
    }

    /// `psql` (or another client program) in a one-off container from the Postgres image,
    /// on the app's network, connected through libpq's `PG*` variables.
    pub fn psql_run(
        &self,
        instance: &AddonInstance,
        command: Vec<String>,
        tty: Option<Terminal>,
    ) -> RunRequest {
        let config = [
            ("PGHOST", instance.container_name.clone()),
            ("PGPORT", "5432".to_owned()),
            ("PGUSER", instance.user.clone()),
            ("PGPASSWORD", instance.password.clone()),
            ("PGDATABASE", instance.database.clone()),
            ("PGSSLMODE", "require".to_owned()),
            ("PGAPPNAME", "slipway-psql".to_owned()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        RunRequest {
            app: instance.app.clone(),
            release: format!("addon-{}", instance.name),
            image: self.postgres_image.clone(),
            config,
            command,
            tty,
            launch: Launch::Direct,
        }
    }

    /// Logs a reconcile outcome when it differs from the last one of the add-on.
    fn note(&self, app: &AppName, key: AddonKey, outcome: Result<(), AddonsError>) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(()) => {
                if failing.remove(&key).is_some() {
                    tracing::info!(app = %app, addon = %key.1, "add-on is running again");
                }
            }
            Err(error) => {
                let message = error.to_string();
                if failing.get(&key) != Some(&message) {
                    tracing::error!(app = %app, addon = %key.1, %error, "add-on is not running and could not be started");
                    failing.insert(key, message);
                }
            }
        }
    }
}

/// An add-on: its app's id and its name.
type AddonKey = (Uuid, String);

/// The labels of an app's network and containers.
pub type AppLabels = std::collections::BTreeMap<String, String>;

/// What a sealed row is bound to: a row copied to another add-on does not open.
fn owner(app_id: Uuid, name: &str) -> String {
    format!("{app_id}/{name}")
}

/// `<kind>-<n>` with the lowest `n` no add-on of the app has.
pub fn default_name(kind: AddonKind, existing: &[Addon]) -> String {
    (1..)
        .map(|n| format!("{kind}-{n}"))
        .find(|name| existing.iter().all(|addon| &addon.name != name))
        .unwrap_or_else(|| format!("{kind}-1"))
}

/// `<NAME>_URL`: the name upper-cased with dashes as underscores.
pub fn named_var(name: &str) -> String {
    format!("{}_URL", name.to_ascii_uppercase().replace('-', "_"))
}

pub fn addon_info(addon: &Addon) -> AddonInfo {
    AddonInfo {
        name: addon.name.clone(),
        kind: addon.kind.clone(),
        config_var: addon.config_var.clone(),
        created_at: addon.created_at,
    }
}

pub fn addon_detail(addon: &Addon, status: Result<AddonStatus, AddonsError>) -> AddonDetail {
    match status {
        Ok(status) => AddonDetail {
            addon: addon_info(addon),
            running: status.running,
            version: status.version,
            size_bytes: status.size_bytes,
            connections: status.connections,
            error: None,
        },
        Err(error) => AddonDetail {
            addon: addon_info(addon),
            running: false,
            version: None,
            size_bytes: None,
            connections: None,
            error: Some(error.to_string()),
        },
    }
}

pub fn backup_info(backup: &Backup) -> BackupInfo {
    BackupInfo {
        id: backup.label(),
        addon: backup.addon.clone(),
        trigger: backup.trigger,
        status: backup.status,
        file: backup.file.clone(),
        size_bytes: backup.size_bytes,
        started_at: backup.started_at,
        finished_at: backup.finished_at,
        error: backup.error.clone(),
    }
}

/// `b007` → 7, when the letter is one a backup id starts with.
pub fn parse_backup_id(id: &str) -> Option<(char, u32)> {
    let mut chars = id.chars();
    let prefix = chars.next()?;
    if !BackupTrigger::ALL.iter().any(|t| t.prefix() == prefix) {
        return None;
    }
    let digits = chars.as_str();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((prefix, digits.parse().ok()?))
}

/// Dumps a Postgres add-on into `<data-dir>/backups/<app>/`. The attempt is recorded
/// first, so a failure shows in `pg:backups`; it is also logged as an error and written to
/// the app's log. The caller holds the add-on's lock.
pub async fn take_backup(
    platform: &Platform,
    app: &App,
    instance: &AddonInstance,
    trigger: BackupTrigger,
) -> Result<Backup, AddonsError> {
    let addons = &platform.addons;
    let backup = platform
        .store
        .start_backup(app.id, &instance.name, trigger)
        .await?;
    let label = backup.label();
    let file = format!(
        "{}-{label}-{}.dump",
        instance.name,
        file_time(backup.started_at)
    );
    let dir = addons.app_backups(&app.name);
    let dest = dir.join(&file);
    let written = match create_private_dir(&dir) {
        Ok(()) => addons
            .provisioner
            .backup(instance, &dest)
            .await
            .map_err(|e| e.to_string()),
        Err(error) => Err(format!("creating `{}`: {error}", dir.display())),
    };
    match written {
        Ok(size_bytes) => {
            let backup = platform
                .store
                .finish_backup(
                    backup.id,
                    BackupOutcome::Succeeded {
                        file: &file,
                        size_bytes,
                    },
                )
                .await?;
            tracing::info!(app = %app.name, addon = %instance.name, backup = %label, size_bytes, "backup succeeded");
            crate::metrics::backup(&app.name, &instance.name, true);
            platform.logs.platform(
                &app.name,
                "backup",
                format!(
                    "Backup {label} of {} succeeded ({size_bytes} bytes)",
                    instance.name
                ),
            );
            Ok(backup)
        }
        Err(reason) => {
            if dest.exists() {
                std::fs::remove_file(&dest).ok();
            }
            platform
                .store
                .finish_backup(backup.id, BackupOutcome::Failed { error: &reason })
                .await?;
            tracing::error!(app = %app.name, addon = %instance.name, backup = %label, %reason, "backup failed");
            crate::metrics::backup(&app.name, &instance.name, false);
            platform.logs.platform(
                &app.name,
                "backup",
                format!("Backup {label} of {} FAILED: {reason}", instance.name),
            );
            Err(AddonsError::BackupFailed {
                label,
                addon: instance.name.clone(),
                reason,
            })
        }
    }
}

/// Backup folders hold database dumps: only the server's user may read them.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// `20261122T010203Z`: sorts by time and needs no quoting.
fn file_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// How long destroying an app waits for work on one of its add-ons (a reconcile, a backup)
/// before it answers that the add-on is busy.
const BUSY_WAIT: Duration = Duration::from_secs(5);

/// Before an app is destroyed: a final backup of each Postgres add-on, then every add-on's
/// container and volume. A failed final backup stops here with nothing removed.
pub async fn destroy_all(platform: &Platform, app: &App) -> Result<(), AddonsError> {
    for addon in platform.store.addons(app.id).await? {
        // Creating an add-on holds its lock until its server is up and a release rolled every
        // process with its URL, longer than a client waits: say so rather than wait for it.
        let _guard = platform
            .addons
            .lock_within(app.id, &addon.name, BUSY_WAIT)
            .await
            .ok_or_else(|| AddonsError::Busy {
                app: app.name.clone(),
                addon: addon.name.clone(),
            })?;
        let instance = platform.addons.instance(&addon)?;
        if instance.kind == AddonKind::Postgres {
            take_backup(platform, app, &instance, BackupTrigger::Final).await?;
        }
        platform.addons.remove(&instance).await?;
        platform.store.delete_addon(addon.id).await?;
        tracing::info!(app = %app.name, addon = %addon.name, "add-on destroyed with its app");
    }
    Ok(())
}

/// The add-ons' background work until `shutdown`: keeping their servers running (at once,
/// which adopts them after a restart, then every few seconds) and the daily backups.
pub async fn run(platform: Arc<Platform>, shutdown: CancellationToken) {
    let reconcile = async {
        loop {
            reconcile_all(&platform).await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RECONCILE_EVERY) => {}
            }
        }
    };
    let schedule = async {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(SCHEDULE_EVERY) => {}
            }
            scheduled_backups(&platform).await;
        }
    };
    tokio::join!(reconcile, schedule);
}

/// Starts what stopped and recreates what is missing (same volume, same credentials).
/// Add-ons busy with something else are left to it.
async fn reconcile_all(platform: &Platform) {
    let apps = match platform.store.apps().await {
        Ok(apps) => apps,
        Err(error) => {
            tracing::warn!(%error, "listing apps for the add-on reconcile failed");
            return;
        }
    };
    for app in apps {
        let addons = match platform.store.addons(app.id).await {
            Ok(addons) => addons,
            Err(error) => {
                tracing::warn!(app = %app.name, %error, "listing add-ons failed");
                continue;
            }
        };
        let labels = platform.deployer.app_labels(&app.name);
        for addon in addons {
            let Some(_guard) = platform.addons.try_lock(app.id, &addon.name) else {
                continue;
            };
            // Destroyed since the listing: starting it again would bring it back.
            if !still_there(platform, &addon).await {
                continue;
            }
            let outcome = match platform.addons.instance(&addon) {
                Ok(instance) => platform.addons.ensure_running(&instance, &labels).await,
                Err(error) => Err(error),
            };
            platform
                .addons
                .note(&app.name, (app.id, addon.name.clone()), outcome);
        }
    }
}

/// Whether the add-on listed earlier is still in the store, checked under its lock.
async fn still_there(platform: &Platform, addon: &Addon) -> bool {
    matches!(
        platform.store.addon(addon.app_id, &addon.name).await,
        Ok(Some(now)) if now.id == addon.id
    )
}

/// Takes the daily backups that are due and removes scheduled ones past the retention.
async fn scheduled_backups(platform: &Platform) {
    let apps = match platform.store.apps().await {
        Ok(apps) => apps,
        Err(error) => {
            tracing::warn!(%error, "listing apps for scheduled backups failed");
            return;
        }
    };
    for app in apps {
        if let Err(error) = schedule_app(platform, &app).await {
            tracing::error!(app = %app.name, %error, "scheduled backups failed");
        }
    }
}

async fn schedule_app(platform: &Platform, app: &App) -> Result<(), AddonsError> {
    let now = OffsetDateTime::now_utc();
    for addon in platform.store.addons(app.id).await? {
        if addon.kind != AddonKind::Postgres.as_str() {
            continue;
        }
        let backups = platform.store.backups(app.id, Some(&addon.name)).await?;
        if !schedule::due(addon.created_at, &backups, now) {
            continue;
        }
        let _guard = platform.addons.lock(app.id, &addon.name).await;
        if !still_there(platform, &addon).await {
            continue;
        }
        let instance = platform.addons.instance(&addon)?;
        // A failure is recorded, logged and retried later; the other add-ons go on.
        take_backup(platform, app, &instance, BackupTrigger::Scheduled)
            .await
            .ok();
    }
    let backups = platform.store.backups(app.id, None).await?;
    for old in schedule::expired(&backups, platform.addons.retention, now) {
        if let Some(file) = &old.file {
            let path = platform.addons.backup_path(&app.name, file);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(AddonsError::Io {
                        what: "removing expired backup",
                        path,
                        source,
                    });
                }
            }
        }
        platform.store.delete_backup(old.id).await?;
        tracing::info!(app = %app.name, addon = %old.addon, backup = %old.label(), "expired backup removed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_take_the_lowest_free_number_and_vars_follow_names() {
        let addon = |name: &str| Addon {
            id: Uuid::now_v7(),
            app_id: Uuid::nil(),
            name: name.to_owned(),
            kind: "postgres".to_owned(),
            config_var: named_var(name),
            sealed: Vec::new(),
            created_at: OffsetDateTime::UNIX_EPOCH,
        };
        assert_eq!(default_name(AddonKind::Postgres, &[]), "postgres-1");
        let taken = [addon("postgres-1"), addon("postgres-3"), addon("redis-2")];
        assert_eq!(default_name(AddonKind::Postgres, &taken), "postgres-2");
        assert_eq!(default_name(AddonKind::Redis, &taken), "redis-1");
        assert_eq!(named_var("postgres-2"), "POSTGRES_2_URL");
        assert_eq!(named_var("cache"), "CACHE_URL");
    }

    #[test]
    fn backup_ids_have_a_trigger_letter_and_a_number() {
        assert_eq!(parse_backup_id("b001"), Some(('b', 1)));
        assert_eq!(parse_backup_id("a12"), Some(('a', 12)));
        assert_eq!(parse_backup_id("f1000"), Some(('f', 1000)));
        for bad in ["", "b", "x001", "b0x1", "001", "b-1"] {
            assert_eq!(parse_backup_id(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn destroying_waits_a_while_for_a_busy_addon_then_says_so() {
        let addons = Addons::new(
            Arc::new(slipway_engine::FakeEngine::new()),
            None,
            &[7; 32],
            AddonsConfig {
                images: AddonImages {
                    postgres: "slipway/postgres:17".to_owned(),
                    redis: "slipway/redis:8".to_owned(),
                },
                backups_dir: PathBuf::from("/nonexistent"),
                retention: Duration::from_secs(86_400),
            },
        );
        let app = Uuid::now_v7();
        let wait = Duration::from_millis(50);
        let creating = addons.lock(app, "redis-1").await;
        assert!(
            addons.lock_within(app, "redis-1", wait).await.is_none(),
            "a create holding the add-on makes destroy give up"
        );
        assert!(addons.lock_within(app, "redis-2", wait).await.is_some());
        drop(creating);
        assert!(addons.lock_within(app, "redis-1", wait).await.is_some());
        let busy = AddonsError::Busy {
            app: "hello".parse().unwrap(),
            addon: "redis-1".to_owned(),
        };
        let response = axum::response::IntoResponse::into_response(ApiError::from(busy));
        assert_eq!(response.status(), axum::http::StatusCode::CONFLICT);
    }

    #[test]
    fn backup_files_are_named_by_utc_time() {
        let at = OffsetDateTime::from_unix_timestamp(1_795_309_323)
            .unwrap()
            .to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(file_time(at), "20261122T010203Z");
    }
}
