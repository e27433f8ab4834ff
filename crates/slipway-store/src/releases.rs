//! Releases: an immutable image and config snapshot under a semantic version, plus the
//! outcome of rolling it out.

use std::collections::BTreeMap;

use semver::Version;
use slipway_types::api::ReleaseStatus;
use slipway_types::{AppJson, ConfigVars, ProcessType};
use sqlx::any::AnyRow;
use sqlx::error::ErrorKind;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Store;
use crate::codec::{Cols, VersionKey, micros, now, to_json};
use crate::config::replace_config;
use crate::error::{Result, StoreError, violation};
use crate::seal::{open_text, seal_text};

macro_rules! release_columns {
    () => {
        "id, app_id, version, image, config, processes, app_json, commit_sha, description, \
         created_by, created_at, status, status_reason"
    };
}

/// Highest version first; a pre-release after the release of the same major.minor.patch;
/// then the most recently cut.
macro_rules! newest_first {
    () => {
        " ORDER BY major DESC, minor DESC, patch DESC, pre = '' DESC, created_at DESC, id DESC"
    };
}

/// What the caller decides for a release; the store adds the id, time and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRelease {
    pub app_id: Uuid,
    pub version: Version,
    pub image: String,
    pub config: ConfigVars,
    pub processes: BTreeMap<ProcessType, String>,
    pub app_json: AppJson,
    pub commit: Option<String>,
    pub description: String,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub id: Uuid,
    pub app_id: Uuid,
    pub version: Version,
    pub image: String,
    pub config: ConfigVars,
    pub processes: BTreeMap<ProcessType, String>,
    pub app_json: AppJson,
    pub commit: Option<String>,
    pub description: String,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub status: ReleaseStatus,
    pub status_reason: Option<String>,
}

impl Store {
    /// The app's releases, newest first: by semantic version, then by creation.
    pub async fn releases(&self, app_id: Uuid) -> Result<Vec<Release>> {
        sqlx::query(concat!(
            "SELECT ",
            release_columns!(),
            " FROM releases WHERE app_id = $1",
            newest_first!()
        ))
        .bind(app_id.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| self.release_from_row(row))
        .collect()
    }

    /// The release with this version, build metadata ignored (`1.2.0+gabc1234` finds `1.2.0`).
    pub async fn release(&self, app_id: Uuid, version: &Version) -> Result<Option<Release>> {
        let key = VersionKey::of(version)?;
        sqlx::query(concat!(
            "SELECT ",
            release_columns!(),
            " FROM releases WHERE app_id = $1 AND major = $2 AND minor = $3 AND patch = $4 AND pre = $5"
        ))
        .bind(app_id.to_string())
        .bind(key.major)
        .bind(key.minor)
        .bind(key.patch)
        .bind(key.pre)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| self.release_from_row(&row))
        .transpose()
    }

    pub async fn release_by_id(&self, id: Uuid) -> Result<Option<Release>> {
        sqlx::query(concat!(
            "SELECT ",
            release_columns!(),
            " FROM releases WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .map(|row| self.release_from_row(&row))
        .transpose()
    }

    /// The release that should be serving, as set by [`Store::promote_release`].
    pub async fn current_release(&self, app_id: Uuid) -> Result<Option<Release>> {
        sqlx::query(concat!(
            "SELECT ",
            release_columns!(),
            " FROM releases WHERE id = (SELECT current_release_id FROM apps WHERE id = $1)"
        ))
        .bind(app_id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .map(|row| self.release_from_row(&row))
        .transpose()
    }

    /// Every version the app has cut, whatever became of it, lowest first: a version is never
    /// reused, so the next bump starts above all of them.
    pub async fn versions(&self, app_id: Uuid) -> Result<Vec<Version>> {
        sqlx::query(
            "SELECT version FROM releases WHERE app_id = $1 \
             ORDER BY major, minor, patch, pre = '', created_at, id",
        )
        .bind(app_id.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| Cols::new("releases", row).version("version"))
        .collect()
    }

    /// Inserts the release as pending and, when `new_config` is given, makes it the app's
    /// config, in one transaction: the config never changes without the release that carries
    /// it. Conflict when the app already has this version (build metadata ignored); NotFound
    /// when the app does not exist.
    pub async fn create_release(
        &self,
        release: NewRelease,
        new_config: Option<&ConfigVars>,
    ) -> Result<Release> {
        let key = VersionKey::of(&release.version)?;
        let release = Release {
            id: Uuid::now_v7(),
            app_id: release.app_id,
            version: release.version,
            image: release.image,
            config: release.config,
            processes: release.processes,
            app_json: release.app_json,
            commit: release.commit,
            description: release.description,
            created_by: release.created_by,
            created_at: now(),
            status: ReleaseStatus::Pending,
            status_reason: None,
        };
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO releases (id, app_id, version, major, minor, patch, pre, image, config, \
             processes, app_json, commit_sha, description, created_by, created_at, status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(release.id.to_string())
        .bind(release.app_id.to_string())
        .bind(release.version.to_string())
        .bind(key.major)
        .bind(key.minor)
        .bind(key.patch)
        .bind(key.pre)
        .bind(&release.image)
        .bind(seal_text(
            self.sealer(),
            &snapshot_owner(release.id),
            &to_json(&release.config, "the config snapshot")?,
        )?)
        .bind(to_json(&release.processes, "the process types")?)
        .bind(to_json(&release.app_json, "the app.json")?)
        .bind(&release.commit)
        .bind(&release.description)
        .bind(&release.created_by)
        .bind(micros(release.created_at))
        .bind(release.status.as_str())
        .execute(&mut *tx)
        .await;
        if let Err(err) = inserted {
            return Err(match violation(&err) {
                Some(ErrorKind::UniqueViolation) => StoreError::Conflict(format!(
                    "release `{}` already exists: versions are never reused",
                    release.version
                )),
                Some(ErrorKind::ForeignKeyViolation) => {
                    StoreError::NotFound(format!("app `{}` not found", release.app_id))
                }
                _ => err.into(),
            });
        }
        if let Some(config) = new_config {
            replace_config(&mut tx, self.sealer(), release.app_id, config).await?;
        }
        tx.commit().await?;
        Ok(release)
    }

    /// Records how a release's rollout went; `reason` says why it failed or was rolled back.
    pub async fn set_release_status(
        &self,
        id: Uuid,
        status: ReleaseStatus,
        reason: Option<&str>,
    ) -> Result<()> {
        let updated =
            sqlx::query("UPDATE releases SET status = $1, status_reason = $2 WHERE id = $3")
                .bind(status.as_str())
                .bind(reason)
                .bind(id.to_string())
                .execute(&self.pool)
                .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("release `{id}` not found")));
        }
        Ok(())
    }

    /// Marks the release succeeded (clearing any earlier failure reason) and makes it the app's
    /// current one, in one transaction, so a crash never leaves one change without the other.
    /// NotFound when the release is not one of this app's; Conflict when the store is fenced
    /// (`Store::fenced_by`) and its server lost the leader lease.
    pub async fn promote_release(&self, app_id: Uuid, release_id: Uuid) -> Result<()> {
        let mut tx = self.begin_write().await?;
        if let Some(fence) = self.fence() {
            fence.check(self.backend(), &mut tx).await?;
        }
        let updated = sqlx::query(
            "UPDATE releases SET status = $1, status_reason = NULL WHERE id = $2 AND app_id = $3",
        )
        .bind(ReleaseStatus::Succeeded.as_str())
        .bind(release_id.to_string())
        .bind(app_id.to_string())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "release `{release_id}` of app `{app_id}` not found"
            )));
        }
        sqlx::query("UPDATE apps SET current_release_id = $1 WHERE id = $2")
            .bind(release_id.to_string())
            .bind(app_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The commit of the newest succeeded release built from one: where the next push's
    /// commit log starts when choosing the version bump.
    pub async fn last_deployed_commit(&self, app_id: Uuid) -> Result<Option<String>> {
        let commit = sqlx::query_scalar(concat!(
            "SELECT commit_sha FROM releases \
             WHERE app_id = $1 AND status = $2 AND commit_sha IS NOT NULL",
            newest_first!(),
            " LIMIT 1"
        ))
        .bind(app_id.to_string())
        .bind(ReleaseStatus::Succeeded.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(commit)
    }
}

/// What a release's sealed config snapshot is bound to.
fn snapshot_owner(id: Uuid) -> String {
    format!("release/{}", id.hyphenated())
}

impl Store {
    fn release_from_row(&self, row: &AnyRow) -> Result<Release> {
        let cols = Cols::new("releases", row);
        let id = cols.uuid("id")?;
        let snapshot = open_text(self.sealer(), &snapshot_owner(id), &cols.text("config")?)?;
        let config = serde_json::from_str(&snapshot).map_err(|err| {
            StoreError::Corrupt(format!(
                "the store's `releases.config` is not the JSON expected: {err}"
            ))
        })?;
        Ok(Release {
            id,
            app_id: cols.uuid("app_id")?,
            version: cols.version("version")?,
            image: cols.text("image")?,
            config,
            processes: cols.json("processes")?,
            app_json: cols.json("app_json")?,
            commit: cols.opt_text("commit_sha")?,
            description: cols.text("description")?,
            created_by: cols.text("created_by")?,
            created_at: cols.time("created_at")?,
            status: cols.parse("status", ReleaseStatus::parse)?,
            status_reason: cols.opt_text("status_reason")?,
        })
    }
}
