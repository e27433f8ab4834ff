//! Canary policies, the canary running for an app, and per-app rate limits.

use slipway_types::canary::CanaryPolicy;
use slipway_types::{AppName, RateLimit, RatePeriod};
use sqlx::any::AnyRow;
use sqlx::error::ErrorKind;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Store;
use crate::codec::{Cols, micros};
use crate::error::{Result, StoreError, violation};

/// A canary serving now: its release and the policy it started under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningCanary {
    pub app_id: Uuid,
    pub release_id: Uuid,
    pub policy: CanaryPolicy,
    pub started_at: OffsetDateTime,
}

macro_rules! policy_columns {
    () => {
        "percent, duration_secs, max_error_basis_points, max_p99_ms, sticky"
    };
}

impl Store {
    /// The policy for the app's next code release, if one is set.
    pub async fn canary_policy(&self, app_id: Uuid) -> Result<Option<CanaryPolicy>> {
        sqlx::query(concat!(
            "SELECT ",
            policy_columns!(),
            " FROM canary_policies WHERE app_id = $1"
        ))
        .bind(app_id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .map(|row| policy_from_row(&Cols::new("canary_policies", &row)))
        .transpose()
    }

    /// NotFound when the app does not exist.
    pub async fn set_canary_policy(&self, app_id: Uuid, policy: &CanaryPolicy) -> Result<()> {
        sqlx::query(concat!(
            "INSERT INTO canary_policies (app_id, ",
            policy_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (app_id) DO UPDATE SET percent = excluded.percent, \
             duration_secs = excluded.duration_secs, \
             max_error_basis_points = excluded.max_error_basis_points, \
             max_p99_ms = excluded.max_p99_ms, sticky = excluded.sticky"
        ))
        .bind(app_id.to_string())
        .bind(i64::from(policy.percent))
        .bind(i64::try_from(policy.duration_secs).unwrap_or(i64::MAX))
        .bind(i64::from(policy.max_error_basis_points))
        .bind(policy.max_p99_ms.map(i64::from))
        .bind(i64::from(policy.sticky))
        .execute(&self.pool)
        .await
        .map_err(|err| app_error(err, app_id))?;
        Ok(())
    }

    /// Whether there was a policy to clear.
    pub async fn clear_canary_policy(&self, app_id: Uuid) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM canary_policies WHERE app_id = $1")
            .bind(app_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// Records the canary the app now runs. Conflict when one already runs.
    pub async fn start_canary(&self, canary: &RunningCanary) -> Result<()> {
        let policy = &canary.policy;
        let inserted = sqlx::query(concat!(
            "INSERT INTO canaries (app_id, release_id, ",
            policy_columns!(),
            ", started_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(canary.app_id.to_string())
        .bind(canary.release_id.to_string())
        .bind(i64::from(policy.percent))
        .bind(i64::try_from(policy.duration_secs).unwrap_or(i64::MAX))
        .bind(i64::from(policy.max_error_basis_points))
        .bind(policy.max_p99_ms.map(i64::from))
        .bind(i64::from(policy.sticky))
        .bind(micros(canary.started_at))
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(err) => Err(match violation(&err) {
                Some(ErrorKind::UniqueViolation) => {
                    StoreError::Conflict(format!("app `{}` already runs a canary", canary.app_id))
                }
                _ => app_error(err, canary.app_id),
            }),
        }
    }

    /// The canary the app runs, if any.
    pub async fn running_canary(&self, app_id: Uuid) -> Result<Option<RunningCanary>> {
        sqlx::query(concat!(
            "SELECT app_id, release_id, ",
            policy_columns!(),
            ", started_at FROM canaries \
             WHERE app_id = $1"
        ))
        .bind(app_id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .map(|row| canary_from_row(&row))
        .transpose()
    }

    /// Every running canary: after a restart, what to clean up.
    pub async fn running_canaries(&self) -> Result<Vec<RunningCanary>> {
        sqlx::query(concat!(
            "SELECT app_id, release_id, ",
            policy_columns!(),
            ", started_at FROM canaries \
             ORDER BY started_at"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(canary_from_row)
        .collect()
    }

    /// Forgets the app's canary (promoted, rolled back or aborted).
    pub async fn end_canary(&self, app_id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM canaries WHERE app_id = $1")
            .bind(app_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn rate_limit(&self, app_id: Uuid) -> Result<Option<RateLimit>> {
        sqlx::query("SELECT requests, period, burst FROM rate_limits WHERE app_id = $1")
            .bind(app_id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(|row| rate_limit_from_row(&Cols::new("rate_limits", &row)))
            .transpose()
    }

    /// NotFound when the app does not exist.
    pub async fn set_rate_limit(&self, app_id: Uuid, limit: &RateLimit) -> Result<()> {
        sqlx::query(
            "INSERT INTO rate_limits (app_id, requests, period, burst) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (app_id) DO UPDATE SET requests = excluded.requests, \
             period = excluded.period, burst = excluded.burst",
        )
        .bind(app_id.to_string())
        .bind(i64::from(limit.requests))
        .bind(period_name(limit.period))
        .bind(i64::from(limit.burst))
        .execute(&self.pool)
        .await
        .map_err(|err| app_error(err, app_id))?;
        Ok(())
    }

    /// Whether there was a limit to clear.
    pub async fn clear_rate_limit(&self, app_id: Uuid) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM rate_limits WHERE app_id = $1")
            .bind(app_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// Every app's rate limit, for the route table.
    pub async fn rate_limits(&self) -> Result<Vec<(AppName, RateLimit)>> {
        sqlx::query(
            "SELECT apps.name, rate_limits.requests, rate_limits.period, rate_limits.burst \
             FROM rate_limits JOIN apps ON apps.id = rate_limits.app_id ORDER BY apps.name",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            let cols = Cols::new("rate_limits", row);
            Ok((
                cols.parse("name", |s| s.parse().ok())?,
                rate_limit_from_row(&cols)?,
            ))
        })
        .collect()
    }
}

fn period_name(period: RatePeriod) -> &'static str {
    match period {
        RatePeriod::Second => "second",
        RatePeriod::Minute => "minute",
    }
}

fn rate_limit_from_row(cols: &Cols<'_>) -> Result<RateLimit> {
    Ok(RateLimit {
        requests: cols.parse_int("requests", |n| u32::try_from(n).ok())?,
        period: cols.parse("period", |s| match s {
            "second" => Some(RatePeriod::Second),
            "minute" => Some(RatePeriod::Minute),
            _ => None,
        })?,
        burst: cols.parse_int("burst", |n| u32::try_from(n).ok())?,
    })
}

fn policy_from_row(cols: &Cols<'_>) -> Result<CanaryPolicy> {
    Ok(CanaryPolicy {
        percent: cols.parse_int("percent", |n| u8::try_from(n).ok())?,
        duration_secs: cols.parse_int("duration_secs", |n| u64::try_from(n).ok())?,
        max_error_basis_points: cols
            .parse_int("max_error_basis_points", |n| u32::try_from(n).ok())?,
        max_p99_ms: cols
            .opt_int("max_p99_ms")?
            .map(|n| {
                u32::try_from(n).map_err(|_| {
                    StoreError::Corrupt(format!("the store's `max_p99_ms` holds `{n}`"))
                })
            })
            .transpose()?,
        sticky: cols.int("sticky")? != 0,
    })
}

fn canary_from_row(row: &AnyRow) -> Result<RunningCanary> {
    let cols = Cols::new("canaries", row);
    Ok(RunningCanary {
        app_id: cols.uuid("app_id")?,
        release_id: cols.uuid("release_id")?,
        policy: policy_from_row(&cols)?,
        started_at: cols.time("started_at")?,
    })
}

fn app_error(err: sqlx::Error, app_id: Uuid) -> StoreError {
    match violation(&err) {
        Some(ErrorKind::ForeignKeyViolation) => {
            StoreError::NotFound(format!("app `{app_id}` not found"))
        }
        _ => err.into(),
    }
}
