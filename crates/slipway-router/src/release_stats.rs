//! Per-release request counters for sites running a canary: how many requests each side
//! answered, how many failed, and a coarse latency histogram. The control plane reads them
//! (`Router::release_counts`) to judge a canary by what clients actually got.
//!
//! A request counts as failed when its answer was a 5xx or when no answer came (the
//! connection to the backend failed or timed out): either way the release did not serve it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in milliseconds; a last bucket holds everything
/// slower. Percentiles are reported as the bound of the bucket they fall in.
const BOUNDS_MS: [u64; 17] = [
    1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 10_000,
];
const BUCKETS: usize = BOUNDS_MS.len() + 1;

#[derive(Default)]
pub(crate) struct ReleaseStats {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl ReleaseStats {
    /// One finished request: its status (`None` when no answer came) and how long it took,
    /// from picking the backend to the end of the response.
    pub(crate) fn record(&self, status: Option<u16>, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status.is_none_or(|status| status >= 500) {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let millis = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_MS
            .iter()
            .position(|bound| millis <= *bound)
            .unwrap_or(BUCKETS - 1);
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn counts(&self) -> ReleaseCounts {
        ReleaseCounts {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            latency: std::array::from_fn(|i| self.latency[i].load(Ordering::Relaxed)),
        }
    }
}

/// A reading of one release's counters; subtract an earlier reading with
/// [`ReleaseCounts::since`] to judge a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReleaseCounts {
    pub requests: u64,
    /// Answered 5xx, or not answered at all.
    pub errors: u64,
    latency: [u64; BUCKETS],
}

impl ReleaseCounts {
    /// What happened between `earlier` and this reading. A reading of counters that were
    /// dropped and made anew in between counts from zero rather than going negative.
    pub fn since(&self, earlier: &ReleaseCounts) -> ReleaseCounts {
        if self.requests < earlier.requests {
            return *self;
        }
        ReleaseCounts {
            requests: self.requests - earlier.requests,
            errors: self.errors.saturating_sub(earlier.errors),
            latency: std::array::from_fn(|i| self.latency[i].saturating_sub(earlier.latency[i])),
        }
    }

    /// Failed requests as a percentage of all; 0 with no request.
    pub fn error_percent(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        #[expect(
            clippy::cast_precision_loss,
            reason = "a percentage needs no exact count"
        )]
        let percent = self.errors as f64 * 100.0 / self.requests as f64;
        percent
    }

    /// The 99th percentile latency, as the upper bound of its bucket (`None` with no request,
    /// or when it is beyond the last bound).
    pub fn p99(&self) -> Option<Duration> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = total - total / 100;
        let mut seen = 0;
        for (bucket, count) in self.latency.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return BOUNDS_MS.get(bucket).map(|ms| Duration::from_millis(*ms));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_and_latency_are_counted_and_windowed() {
        let stats = ReleaseStats::default();
        for _ in 0..90 {
            stats.record(Some(200), Duration::from_millis(4));
        }
        let before = stats.counts();
        for _ in 0..95 {
            stats.record(Some(200), Duration::from_millis(15));
        }
        stats.record(Some(503), Duration::from_millis(15));
        stats.record(None, Duration::from_millis(15));
        for _ in 0..3 {
            stats.record(Some(404), Duration::from_millis(800));
        }
        let window = stats.counts().since(&before);
        assert_eq!(window.requests, 100);
        assert_eq!(window.errors, 2, "5xx and no answer count; 404 does not");
        assert!((window.error_percent() - 2.0).abs() < f64::EPSILON);
        assert_eq!(window.p99(), Some(Duration::from_millis(1_000)));
        assert_eq!(before.p99(), Some(Duration::from_millis(5)));
    }

    #[test]
    fn an_empty_window_has_no_rate_or_percentile() {
        let counts = ReleaseCounts::default();
        assert!(counts.error_percent().abs() < f64::EPSILON);
        assert_eq!(counts.p99(), None);
    }
}
