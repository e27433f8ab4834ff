//! Builds: one per push, with the output streamed to the pusher kept for `slipway builds`.

use semver::Version;
use slipway_types::api::BuildStatus;
use sqlx::any::AnyRow;
use sqlx::error::ErrorKind;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Store;
use crate::codec::{Cols, micros, now};
use crate::error::{Result, StoreError, violation};

macro_rules! build_columns {
    () => {
        "id, app_id, commit_sha, status, output, release_version, created_at, finished_at"
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub id: Uuid,
    pub app_id: Uuid,
    pub commit: String,
    pub status: BuildStatus,
    pub output: String,
    /// The release the build produced, when it succeeded.
    pub release_version: Option<Version>,
    pub created_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

impl Store {
    /// A pending build with no output yet. NotFound when the app does not exist.
    pub async fn create_build(&self, app_id: Uuid, commit: &str) -> Result<Build> {
        let build = Build {
            id: Uuid::now_v7(),
            app_id,
            commit: commit.to_owned(),
            status: BuildStatus::Pending,
            output: String::new(),
            release_version: None,
            created_at: now(),
            finished_at: None,
        };
        let inserted = sqlx::query(
            "INSERT INTO builds (id, app_id, commit_sha, status, output, created_at) \
             VALUES ($1, $2, $3, $4, '', $5)",
        )
        .bind(build.id.to_string())
        .bind(app_id.to_string())
        .bind(commit)
        .bind(build.status.as_str())
        .bind(micros(build.created_at))
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(build),
            Err(err) if violation(&err) == Some(ErrorKind::ForeignKeyViolation) => {
                Err(StoreError::NotFound(format!("app `{app_id}` not found")))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Appends to the build's output as it streams, so a build cut short by a crash still
    /// shows how far it got.
    pub async fn append_build_output(&self, id: Uuid, text: &str) -> Result<()> {
        let updated = sqlx::query("UPDATE builds SET output = output || $1 WHERE id = $2")
            .bind(text)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("build `{id}` not found")));
        }
        Ok(())
    }

    /// Records the outcome and the finish time; `release_version` is the release it produced.
    pub async fn finish_build(
        &self,
        id: Uuid,
        status: BuildStatus,
        release_version: Option<&Version>,
    ) -> Result<()> {
        let updated = sqlx::query(
            "UPDATE builds SET status = $1, release_version = $2, finished_at = $3 WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(release_version.map(Version::to_string))
        .bind(micros(now()))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("build `{id}` not found")));
        }
        Ok(())
    }

    /// The app's builds, newest first.
    pub async fn builds(&self, app_id: Uuid) -> Result<Vec<Build>> {
        sqlx::query(concat!(
            "SELECT ",
            build_columns!(),
            " FROM builds WHERE app_id = $1 ORDER BY created_at DESC, id DESC"
        ))
        .bind(app_id.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(build_from_row)
        .collect()
    }

    /// The build with this id, if it belongs to this app.
    pub async fn build(&self, app_id: Uuid, id: Uuid) -> Result<Option<Build>> {
        sqlx::query(concat!(
            "SELECT ",
            build_columns!(),
            " FROM builds WHERE id = $1 AND app_id = $2"
        ))
        .bind(id.to_string())
        .bind(app_id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .map(|row| build_from_row(&row))
        .transpose()
    }

    /// Marks failed every build still pending, appending `note` as a line of its output, and
    /// returns how many there were. Called at start: a pending build then was cut off by a
    /// crash or a restart and nobody is running it any more.
    pub async fn fail_unfinished_builds(&self, note: &str) -> Result<u64> {
        let updated = sqlx::query(
            "UPDATE builds SET status = $1, finished_at = $2, \
             output = output || CASE WHEN output = '' OR output LIKE $3 THEN '' ELSE $4 END || $5 \
             WHERE status = $6",
        )
        .bind(BuildStatus::Failed.as_str())
        .bind(micros(now()))
        .bind("%\n")
        .bind("\n")
        .bind(format!("{note}\n"))
        .bind(BuildStatus::Pending.as_str())
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected())
    }
}

fn build_from_row(row: &AnyRow) -> Result<Build> {
    let cols = Cols::new("builds", row);
    Ok(Build {
        id: cols.uuid("id")?,
        app_id: cols.uuid("app_id")?,
        commit: cols.text("commit_sha")?,
        status: cols.parse("status", BuildStatus::parse)?,
        output: cols.text("output")?,
        release_version: cols.opt_parse("release_version", |s| Version::parse(s).ok())?,
        created_at: cols.time("created_at")?,
        finished_at: cols.opt_time("finished_at")?,
    })
}
