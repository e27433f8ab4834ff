//! The buildpacks set on an app with `buildpacks:set`: an ordered list of built-in names or
//! git URLs, checked by the API before it gets here.

use uuid::Uuid;

use crate::Store;
use crate::error::{Result, StoreError, violation};

impl Store {
    /// The app's buildpacks in the order they run; empty when none are set.
    pub async fn buildpacks(&self, app_id: Uuid) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar(
                "SELECT url FROM app_buildpacks WHERE app_id = $1 ORDER BY position",
            )
            .bind(app_id.to_string())
            .fetch_all(&self.pool)
            .await?,
        )
    }

    /// Replaces the app's buildpacks with `urls`, in order; an empty list clears them.
    /// NotFound when the app does not exist.
    pub async fn set_buildpacks(&self, app_id: Uuid, urls: &[String]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM app_buildpacks WHERE app_id = $1")
            .bind(app_id.to_string())
            .execute(&mut *tx)
            .await?;
        for (position, url) in urls.iter().enumerate() {
            sqlx::query("INSERT INTO app_buildpacks (app_id, position, url) VALUES ($1, $2, $3)")
                .bind(app_id.to_string())
                .bind(i64::try_from(position).unwrap_or(i64::MAX))
                .bind(url)
                .execute(&mut *tx)
                .await
                .map_err(|err| match violation(&err) {
                    Some(sqlx::error::ErrorKind::ForeignKeyViolation) => {
                        StoreError::NotFound(format!("app `{app_id}` not found"))
                    }
                    _ => err.into(),
                })?;
        }
        tx.commit().await?;
        Ok(())
    }
}
