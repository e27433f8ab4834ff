//! An app's current config vars. Releases snapshot them: once an app has a release, only
//! `create_release` replaces them, so the vars and the release that carries them change
//! together. Before the first release `set_config` stores them for the first deploy to use.

use slipway_types::{ConfigKey, ConfigVars};
use sqlx::Any;
use uuid::Uuid;

use crate::Store;
use crate::codec::Cols;
use crate::error::{Result, StoreError};
use crate::seal::{Sealer, open_text, seal_text};

impl Store {
    /// The app's config vars; empty for an app without any (or without a row at all).
    pub async fn config(&self, app_id: Uuid) -> Result<ConfigVars> {
        sqlx::query("SELECT key, value FROM config_vars WHERE app_id = $1")
            .bind(app_id.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                let cols = Cols::new("config_vars", row);
                let key: ConfigKey = cols.parse("key", |s| s.parse().ok())?;
                let value = open_text(
                    self.sealer(),
                    &var_owner(app_id, &key),
                    &cols.text("value")?,
                )?;
                Ok((key, value))
            })
            .collect()
    }

    /// Replaces the config of an app that has no release yet. Refused once it has one: from
    /// then on config changes travel with a release (`create_release`).
    pub async fn set_config(&self, app_id: Uuid, config: &ConfigVars) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let released: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM releases WHERE app_id = $1 LIMIT 1")
                .bind(app_id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if released.is_some() {
            return Err(StoreError::Conflict(
                "the app has releases: change its config with a new release".into(),
            ));
        }
        replace_config(&mut tx, self.sealer(), app_id, config).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Replaces every config var of the app, inside the caller's transaction.
/// What a config var's sealed value is bound to: a value copied to another app or key does not
/// open.
fn var_owner(app_id: Uuid, key: &ConfigKey) -> String {
    format!("config/{}/{key}", app_id.hyphenated())
}

pub(crate) async fn replace_config(
    tx: &mut sqlx::Transaction<'_, Any>,
    sealer: Option<&Sealer>,
    app_id: Uuid,
    config: &ConfigVars,
) -> Result<()> {
    sqlx::query("DELETE FROM config_vars WHERE app_id = $1")
        .bind(app_id.to_string())
        .execute(&mut **tx)
        .await?;
    for (key, value) in config.iter() {
        sqlx::query("INSERT INTO config_vars (app_id, key, value) VALUES ($1, $2, $3)")
            .bind(app_id.to_string())
            .bind(key.as_str())
            .bind(seal_text(sealer, &var_owner(app_id, key), value)?)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
