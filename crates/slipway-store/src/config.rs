//! An app's current config vars. Releases snapshot them: once an app has a release, only
//! `create_release` replaces them, so the vars and the release that carries them change
//! together. Before the first release `set_config` stores them for the first deploy to use.

use slipway_types::ConfigVars;
use sqlx::Sqlite;
use uuid::Uuid;

use crate::Store;
use crate::codec::Cols;
use crate::error::{Result, StoreError};

impl Store {
    /// The app's config vars; empty for an app without any (or without a row at all).
    pub async fn config(&self, app_id: Uuid) -> Result<ConfigVars> {
        sqlx::query("SELECT key, value FROM config_vars WHERE app_id = ?")
            .bind(app_id.hyphenated())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                let cols = Cols::new("config_vars", row);
                Ok((cols.parse("key", |s| s.parse().ok())?, cols.text("value")?))
            })
            .collect()
    }

    /// Replaces the config of an app that has no release yet. Refused once it has one: from
    /// then on config changes travel with a release (`create_release`).
    pub async fn set_config(&self, app_id: Uuid, config: &ConfigVars) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let released: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM releases WHERE app_id = ? LIMIT 1")
                .bind(app_id.hyphenated())
                .fetch_optional(&mut *tx)
                .await?;
        if released.is_some() {
            return Err(StoreError::Conflict(
                "the app has releases: change its config with a new release".into(),
            ));
        }
        replace_config(&mut tx, app_id, config).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Replaces every config var of the app, inside the caller's transaction.
pub(crate) async fn replace_config(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    app_id: Uuid,
    config: &ConfigVars,
) -> Result<()> {
    sqlx::query("DELETE FROM config_vars WHERE app_id = ?")
        .bind(app_id.hyphenated())
        .execute(&mut **tx)
        .await?;
    for (key, value) in config.iter() {
        sqlx::query("INSERT INTO config_vars (app_id, key, value) VALUES (?, ?, ?)")
            .bind(app_id.hyphenated())
            .bind(key.as_str())
            .bind(value)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
