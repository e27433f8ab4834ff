//! The per-app metrics time series: one row per app per bucket. Writes merge into what is
//! stored, so the long buckets are rolled up as the short ones close, and two servers that
//! both count a minute (during a restart by socket handover) add up rather than overwrite.

use slipway_types::metrics::{LatencyHistogram, MetricBucket, ProcessUsage};
use sqlx::any::AnyRow;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Store;
use crate::codec::{Cols, micros, to_json};
use crate::error::Result;

macro_rules! bucket_columns {
    () => {
        "app_id, width_secs, at, requests_1xx, requests_2xx, requests_3xx, requests_4xx, \
         requests_5xx, response_bytes, latency, processes, restarts"
    };
}

impl Store {
    /// Merges each `(app, bucket)` into the stored bucket of the same app, width and start
    /// (see [`MetricBucket::merge`]), or stores it. Buckets of apps deleted meanwhile are
    /// dropped.
    pub async fn add_metric_buckets(&self, buckets: &[(Uuid, MetricBucket)]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for (app_id, bucket) in buckets {
            let stored = sqlx::query(concat!(
                "SELECT ",
                bucket_columns!(),
                " FROM metric_buckets WHERE app_id = $1 AND width_secs = $2 AND at = $3"
            ))
            .bind(app_id.to_string())
            .bind(i64::from(bucket.width_secs))
            .bind(micros(bucket.at))
            .fetch_optional(&mut *tx)
            .await?;
            let merged = match stored {
                Some(row) => {
                    let (_, mut merged) = bucket_from_row(&row)?;
                    merged.merge(bucket);
                    merged
                }
                None => bucket.clone(),
            };
            // An app deleted since the bucket was counted gets no row: a failed insert would
            // abort a PostgreSQL transaction and lose the other apps' buckets.
            sqlx::query(concat!(
                "INSERT INTO metric_buckets (",
                bucket_columns!(),
                ") SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 \
                 WHERE EXISTS (SELECT 1 FROM apps WHERE id = $1) \
                 ON CONFLICT (app_id, width_secs, at) DO UPDATE SET \
                 requests_1xx = excluded.requests_1xx, requests_2xx = excluded.requests_2xx, \
                 requests_3xx = excluded.requests_3xx, requests_4xx = excluded.requests_4xx, \
                 requests_5xx = excluded.requests_5xx, response_bytes = excluded.response_bytes, \
                 latency = excluded.latency, processes = excluded.processes, \
                 restarts = excluded.restarts"
            ))
            .bind(app_id.to_string())
            .bind(i64::from(merged.width_secs))
            .bind(micros(merged.at))
            .bind(count(merged.requests[0]))
            .bind(count(merged.requests[1]))
            .bind(count(merged.requests[2]))
            .bind(count(merged.requests[3]))
            .bind(count(merged.requests[4]))
            .bind(count(merged.response_bytes))
            .bind(to_json(&merged.latency.sparse(), "a latency histogram")?)
            .bind(to_json(
                &stored_processes(&merged.processes),
                "process usage",
            )?)
            .bind(i64::from(merged.restarts))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Buckets of `width_secs` starting at or after `since`, oldest first: the app's, or every
    /// app's when `app_id` is `None`.
    pub async fn metric_buckets(
        &self,
        app_id: Option<Uuid>,
        width_secs: u32,
        since: OffsetDateTime,
    ) -> Result<Vec<(Uuid, MetricBucket)>> {
        let rows =
            match app_id {
                Some(app_id) => {
                    sqlx::query(concat!(
                        "SELECT ",
                        bucket_columns!(),
                        " FROM metric_buckets WHERE app_id = $1 AND width_secs = $2 AND at >= $3 \
                     ORDER BY at"
                    ))
                    .bind(app_id.to_string())
                    .bind(i64::from(width_secs))
                    .bind(micros(since))
                    .fetch_all(&self.pool)
                    .await?
                }
                None => sqlx::query(concat!(
                    "SELECT ",
                    bucket_columns!(),
                    " FROM metric_buckets WHERE width_secs = $1 AND at >= $2 ORDER BY at, app_id"
                ))
                .bind(i64::from(width_secs))
                .bind(micros(since))
                .fetch_all(&self.pool)
                .await?,
            };
        rows.iter().map(bucket_from_row).collect()
    }

    /// Deletes every app's buckets of `width_secs` that start before `before`; returns how
    /// many went.
    pub async fn prune_metric_buckets(
        &self,
        width_secs: u32,
        before: OffsetDateTime,
    ) -> Result<u64> {
        let deleted = sqlx::query("DELETE FROM metric_buckets WHERE width_secs = $1 AND at < $2")
            .bind(i64::from(width_secs))
            .bind(micros(before))
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected())
    }
}

/// A process's usage as stored: `[dyno, cpu, memory, limit]`, without field names, since a
/// day of minutes repeats it 1440 times per process.
type StoredProcess = (String, f64, u64, Option<u64>);

/// CPU is kept to a hundredth of a percent: more digits would only take room.
fn stored_processes(processes: &[ProcessUsage]) -> Vec<StoredProcess> {
    processes
        .iter()
        .map(|p| {
            (
                p.dyno.clone(),
                (p.cpu_percent * 100.0).round() / 100.0,
                p.memory_bytes,
                p.memory_limit_bytes,
            )
        })
        .collect()
}

/// Counts are `u64` in memory and signed in SQL; no count gets near the difference.
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn bucket_from_row(row: &AnyRow) -> Result<(Uuid, MetricBucket)> {
    let cols = Cols::new("metric_buckets", row);
    let unsigned = |col: &str| cols.parse_int(col, |n| u64::try_from(n).ok());
    let latency: Vec<(usize, u64)> = cols.json("latency")?;
    let processes: Vec<StoredProcess> = cols.json("processes")?;
    let bucket = MetricBucket {
        at: cols.time("at")?,
        width_secs: cols.parse_int("width_secs", |n| u32::try_from(n).ok())?,
        requests: [
            unsigned("requests_1xx")?,
            unsigned("requests_2xx")?,
            unsigned("requests_3xx")?,
            unsigned("requests_4xx")?,
            unsigned("requests_5xx")?,
        ],
        response_bytes: unsigned("response_bytes")?,
        latency: LatencyHistogram::from_sparse(&latency),
        processes: processes
            .into_iter()
            .map(
                |(dyno, cpu_percent, memory_bytes, memory_limit_bytes)| ProcessUsage {
                    dyno,
                    cpu_percent,
                    memory_bytes,
                    memory_limit_bytes,
                },
            )
            .collect(),
        restarts: cols.parse_int("restarts", |n| u32::try_from(n).ok())?,
    };
    Ok((cols.uuid("app_id")?, bucket))
}
