//! Apps: a name, an owner and a pointer to the release that should be serving.

use slipway_types::AppName;
use sqlx::any::AnyRow;
use sqlx::error::ErrorKind;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Store;
use crate::codec::{Cols, micros, now};
use crate::error::{Result, StoreError, violation};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: Uuid,
    pub name: AppName,
    pub owner: Uuid,
    pub created_at: OffsetDateTime,
    /// The release that should be serving; `None` until the first one is promoted.
    pub current_release: Option<Uuid>,
}

impl Store {
    /// Conflict when the name is taken; NotFound when the owner does not exist.
    pub async fn create_app(&self, name: &AppName, owner: Uuid) -> Result<App> {
        let app = App {
            id: Uuid::now_v7(),
            name: name.clone(),
            owner,
            created_at: now(),
            current_release: None,
        };
        let inserted = sqlx::query(
            "INSERT INTO apps (id, name, owner_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(app.id.to_string())
        .bind(name.as_str())
        .bind(owner.to_string())
        .bind(micros(app.created_at))
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(app),
            Err(err) => Err(match violation(&err) {
                Some(ErrorKind::UniqueViolation) => {
                    StoreError::Conflict(format!("app `{name}` already exists"))
                }
                Some(ErrorKind::ForeignKeyViolation) => {
                    StoreError::NotFound(format!("user `{owner}` not found"))
                }
                _ => err.into(),
            }),
        }
    }

    pub async fn app(&self, name: &AppName) -> Result<Option<App>> {
        sqlx::query(
            "SELECT id, name, owner_id, created_at, current_release_id FROM apps WHERE name = $1",
        )
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?
        .map(|row| app_from_row(&row))
        .transpose()
    }

    /// Every app, by name.
    pub async fn apps(&self) -> Result<Vec<App>> {
        sqlx::query(
            "SELECT id, name, owner_id, created_at, current_release_id FROM apps ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(app_from_row)
        .collect()
    }

    /// Deletes the app with its config, releases, builds and formation. NotFound when there is
    /// no such app.
    pub async fn delete_app(&self, app_id: Uuid) -> Result<()> {
        let deleted = sqlx::query("DELETE FROM apps WHERE id = $1")
            .bind(app_id.to_string())
            .execute(&self.pool)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("app `{app_id}` not found")));
        }
        Ok(())
    }
}

/// A yes/no setting of an app, kept in a column of `apps`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AppFlag {
    Maintenance,
    CertsAuto,
}

impl AppFlag {
    fn select(self) -> &'static str {
        match self {
            AppFlag::Maintenance => "SELECT maintenance FROM apps WHERE id = $1",
            AppFlag::CertsAuto => "SELECT certs_auto FROM apps WHERE id = $1",
        }
    }

    fn update(self) -> &'static str {
        match self {
            AppFlag::Maintenance => "UPDATE apps SET maintenance = $1 WHERE id = $2",
            AppFlag::CertsAuto => "UPDATE apps SET certs_auto = $1 WHERE id = $2",
        }
    }
}

impl Store {
    /// NotFound when the app is gone. Flags are 0/1 integers on both backends.
    pub(crate) async fn app_flag(&self, app_id: Uuid, flag: AppFlag) -> Result<bool> {
        let row: Option<(i64,)> = sqlx::query_as(flag.select())
            .bind(app_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|(on,)| on != 0)
            .ok_or_else(|| StoreError::NotFound(format!("app `{app_id}` not found")))
    }

    /// NotFound when the app is gone.
    pub(crate) async fn set_app_flag(&self, app_id: Uuid, flag: AppFlag, on: bool) -> Result<()> {
        let updated = sqlx::query(flag.update())
            .bind(i64::from(on))
            .bind(app_id.to_string())
            .execute(&self.pool)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("app `{app_id}` not found")));
        }
        Ok(())
    }

    /// Whether the app is in maintenance mode. NotFound when the app is gone.
    pub async fn maintenance(&self, app_id: Uuid) -> Result<bool> {
        self.app_flag(app_id, AppFlag::Maintenance).await
    }

    pub async fn set_maintenance(&self, app_id: Uuid, on: bool) -> Result<()> {
        self.set_app_flag(app_id, AppFlag::Maintenance, on).await
    }

    /// Names of the apps in maintenance mode.
    pub async fn apps_in_maintenance(&self) -> Result<Vec<AppName>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM apps WHERE maintenance <> 0 ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(name,)| {
                name.parse().map_err(|_| {
                    StoreError::Corrupt(format!("the store's `apps.name` holds `{name}`"))
                })
            })
            .collect()
    }
}

fn app_from_row(row: &AnyRow) -> Result<App> {
    let cols = Cols::new("apps", row);
    Ok(App {
        id: cols.uuid("id")?,
        name: cols.parse("name", |s| s.parse().ok())?,
        owner: cols.uuid("owner_id")?,
        created_at: cols.time("created_at")?,
        current_release: cols.opt_parse("current_release_id", |s| Uuid::parse_str(s).ok())?,
    })
}
