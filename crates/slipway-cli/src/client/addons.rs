//! Add-ons and the backups of Postgres ones: `/v1/apps/{app}/addons…`.

use std::time::Duration;

use reqwest::Method;
use slipway_types::api::{
    AddonChanged, AddonDetail, AddonInfo, BackupInfo, CreateAddon, RestoreInfo,
};

use super::{CONFIG_TIMEOUT, Client, ClientError};

/// The server asks the database for its status, which it bounds at 30 s.
const STATUS_TIMEOUT: Duration = Duration::from_secs(60);
/// A dump or a restore takes as long as the database is big; the server gives up after 6 h.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(6 * 3600 + 300);

impl Client {
    /// Oldest first.
    pub async fn list_addons(&self, app: &str) -> Result<Vec<AddonInfo>, ClientError> {
        self.call(Method::GET, &["v1", "apps", app, "addons"]).await
    }

    /// Provisions an add-on of `kind`, named `name` or by default, and sets its config var.
    /// Answers once the release that sets it is live or has failed.
    pub async fn create_addon(
        &self,
        app: &str,
        kind: &str,
        name: Option<&str>,
    ) -> Result<AddonChanged, ClientError> {
        let body = CreateAddon {
            kind: kind.to_owned(),
            name: name.map(str::to_owned),
        };
        self.call_with(
            Method::POST,
            &["v1", "apps", app, "addons"],
            &body,
            CONFIG_TIMEOUT,
        )
        .await
    }

    /// The add-on with how its server is doing.
    pub async fn get_addon(&self, app: &str, name: &str) -> Result<AddonDetail, ClientError> {
        self.decode(
            Method::GET,
            &["v1", "apps", app, "addons", name],
            None::<&()>,
            STATUS_TIMEOUT,
        )
        .await
    }

    /// Takes a final backup of a Postgres add-on, removes its config var with a release and
    /// removes its server and data.
    pub async fn destroy_addon(&self, app: &str, name: &str) -> Result<AddonChanged, ClientError> {
        self.decode(
            Method::DELETE,
            &["v1", "apps", app, "addons", name],
            None::<&()>,
            BACKUP_TIMEOUT,
        )
        .await
    }

    /// Newest first.
    pub async fn list_backups(
        &self,
        app: &str,
        addon: &str,
    ) -> Result<Vec<BackupInfo>, ClientError> {
        self.call(
            Method::GET,
            &["v1", "apps", app, "addons", addon, "backups"],
        )
        .await
    }

    /// Dumps the database now; answers when the dump is written or has failed.
    pub async fn capture_backup(&self, app: &str, addon: &str) -> Result<BackupInfo, ClientError> {
        self.decode(
            Method::POST,
            &["v1", "apps", app, "addons", addon, "backups"],
            None::<&()>,
            BACKUP_TIMEOUT,
        )
        .await
    }

    /// Replaces the database's contents with backup `id` (`latest`: the newest good one).
    pub async fn restore_backup(
        &self,
        app: &str,
        addon: &str,
        id: &str,
    ) -> Result<RestoreInfo, ClientError> {
        self.decode(
            Method::POST,
            &["v1", "apps", app, "addons", addon, "backups", id, "restore"],
            None::<&()>,
            BACKUP_TIMEOUT,
        )
        .await
    }
}
