//! Log drains of apps. A drain URL may hold credentials, so it is kept sealed like config vars,
//! next to its redacted form for listings.

use slipway_types::AppName;
use slipway_types::drains::DrainUrl;
use sqlx::any::AnyRow;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Store;
use crate::codec::{Cols, micros, now};
use crate::error::{Result, StoreError};
use crate::seal::{open_text, seal_text};

macro_rules! drain_columns {
    () => {
        "d.id, d.app_id, a.name AS app_name, d.url_sealed, d.created_at"
    };
}

/// Drains one app may have: each holds a buffer of lines in the server's memory.
pub const MAX_DRAINS_PER_APP: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drain {
    pub id: Uuid,
    pub app_id: Uuid,
    pub app: AppName,
    /// Opened: `Debug` and `Display` of a `DrainUrl` show it redacted.
    pub url: DrainUrl,
    pub created_at: OffsetDateTime,
}

impl Drain {
    /// `d.<uuid>`, the name users and receivers see.
    pub fn token(&self) -> String {
        drain_token(self.id)
    }
}

pub fn drain_token(id: Uuid) -> String {
    format!("d.{id}")
}

/// The id of `d.<uuid>` (or a bare uuid).
pub fn parse_drain_token(text: &str) -> Option<Uuid> {
    Uuid::parse_str(text.strip_prefix("d.").unwrap_or(text)).ok()
}

impl Store {
    /// Adds a drain to the app. Conflict when the app has that URL already or has
    /// [`MAX_DRAINS_PER_APP`]; NotFound when the app is gone.
    pub async fn add_drain(&self, app_id: Uuid, url: &DrainUrl) -> Result<Drain> {
        let mut tx = self.begin_write().await?;
        let existing = self.drains_in(&mut tx, Some(app_id)).await?;
        if existing
            .iter()
            .any(|drain| drain.url.as_secret_str() == url.as_secret_str())
        {
            return Err(StoreError::Conflict(format!(
                "drain `{url}` is already attached to this app"
            )));
        }
        if existing.len() >= MAX_DRAINS_PER_APP {
            return Err(StoreError::Conflict(format!(
                "the app has {MAX_DRAINS_PER_APP} drains already: remove one first"
            )));
        }
        let id = Uuid::now_v7();
        let created_at = now();
        let sealed = seal_text(self.sealer(), &url_owner(id), url.as_secret_str())?;
        let inserted = sqlx::query(
            "INSERT INTO drains (id, app_id, url_sealed, url_shown, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.to_string())
        .bind(app_id.to_string())
        .bind(sealed)
        .bind(url.redacted())
        .bind(micros(created_at))
        .execute(&mut *tx)
        .await;
        if let Err(err) = inserted {
            return Err(match crate::error::violation(&err) {
                Some(sqlx::error::ErrorKind::ForeignKeyViolation) => {
                    StoreError::NotFound(format!("app `{app_id}` not found"))
                }
                _ => err.into(),
            });
        }
        tx.commit().await?;
        self.drain(id).await?.ok_or_else(|| {
            StoreError::NotFound(format!(
                "drain `{}` vanished while being added",
                drain_token(id)
            ))
        })
    }

    pub async fn drain(&self, id: Uuid) -> Result<Option<Drain>> {
        sqlx::query(concat!(
            "SELECT ",
            drain_columns!(),
            " FROM drains d JOIN apps a ON a.id = d.app_id WHERE d.id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .map(|row| self.drain_from_row(&row))
        .transpose()
    }

    /// The app's drains, oldest first, or every app's when `app_id` is `None`.
    pub async fn drains(&self, app_id: Option<Uuid>) -> Result<Vec<Drain>> {
        let mut conn = self.pool.acquire().await?;
        self.drains_in(&mut conn, app_id).await
    }

    /// Removes a drain of the app. NotFound when the app has no such drain.
    pub async fn remove_drain(&self, app_id: Uuid, id: Uuid) -> Result<()> {
        let deleted = sqlx::query("DELETE FROM drains WHERE id = $1 AND app_id = $2")
            .bind(id.to_string())
            .bind(app_id.to_string())
            .execute(&self.pool)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "drain `{}` is not attached to this app",
                drain_token(id)
            )));
        }
        Ok(())
    }

    async fn drains_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        app_id: Option<Uuid>,
    ) -> Result<Vec<Drain>> {
        sqlx::query(concat!(
            "SELECT ",
            drain_columns!(),
            " FROM drains d JOIN apps a ON a.id = d.app_id \
             WHERE $1 IS NULL OR d.app_id = $1 ORDER BY d.created_at, d.id"
        ))
        .bind(app_id.map(|id| id.to_string()))
        .fetch_all(conn)
        .await?
        .iter()
        .map(|row| self.drain_from_row(row))
        .collect()
    }

    fn drain_from_row(&self, row: &AnyRow) -> Result<Drain> {
        let cols = Cols::new("drains", row);
        let id = cols.uuid("id")?;
        let url = open_text(self.sealer(), &url_owner(id), &cols.text("url_sealed")?)?;
        let url = DrainUrl::parse(&url).map_err(|_| {
            StoreError::Corrupt(format!(
                "the store's drain `{}` has a URL this slipway cannot read",
                drain_token(id)
            ))
        })?;
        Ok(Drain {
            id,
            app_id: cols.uuid("app_id")?,
            app: cols.parse("app_name", |s| s.parse().ok())?,
            url,
            created_at: cols.time("created_at")?,
        })
    }
}

/// What a drain URL's sealed value is bound to: a value copied to another drain does not open.
fn url_owner(id: Uuid) -> String {
    format!("drain/{id}")
}
