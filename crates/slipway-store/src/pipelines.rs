//! Pipelines: a name and an owner, and the apps in each with their stage. An app is in one
//! pipeline at most, so "promote this app" always means one pipeline.

use slipway_types::{AppName, PipelineName, Stage};
use sqlx::any::AnyRow;
use sqlx::error::ErrorKind;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Store;
use crate::codec::{Cols, micros, now};
use crate::error::{Result, StoreError, violation};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    pub id: Uuid,
    pub name: PipelineName,
    pub owner: Uuid,
    pub created_at: OffsetDateTime,
}

/// An app in a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineMember {
    pub app_id: Uuid,
    pub app: AppName,
    pub stage: Stage,
}

impl Store {
    /// Conflict when the name is taken; NotFound when the owner does not exist.
    pub async fn create_pipeline(&self, name: &PipelineName, owner: Uuid) -> Result<Pipeline> {
        let pipeline = Pipeline {
            id: Uuid::now_v7(),
            name: name.clone(),
            owner,
            created_at: now(),
        };
        let inserted = sqlx::query(
            "INSERT INTO pipelines (id, name, owner_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(pipeline.id.to_string())
        .bind(name.as_str())
        .bind(owner.to_string())
        .bind(micros(pipeline.created_at))
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(pipeline),
            Err(err) => Err(match violation(&err) {
                Some(ErrorKind::UniqueViolation) => {
                    StoreError::Conflict(format!("pipeline `{name}` already exists"))
                }
                Some(ErrorKind::ForeignKeyViolation) => {
                    StoreError::NotFound(format!("user `{owner}` not found"))
                }
                _ => err.into(),
            }),
        }
    }

    pub async fn pipeline(&self, name: &PipelineName) -> Result<Option<Pipeline>> {
        sqlx::query("SELECT id, name, owner_id, created_at FROM pipelines WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?
            .map(|row| pipeline_from_row(&row))
            .transpose()
    }

    /// Every pipeline, by name.
    pub async fn pipelines(&self) -> Result<Vec<Pipeline>> {
        sqlx::query("SELECT id, name, owner_id, created_at FROM pipelines ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(pipeline_from_row)
            .collect()
    }

    /// Deletes the pipeline; its apps leave it and keep running. NotFound when it is gone.
    pub async fn delete_pipeline(&self, id: Uuid) -> Result<()> {
        let deleted = sqlx::query("DELETE FROM pipelines WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("pipeline `{id}` not found")));
        }
        Ok(())
    }

    /// The apps of a pipeline: staging first, then production, each by name.
    pub async fn pipeline_apps(&self, pipeline_id: Uuid) -> Result<Vec<PipelineMember>> {
        sqlx::query(
            "SELECT m.app_id, a.name, m.stage FROM pipeline_apps m \
             JOIN apps a ON a.id = m.app_id WHERE m.pipeline_id = $1 \
             ORDER BY m.stage = 'production', a.name",
        )
        .bind(pipeline_id.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(member_from_row)
        .collect()
    }

    /// Puts an app in a pipeline at a stage. Conflict naming the pipeline when the app is in
    /// one already (this one included: changing stage is a remove and an add); NotFound when
    /// the pipeline or the app is gone.
    pub async fn add_pipeline_app(
        &self,
        pipeline_id: Uuid,
        app_id: Uuid,
        stage: Stage,
    ) -> Result<()> {
        let inserted = sqlx::query(
            "INSERT INTO pipeline_apps (app_id, pipeline_id, stage, added_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(app_id.to_string())
        .bind(pipeline_id.to_string())
        .bind(stage.as_str())
        .bind(micros(now()))
        .execute(&self.pool)
        .await;
        let Err(err) = inserted else {
            return Ok(());
        };
        match violation(&err) {
            Some(ErrorKind::UniqueViolation) => {
                let (pipeline, stage) = self.app_pipeline(app_id).await?.ok_or_else(|| {
                    StoreError::Conflict("the app is already in a pipeline".to_owned())
                })?;
                Err(StoreError::Conflict(format!(
                    "the app is already in pipeline `{}` as a {stage} app",
                    pipeline.name
                )))
            }
            Some(ErrorKind::ForeignKeyViolation) => Err(StoreError::NotFound(format!(
                "pipeline `{pipeline_id}` or app `{app_id}` not found"
            ))),
            _ => Err(err.into()),
        }
    }

    /// Takes an app out of its pipeline. NotFound when it is in none.
    pub async fn remove_pipeline_app(&self, app_id: Uuid) -> Result<()> {
        let deleted = sqlx::query("DELETE FROM pipeline_apps WHERE app_id = $1")
            .bind(app_id.to_string())
            .execute(&self.pool)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "app `{app_id}` is not in a pipeline"
            )));
        }
        Ok(())
    }

    /// The pipeline an app is in, with its stage there.
    pub async fn app_pipeline(&self, app_id: Uuid) -> Result<Option<(Pipeline, Stage)>> {
        let Some(row) = sqlx::query(
            "SELECT p.id, p.name, p.owner_id, p.created_at, m.stage FROM pipeline_apps m \
             JOIN pipelines p ON p.id = m.pipeline_id WHERE m.app_id = $1",
        )
        .bind(app_id.to_string())
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let stage = Cols::new("pipeline_apps", &row).parse("stage", |s| s.parse().ok())?;
        Ok(Some((pipeline_from_row(&row)?, stage)))
    }
}

fn pipeline_from_row(row: &AnyRow) -> Result<Pipeline> {
    let cols = Cols::new("pipelines", row);
    Ok(Pipeline {
        id: cols.uuid("id")?,
        name: cols.parse("name", |s| s.parse().ok())?,
        owner: cols.uuid("owner_id")?,
        created_at: cols.time("created_at")?,
    })
}

fn member_from_row(row: &AnyRow) -> Result<PipelineMember> {
    let cols = Cols::new("pipeline_apps", row);
    Ok(PipelineMember {
        app_id: cols.uuid("app_id")?,
        app: cols.parse("name", |s| s.parse().ok())?,
        stage: cols.parse("stage", |s| s.parse().ok())?,
    })
}
