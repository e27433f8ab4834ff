//! Per-app time series: what the server keeps for each app per time bucket, as served by
//! `GET /v1/apps/{app}/metrics` and handed to in-process consumers (alerts) at every bucket
//! close.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One app's figures over one bucket of time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsPoint {
    /// Start of the bucket.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Length of the bucket: the minute series and the hour series differ, and tests shorten it.
    pub width_secs: u32,
    /// Requests the router finished in the bucket, by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub requests: [u64; 5],
    /// Response body bytes sent to clients.
    pub response_bytes: u64,
    /// Time the app took to answer, over the bucket's requests; `None` when none reached it.
    pub latency_ms: Option<Percentiles>,
    /// CPU and memory of each running process, sampled once per bucket (the hour series keeps
    /// each process's peak).
    pub processes: Vec<ProcessUsage>,
    /// Process containers the reconciler found exited and replaced during the bucket.
    pub restarts: u32,
}

impl MetricsPoint {
    /// An empty bucket starting at `at`.
    pub fn empty(at: OffsetDateTime, width_secs: u32) -> Self {
        Self {
            at,
            width_secs,
            requests: [0; 5],
            response_bytes: 0,
            latency_ms: None,
            processes: Vec::new(),
            restarts: 0,
        }
    }

    /// Every request of the bucket, whatever its status.
    pub fn total_requests(&self) -> u64 {
        self.requests.iter().sum()
    }

    /// Memory of every process together.
    pub fn memory_bytes(&self) -> u64 {
        self.processes.iter().map(|p| p.memory_bytes).sum()
    }

    /// CPU of every process together, in percent of one core.
    pub fn cpu_percent(&self) -> f64 {
        self.processes.iter().map(|p| p.cpu_percent).sum()
    }
}

/// One app's bucket as the server keeps it: the latencies as a histogram rather than
/// percentiles, so buckets merge exactly (the minutes of an hour into the hour, two servers'
/// counts of the same minute during a restart, every app into the platform's figures).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricBucket {
    pub at: OffsetDateTime,
    pub width_secs: u32,
    pub requests: [u64; 5],
    pub response_bytes: u64,
    pub latency: LatencyHistogram,
    pub processes: Vec<ProcessUsage>,
    pub restarts: u32,
}

impl MetricBucket {
    pub fn empty(at: OffsetDateTime, width_secs: u32) -> Self {
        Self {
            at,
            width_secs,
            requests: [0; 5],
            response_bytes: 0,
            latency: LatencyHistogram::default(),
            processes: Vec::new(),
            restarts: 0,
        }
    }

    /// Adds `other`'s traffic and restarts to this bucket's. Processes keep their peak: each
    /// sample is a level, not a count, and a wider bucket shows the highest level it saw
    /// (what a memory limit cares about).
    pub fn merge(&mut self, other: &MetricBucket) {
        for (mine, theirs) in self.requests.iter_mut().zip(other.requests) {
            *mine = mine.saturating_add(theirs);
        }
        self.response_bytes = self.response_bytes.saturating_add(other.response_bytes);
        self.latency.add(&other.latency);
        self.restarts = self.restarts.saturating_add(other.restarts);
        for usage in &other.processes {
            match self
                .processes
                .iter_mut()
                .find(|mine| mine.dyno == usage.dyno)
            {
                Some(mine) => {
                    mine.cpu_percent = mine.cpu_percent.max(usage.cpu_percent);
                    mine.memory_bytes = mine.memory_bytes.max(usage.memory_bytes);
                    mine.memory_limit_bytes = usage.memory_limit_bytes.or(mine.memory_limit_bytes);
                }
                None => self.processes.push(usage.clone()),
            }
        }
        self.processes.sort_by(|a, b| a.dyno.cmp(&b.dyno));
    }

    /// The bucket as the API shows it, with percentiles.
    pub fn point(&self) -> MetricsPoint {
        MetricsPoint {
            at: self.at,
            width_secs: self.width_secs,
            requests: self.requests,
            response_bytes: self.response_bytes,
            latency_ms: self.latency.percentiles(),
            processes: self.processes.clone(),
            restarts: self.restarts,
        }
    }
}

/// Latency percentiles in milliseconds. They come from fixed histogram buckets, so each is the
/// upper bound of the bucket the percentile falls in: never lower than the truth, at most one
/// bucket step (×2) higher.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// One process's resource use, from the container engine's statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessUsage {
    /// `web.1`, `worker.2`…
    pub dyno: String,
    /// Percent of one CPU core: 250 means two and a half cores busy.
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    /// The container's memory limit, when it has one.
    pub memory_limit_bytes: Option<u64>,
}

/// A release that went live, drawn on graphs as a vertical marker at the time it was made
/// (its build done, seconds before it took traffic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployMarker {
    pub version: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// `GET /v1/apps/{app}/metrics`: the app's buckets since the requested time, oldest first
/// (minute buckets when they reach back that far, else hour buckets), and the releases made
/// in that time that went live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppMetrics {
    pub app: String,
    pub points: Vec<MetricsPoint>,
    pub deploys: Vec<DeployMarker>,
}

/// `GET /v1/admin/metrics`: the platform's own figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlatformMetrics {
    /// The router's buckets added up over every app, oldest first; processes are left empty.
    pub router: Vec<MetricsPoint>,
    /// Builds running now.
    pub builds_running: usize,
    /// The data dir's file system.
    pub disk: Option<DiskUsage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUsage {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

/// How many buckets a [`LatencyHistogram`] has: four per power of two of microseconds, up to
/// 2^30 µs (about 18 minutes); slower requests count in the last bucket.
pub const LATENCY_BUCKETS: usize = 116;

/// Request latencies counted in fixed log-scale buckets. Counting is one array index and one
/// add, so the router can afford it per request; histograms of different buckets, apps or
/// servers merge by adding, so percentiles over an hour or over the platform come out of the
/// same counts. Each bucket is at most a quarter wider than its lower bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram(pub [u64; LATENCY_BUCKETS]);

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self([0; LATENCY_BUCKETS])
    }
}

impl LatencyHistogram {
    /// The bucket of a latency: values below 4 µs have a bucket each, then every power of two
    /// is split in four by the two bits after the leading one.
    pub fn bucket(micros: u64) -> usize {
        if micros < 4 {
            return usize::try_from(micros).unwrap_or(0);
        }
        let exponent = 63 - micros.leading_zeros();
        let mantissa = (micros >> (exponent - 2)) & 3;
        let index =
            usize::try_from((u64::from(exponent - 1) << 2) | mantissa).unwrap_or(usize::MAX);
        index.min(LATENCY_BUCKETS - 1)
    }

    /// The largest latency, in microseconds, that counts in `bucket`.
    pub fn upper_bound_micros(bucket: usize) -> u64 {
        if bucket < 4 {
            return bucket as u64;
        }
        let exponent = (bucket >> 2) + 1;
        let mantissa = (bucket & 3) as u64;
        ((5 + mantissa) << (exponent - 2)) - 1
    }

    pub fn record(&mut self, micros: u64) {
        self.0[Self::bucket(micros)] += 1;
    }

    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    pub fn add(&mut self, other: &LatencyHistogram) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0.iter()) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    /// The counts that `self` has more than `earlier`: the requests between two readings of
    /// a running total. A counter that went backwards (the router's totals started again)
    /// gives its whole new value.
    pub fn since(&self, earlier: &LatencyHistogram) -> LatencyHistogram {
        let mut delta = LatencyHistogram::default();
        for ((out, now), before) in delta.0.iter_mut().zip(self.0.iter()).zip(earlier.0.iter()) {
            *out = now.checked_sub(*before).unwrap_or(*now);
        }
        delta
    }

    /// The upper bound, in milliseconds, of the bucket holding the `quantile` (0 to 1) of the
    /// counted latencies; `None` when nothing was counted.
    pub fn quantile_ms(&self, quantile: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        // The rank of the wanted value, 1-based: p99 of 100 values is the 99th.
        let rank = ((quantile * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (bucket, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Self::upper_bound_micros(bucket) as f64 / 1000.0);
            }
        }
        None
    }

    pub fn percentiles(&self) -> Option<Percentiles> {
        Some(Percentiles {
            p50: self.quantile_ms(0.50)?,
            p95: self.quantile_ms(0.95)?,
            p99: self.quantile_ms(0.99)?,
        })
    }

    /// The non-empty buckets as `(bucket, count)` pairs: most of the 116 are empty, so this is
    /// the form that is stored.
    pub fn sparse(&self) -> Vec<(usize, u64)> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(bucket, n)| (bucket, *n))
            .collect()
    }

    /// The histogram of [`LatencyHistogram::sparse`] pairs; buckets out of range count in the
    /// last one.
    pub fn from_sparse(pairs: &[(usize, u64)]) -> Self {
        let mut histogram = Self::default();
        for (bucket, n) in pairs {
            let slot = &mut histogram.0[(*bucket).min(LATENCY_BUCKETS - 1)];
            *slot = slot.saturating_add(*n);
        }
        histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_latency_falls_in_the_bucket_whose_bounds_hold_it() {
        let mut micros = 0u64;
        while micros < 1 << 30 {
            let bucket = LatencyHistogram::bucket(micros);
            assert!(
                micros <= LatencyHistogram::upper_bound_micros(bucket),
                "{micros}"
            );
            if bucket > 0 {
                assert!(
                    micros > LatencyHistogram::upper_bound_micros(bucket - 1),
                    "{micros}"
                );
            }
            micros = micros * 9 / 8 + 1;
        }
        assert_eq!(LatencyHistogram::bucket(u64::MAX), LATENCY_BUCKETS - 1);
    }

    #[test]
    fn buckets_are_at_most_a_quarter_wide() {
        for bucket in 8..LATENCY_BUCKETS {
            let low = LatencyHistogram::upper_bound_micros(bucket - 1) + 1;
            let high = LatencyHistogram::upper_bound_micros(bucket);
            assert!(
                (high - low) as f64 <= low as f64 / 4.0,
                "bucket {bucket}: {low}..{high}"
            );
        }
    }

    #[test]
    fn percentiles_come_from_the_bucket_that_holds_the_rank() {
        let mut histogram = LatencyHistogram::default();
        for _ in 0..90 {
            histogram.record(10_000);
        }
        for _ in 0..9 {
            histogram.record(100_000);
        }
        histogram.record(1_000_000);
        let p = histogram.percentiles().expect("requests were counted");
        let bound = |micros| LatencyHistogram::upper_bound_micros(LatencyHistogram::bucket(micros));
        assert_eq!(p.p50, bound(10_000) as f64 / 1000.0);
        assert_eq!(p.p95, bound(100_000) as f64 / 1000.0);
        assert_eq!(p.p99, bound(100_000) as f64 / 1000.0);
        assert_eq!(
            histogram.quantile_ms(1.0),
            Some(bound(1_000_000) as f64 / 1000.0)
        );
        assert!(p.p50 >= 10.0 && p.p50 < 12.5, "{}", p.p50);
        assert_eq!(LatencyHistogram::default().percentiles(), None);
    }

    fn usage(dyno: &str, memory_bytes: u64) -> ProcessUsage {
        ProcessUsage {
            dyno: dyno.to_owned(),
            cpu_percent: memory_bytes as f64 / 1000.0,
            memory_bytes,
            memory_limit_bytes: Some(1000),
        }
    }

    #[test]
    fn merged_buckets_add_traffic_and_keep_each_process_peak() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let mut hour = MetricBucket::empty(at, 3600);
        let mut minute = MetricBucket::empty(at, 60);
        minute.requests = [0, 10, 0, 2, 1];
        minute.response_bytes = 500;
        minute.latency.record(2_000);
        minute.restarts = 1;
        minute.processes = vec![usage("web.1", 300), usage("web.2", 100)];
        hour.merge(&minute);
        let mut next = MetricBucket::empty(at + time::Duration::minutes(1), 60);
        next.requests = [0, 5, 0, 0, 4];
        next.latency.record(9_000);
        next.processes = vec![usage("web.1", 200), usage("worker.1", 50)];
        hour.merge(&next);

        assert_eq!(hour.requests, [0, 15, 0, 2, 5]);
        assert_eq!(hour.response_bytes, 500);
        assert_eq!(hour.restarts, 1);
        assert_eq!(hour.latency.count(), 2);
        let peaks: Vec<(&str, u64)> = hour
            .processes
            .iter()
            .map(|p| (p.dyno.as_str(), p.memory_bytes))
            .collect();
        assert_eq!(peaks, [("web.1", 300), ("web.2", 100), ("worker.1", 50)]);
        let point = hour.point();
        assert_eq!((point.at, point.width_secs), (at, 3600));
        assert_eq!(point.total_requests(), 22);
        assert_eq!(point.memory_bytes(), 450);
        assert!(point.latency_ms.expect("latencies").p99 >= 9.0);
    }

    #[test]
    fn histograms_merge_by_adding_and_subtract_to_deltas() {
        let mut early = LatencyHistogram::default();
        early.record(500);
        let mut late = early.clone();
        late.record(500);
        late.record(70_000);
        let delta = late.since(&early);
        assert_eq!(delta.count(), 2);
        let mut merged = early.clone();
        merged.add(&delta);
        assert_eq!(merged, late);
        assert_eq!(LatencyHistogram::from_sparse(&late.sparse()), late);
        assert_eq!(
            early.since(&late).count(),
            1,
            "a restarted total counts whole"
        );
    }
}
