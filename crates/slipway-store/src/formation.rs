//! Formation: how many containers of each process type should run, and their memory limit.
//! Scaling changes it without cutting a release.

use slipway_types::ProcessType;
use sqlx::error::ErrorKind;
use uuid::Uuid;

use crate::Store;
use crate::codec::Cols;
use crate::error::{Result, StoreError, violation};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormationEntry {
    pub process: ProcessType,
    pub quantity: u32,
    /// `None`: the server's default memory limit.
    pub memory_bytes: Option<i64>,
}

impl Store {
    /// The app's formation, by process type.
    pub async fn formation(&self, app_id: Uuid) -> Result<Vec<FormationEntry>> {
        sqlx::query(
            "SELECT process_type, quantity, memory_bytes FROM formation \
             WHERE app_id = $1 ORDER BY process_type",
        )
        .bind(app_id.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            let cols = Cols::new("formation", row);
            Ok(FormationEntry {
                process: cols.parse("process_type", |s| s.parse().ok())?,
                quantity: cols.parse_int("quantity", |n| u32::try_from(n).ok())?,
                memory_bytes: cols.opt_int("memory_bytes")?,
            })
        })
        .collect()
    }

    /// Adds a row for each process type that has none: one `web` container, none of the
    /// others, as Heroku does. Rows that exist keep the operator's scaling. NotFound when the
    /// app does not exist.
    pub async fn ensure_formation(&self, app_id: Uuid, types: &[ProcessType]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for process in types {
            let inserted = sqlx::query(
                "INSERT INTO formation (app_id, process_type, quantity) VALUES ($1, $2, $3) \
                 ON CONFLICT (app_id, process_type) DO NOTHING",
            )
            .bind(app_id.to_string())
            .bind(process.as_str())
            .bind(i64::from(process.is_web()))
            .execute(&mut *tx)
            .await;
            if let Err(err) = inserted {
                return Err(app_error(err, app_id));
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sets both the quantity and the memory limit of a process type (`None`: the default
    /// limit), adding the row if needed. NotFound when the app does not exist.
    pub async fn set_formation(
        &self,
        app_id: Uuid,
        process: &ProcessType,
        quantity: u32,
        memory_bytes: Option<i64>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO formation (app_id, process_type, quantity, memory_bytes) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (app_id, process_type) \
             DO UPDATE SET quantity = excluded.quantity, memory_bytes = excluded.memory_bytes",
        )
        .bind(app_id.to_string())
        .bind(process.as_str())
        .bind(i64::from(quantity))
        .bind(memory_bytes)
        .execute(&self.pool)
        .await
        .map_err(|err| app_error(err, app_id))?;
        Ok(())
    }
}

fn app_error(err: sqlx::Error, app_id: Uuid) -> StoreError {
    match violation(&err) {
        Some(ErrorKind::ForeignKeyViolation) => {
            StoreError::NotFound(format!("app `{app_id}` not found"))
        }
        _ => err.into(),
    }
}
