//! Add-ons and the backups of their databases. The store keeps an add-on's credentials only
//! sealed: the server encrypts them before they get here and decrypts them after.

use slipway_types::api::{BackupStatus, BackupTrigger};
use sqlx::any::AnyRow;
use sqlx::error::ErrorKind;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Store;
use crate::codec::{Cols, micros, now};
use crate::error::{Result, StoreError, violation};

macro_rules! addon_columns {
    () => {
        "id, app_id, name, kind, config_var, sealed, created_at"
    };
}

macro_rules! backup_columns {
    () => {
        "id, app_id, addon, number, trigger, status, file, size_bytes, error, started_at, finished_at"
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addon {
    pub id: Uuid,
    pub app_id: Uuid,
    pub name: String,
    /// `postgres` or `redis`.
    pub kind: String,
    /// The config var that holds its URL.
    pub config_var: String,
    /// What the server needs to recreate it, credentials included, encrypted by the server.
    pub sealed: Vec<u8>,
    pub created_at: OffsetDateTime,
}

pub struct NewAddon<'a> {
    pub app_id: Uuid,
    pub name: &'a str,
    pub kind: &'a str,
    pub config_var: &'a str,
    pub sealed: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub id: Uuid,
    pub app_id: Uuid,
    /// The add-on's name; the backup outlives the add-on.
    pub addon: String,
    /// Counts the app's backups from 1.
    pub number: u32,
    pub trigger: BackupTrigger,
    pub status: BackupStatus,
    /// The dump's file name in the app's backup folder, once written.
    pub file: Option<String>,
    pub size_bytes: Option<u64>,
    pub error: Option<String>,
    pub started_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

impl Backup {
    /// How users name it: the trigger's letter and the number, like `b007`.
    pub fn label(&self) -> String {
        format!("{}{:03}", self.trigger.prefix(), self.number)
    }
}

/// How a backup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupOutcome<'a> {
    Succeeded { file: &'a str, size_bytes: u64 },
    Failed { error: &'a str },
}

impl Store {
    /// Conflict when the app has an add-on of that name; NotFound when the app is gone.
    pub async fn create_addon(&self, new: NewAddon<'_>) -> Result<Addon> {
        let addon = Addon {
            id: Uuid::now_v7(),
            app_id: new.app_id,
            name: new.name.to_owned(),
            kind: new.kind.to_owned(),
            config_var: new.config_var.to_owned(),
            sealed: new.sealed.to_vec(),
            created_at: now(),
        };
        let inserted = sqlx::query(concat!(
            "INSERT INTO addons (",
            addon_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(addon.id.to_string())
        .bind(addon.app_id.to_string())
        .bind(&addon.name)
        .bind(&addon.kind)
        .bind(&addon.config_var)
        .bind(&addon.sealed)
        .bind(micros(addon.created_at))
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(addon),
            Err(err) => Err(match violation(&err) {
                Some(ErrorKind::UniqueViolation) => {
                    StoreError::Conflict(format!("add-on `{}` already exists", new.name))
                }
                Some(ErrorKind::ForeignKeyViolation) => {
                    StoreError::NotFound(format!("app `{}` not found", new.app_id))
                }
                Some(ErrorKind::CheckViolation) => {
                    StoreError::Conflict(format!("add-on kind `{}` is unknown", new.kind))
                }
                _ => err.into(),
            }),
        }
    }

    /// The app's add-ons, oldest first.
    pub async fn addons(&self, app_id: Uuid) -> Result<Vec<Addon>> {
        sqlx::query(concat!(
            "SELECT ",
            addon_columns!(),
            " FROM addons WHERE app_id = $1 ORDER BY created_at, name"
        ))
        .bind(app_id.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(addon_from_row)
        .collect()
    }

    pub async fn addon(&self, app_id: Uuid, name: &str) -> Result<Option<Addon>> {
        sqlx::query(concat!(
            "SELECT ",
            addon_columns!(),
            " FROM addons WHERE app_id = $1 AND name = $2"
        ))
        .bind(app_id.to_string())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| addon_from_row(&row))
        .transpose()
    }

    /// NotFound when there is no such add-on. Its backups stay.
    pub async fn delete_addon(&self, id: Uuid) -> Result<()> {
        let deleted = sqlx::query("DELETE FROM addons WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("add-on `{id}` not found")));
        }
        Ok(())
    }

    /// A running backup with the app's next number. NotFound when the app is gone.
    pub async fn start_backup(
        &self,
        app_id: Uuid,
        addon: &str,
        trigger: BackupTrigger,
    ) -> Result<Backup> {
        let mut tx = self.pool.begin().await?;
        let (highest,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(number) FROM addon_backups WHERE app_id = $1")
                .bind(app_id.to_string())
                .fetch_one(&mut *tx)
                .await?;
        let next = highest.unwrap_or(0) + 1;
        let number = u32::try_from(next).map_err(|_| {
            StoreError::Corrupt(format!(
                "backup number {next} of app `{app_id}` is too large"
            ))
        })?;
        let backup = Backup {
            id: Uuid::now_v7(),
            app_id,
            addon: addon.to_owned(),
            number,
            trigger,
            status: BackupStatus::Running,
            file: None,
            size_bytes: None,
            error: None,
            started_at: now(),
            finished_at: None,
        };
        let inserted = sqlx::query(
            "INSERT INTO addon_backups (id, app_id, addon, number, trigger, status, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(backup.id.to_string())
        .bind(app_id.to_string())
        .bind(addon)
        .bind(next)
        .bind(trigger.as_str())
        .bind(backup.status.as_str())
        .bind(micros(backup.started_at))
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(err) if violation(&err) == Some(ErrorKind::ForeignKeyViolation) => {
                return Err(StoreError::NotFound(format!("app `{app_id}` not found")));
            }
            Err(err) => return Err(err.into()),
        }
        tx.commit().await?;
        Ok(backup)
    }

    /// Records how a running backup ended and returns it as it is now.
    pub async fn finish_backup(&self, id: Uuid, outcome: BackupOutcome<'_>) -> Result<Backup> {
        let (status, file, size, error) = match outcome {
            BackupOutcome::Succeeded { file, size_bytes } => {
                let size = i64::try_from(size_bytes).map_err(|_| {
                    StoreError::Conflict(format!("backup size {size_bytes} is too large to store"))
                })?;
                (BackupStatus::Succeeded, Some(file), Some(size), None)
            }
            BackupOutcome::Failed { error } => (BackupStatus::Failed, None, None, Some(error)),
        };
        sqlx::query(concat!(
            "UPDATE addon_backups SET status = $1, file = $2, size_bytes = $3, error = $4, \
             finished_at = $5 WHERE id = $6 RETURNING ",
            backup_columns!()
        ))
        .bind(status.as_str())
        .bind(file)
        .bind(size)
        .bind(error)
        .bind(micros(now()))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .map(|row| backup_from_row(&row))
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("backup `{id}` not found")))
    }

    /// The app's backups, of one add-on or all, newest first.
    pub async fn backups(&self, app_id: Uuid, addon: Option<&str>) -> Result<Vec<Backup>> {
        sqlx::query(concat!(
            "SELECT ",
            backup_columns!(),
            " FROM addon_backups WHERE app_id = $1 AND ($2 IS NULL OR addon = $3) \
             ORDER BY number DESC"
        ))
        .bind(app_id.to_string())
        .bind(addon)
        .bind(addon)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(backup_from_row)
        .collect()
    }

    /// The app's backup with this number.
    pub async fn backup(&self, app_id: Uuid, number: u32) -> Result<Option<Backup>> {
        sqlx::query(concat!(
            "SELECT ",
            backup_columns!(),
            " FROM addon_backups WHERE app_id = $1 AND number = $2"
        ))
        .bind(app_id.to_string())
        .bind(i64::from(number))
        .fetch_optional(&self.pool)
        .await?
        .map(|row| backup_from_row(&row))
        .transpose()
    }

    /// NotFound when there is no such backup.
    pub async fn delete_backup(&self, id: Uuid) -> Result<()> {
        let deleted = sqlx::query("DELETE FROM addon_backups WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("backup `{id}` not found")));
        }
        Ok(())
    }

    /// Marks every running backup failed with `reason`: at start, those a stopped server
    /// left can no longer finish. Returns how many there were.
    pub async fn fail_running_backups(&self, reason: &str) -> Result<u64> {
        let updated = sqlx::query(
            "UPDATE addon_backups SET status = 'failed', error = $1, finished_at = $2 \
             WHERE status = 'running'",
        )
        .bind(reason)
        .bind(micros(now()))
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected())
    }
}

fn addon_from_row(row: &AnyRow) -> Result<Addon> {
    let cols = Cols::new("addons", row);
    Ok(Addon {
        id: cols.uuid("id")?,
        app_id: cols.uuid("app_id")?,
        name: cols.text("name")?,
        kind: cols.text("kind")?,
        config_var: cols.text("config_var")?,
        sealed: cols.bytes("sealed")?,
        created_at: cols.time("created_at")?,
    })
}

fn backup_from_row(row: &AnyRow) -> Result<Backup> {
    let cols = Cols::new("addon_backups", row);
    Ok(Backup {
        id: cols.uuid("id")?,
        app_id: cols.uuid("app_id")?,
        addon: cols.text("addon")?,
        number: cols.parse_int("number", |n| u32::try_from(n).ok())?,
        trigger: cols.parse("trigger", BackupTrigger::parse)?,
        status: cols.parse("status", BackupStatus::parse)?,
        file: cols.opt_text("file")?,
        size_bytes: cols
            .opt_int("size_bytes")?
            .map(|n| {
                u64::try_from(n).map_err(|_| {
                    StoreError::Corrupt(format!(
                        "the store's `addon_backups.size_bytes` holds `{n}`, which this slipway cannot read"
                    ))
                })
            })
            .transpose()?,
        error: cols.opt_text("error")?,
        started_at: cols.time("started_at")?,
        finished_at: cols.opt_time("finished_at")?,
    })
}
