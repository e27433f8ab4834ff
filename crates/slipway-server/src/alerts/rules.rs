//! What each rule measures, and when an alert fires or recovers. Pure: the worker feeds it
//! measurements and applies the transitions.

use std::collections::VecDeque;

use slipway_types::alerts::{AlertRule, Threshold};
use slipway_types::metrics::MetricsPoint;
use time::{Duration, OffsetDateTime};

/// A rule's reading of one measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub breached: bool,
    /// What was measured, like `42.5%`.
    pub value: String,
    /// One line for the log and the webhook, saying what and against which threshold.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Fire,
    Recover,
}

/// The memory of one rule of one app: the bucket of its last transition. Whether the alert
/// is firing is kept in the store (it survives restarts); this only keeps a flapping measure
/// from firing and recovering within one bucket.
#[derive(Debug, Default)]
pub struct RuleState {
    changed_in: Option<i64>,
}

impl RuleState {
    /// The transition an observation about `bucket` causes, given whether the alert is firing:
    /// a breach fires it once, the first good reading after recovers it once, and a bucket
    /// sees at most one transition (nor does a late reading of an older bucket cause one).
    pub fn observe(&mut self, firing: bool, bucket: i64, breached: bool) -> Option<Transition> {
        if self.changed_in.is_some_and(|changed| bucket <= changed) {
            return None;
        }
        let transition = match (firing, breached) {
            (false, true) => Transition::Fire,
            (true, false) => Transition::Recover,
            _ => return None,
        };
        self.changed_in = Some(bucket);
        Some(transition)
    }
}

/// How a threshold-on-a-number rule reads a bucket of the time series; `None` when the bucket
/// says nothing about it (no request reached the app, no process has a memory limit).
pub fn observe_point(
    rule: AlertRule,
    threshold: Threshold,
    point: &MetricsPoint,
) -> Option<Observation> {
    match (rule, threshold) {
        (AlertRule::ErrorRate, Threshold::Percent(limit)) => {
            let total = point.total_requests();
            // A bucket without requests served no errors: an outage that ended recovers.
            let rate = if total == 0 {
                0.0
            } else {
                point.requests[4] as f64 * 100.0 / total as f64
            };
            Some(percent_observation(
                "5xx rate",
                rate,
                limit,
                &format!("{} of {total} requests", point.requests[4]),
            ))
        }
        (AlertRule::P99Latency, Threshold::Millis(limit)) => {
            let p99 = point.latency_ms?.p99;
            let breached = p99 >= limit as f64;
            let value = format!("{p99:.0}ms");
            Some(Observation {
                breached,
                message: format!(
                    "p99 latency {value} is {} {limit}ms",
                    if breached { "at or above" } else { "below" }
                ),
                value,
            })
        }
        (AlertRule::Memory, Threshold::Percent(limit)) => {
            let (dyno, used) = point
                .processes
                .iter()
                .filter_map(|process| {
                    let limit = process.memory_limit_bytes.filter(|l| *l > 0)?;
                    Some((
                        process.dyno.as_str(),
                        process.memory_bytes as f64 * 100.0 / limit as f64,
                    ))
                })
                .max_by(|a, b| a.1.total_cmp(&b.1))?;
            Some(percent_observation(
                "memory",
                used,
                limit,
                &format!("of the limit, in {dyno}"),
            ))
        }
        _ => None,
    }
}

fn percent_observation(what: &str, value: f64, limit: f64, detail: &str) -> Observation {
    let breached = value >= limit;
    let value = format!("{value:.1}%");
    Observation {
        breached,
        message: format!(
            "{what} {value} ({detail}) is {} {limit}%",
            if breached { "at or above" } else { "below" }
        ),
        value,
    }
}

/// Crash restarts of one app, kept as long as the longest window a rule may ask about.
#[derive(Debug, Default)]
pub struct Crashes {
    at: VecDeque<OffsetDateTime>,
}

impl Crashes {
    /// How far back crashes are remembered: the longest crash-loop window allowed.
    const KEEP: Duration = Duration::days(1);

    pub fn record(&mut self, at: OffsetDateTime) {
        self.at.push_back(at);
        self.forget_before(at - Self::KEEP);
    }

    pub fn forget_before(&mut self, cutoff: OffsetDateTime) {
        while self.at.front().is_some_and(|at| *at < cutoff) {
            self.at.pop_front();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// The crash-loop rule's reading at `now`: N restarts within the last M minutes.
    pub fn observe(&self, threshold: Threshold, now: OffsetDateTime) -> Option<Observation> {
        let Threshold::Restarts { count, minutes } = threshold else {
            return None;
        };
        let since = now - Duration::minutes(i64::from(minutes));
        let recent = self.at.iter().filter(|at| **at > since).count();
        let breached = recent >= count as usize;
        Some(Observation {
            breached,
            value: format!("{recent} restarts"),
            message: format!(
                "{recent} crash restarts in the last {minutes} minutes ({} {count})",
                if breached { "at or above" } else { "below" }
            ),
        })
    }
}

/// The certificate-expiry rule's reading: the soonest expiry among the app's certificates
/// (`(name, not_after)`), against a number of days.
pub fn observe_certs<'a>(
    threshold: Threshold,
    certs: impl IntoIterator<Item = (&'a str, OffsetDateTime)>,
    now: OffsetDateTime,
) -> Option<Observation> {
    let Threshold::Days(days) = threshold else {
        return None;
    };
    let Some((name, not_after)) = certs.into_iter().min_by_key(|(_, not_after)| *not_after) else {
        // No certificate left: nothing is expiring (a removed domain recovers the alert).
        return Some(Observation {
            breached: false,
            value: "no certificates".into(),
            message: "the app has no certificates".into(),
        });
    };
    let left = (not_after - now).whole_days();
    let breached = left < i64::from(days);
    Some(Observation {
        breached,
        value: format!("{left} days"),
        message: format!(
            "the certificate for {name} expires in {left} days ({} {days})",
            if breached {
                "fewer than"
            } else {
                "not fewer than"
            }
        ),
    })
}

#[cfg(test)]
mod tests {
    use slipway_types::metrics::{Percentiles, ProcessUsage};

    use super::*;

    fn point(ok: u64, errors: u64) -> MetricsPoint {
        let mut point = MetricsPoint::empty(OffsetDateTime::UNIX_EPOCH, 60);
        point.requests = [0, ok, 0, 0, errors];
        point
    }

    #[test]
    fn an_alert_fires_once_per_breach_and_recovers_once() {
        let mut state = RuleState::default();
        let mut firing = false;
        let mut transitions = Vec::new();
        // Bucket: 1 ok, 2-4 breached, 5-6 ok, 7 breached again.
        for (bucket, breached) in [
            (1, false),
            (2, true),
            (3, true),
            (4, true),
            (5, false),
            (6, false),
            (7, true),
        ] {
            if let Some(t) = state.observe(firing, bucket, breached) {
                firing = t == Transition::Fire;
                transitions.push((bucket, t));
            }
        }
        assert_eq!(
            transitions,
            [
                (2, Transition::Fire),
                (5, Transition::Recover),
                (7, Transition::Fire)
            ]
        );
    }

    #[test]
    fn no_flapping_within_one_bucket_nor_from_a_late_reading() {
        let mut state = RuleState::default();
        assert_eq!(state.observe(false, 10, true), Some(Transition::Fire));
        // The same bucket read again, good this time: no recovery until the next bucket.
        assert_eq!(state.observe(true, 10, false), None);
        assert_eq!(state.observe(true, 9, false), None);
        assert_eq!(state.observe(true, 11, false), Some(Transition::Recover));
        assert_eq!(state.observe(false, 11, true), None);
    }

    #[test]
    fn the_error_rate_is_the_share_of_5xx_answers() {
        let rate = Threshold::Percent(5.0);
        let bad = observe_point(AlertRule::ErrorRate, rate, &point(60, 40)).unwrap();
        assert!(bad.breached);
        assert_eq!(bad.value, "40.0%");
        assert_eq!(
            bad.message,
            "5xx rate 40.0% (40 of 100 requests) is at or above 5%"
        );
        let good = observe_point(AlertRule::ErrorRate, rate, &point(100, 0)).unwrap();
        assert!(!good.breached);
        let idle = observe_point(AlertRule::ErrorRate, rate, &point(0, 0)).unwrap();
        assert!(!idle.breached, "no traffic is no errors");
    }

    #[test]
    fn latency_and_memory_need_data_to_say_anything() {
        let mut p = point(10, 0);
        assert_eq!(
            observe_point(AlertRule::P99Latency, Threshold::Millis(500), &p),
            None
        );
        assert_eq!(
            observe_point(AlertRule::Memory, Threshold::Percent(90.0), &p),
            None
        );
        p.latency_ms = Some(Percentiles {
            p50: 10.0,
            p95: 200.0,
            p99: 640.0,
        });
        p.processes = vec![
            ProcessUsage {
                dyno: "web.1".into(),
                cpu_percent: 1.0,
                memory_bytes: 100,
                memory_limit_bytes: Some(1000),
            },
            ProcessUsage {
                dyno: "worker.1".into(),
                cpu_percent: 1.0,
                memory_bytes: 950,
                memory_limit_bytes: Some(1000),
            },
        ];
        let slow = observe_point(AlertRule::P99Latency, Threshold::Millis(500), &p).unwrap();
        assert!(slow.breached);
        assert_eq!(slow.message, "p99 latency 640ms is at or above 500ms");
        let full = observe_point(AlertRule::Memory, Threshold::Percent(90.0), &p).unwrap();
        assert!(full.breached);
        assert_eq!(
            full.message,
            "memory 95.0% (of the limit, in worker.1) is at or above 90%"
        );
    }

    #[test]
    fn a_crash_loop_is_n_restarts_within_m_minutes() {
        let start = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let rule = Threshold::Restarts {
            count: 3,
            minutes: 10,
        };
        let mut crashes = Crashes::default();
        for minute in [0, 4, 8] {
            crashes.record(start + Duration::minutes(minute));
        }
        let looping = crashes.observe(rule, start + Duration::minutes(9)).unwrap();
        assert!(looping.breached);
        assert_eq!(
            looping.message,
            "3 crash restarts in the last 10 minutes (at or above 3)"
        );
        let calmer = crashes
            .observe(rule, start + Duration::minutes(11))
            .unwrap();
        assert!(!calmer.breached);
        crashes.forget_before(start + Duration::days(2));
        assert!(crashes.is_empty());
    }

    #[test]
    fn certificate_expiry_looks_at_the_soonest_one() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let certs = [
            ("a.example.test", now + Duration::days(60)),
            (
                "b.example.test",
                now + Duration::days(9) + Duration::hours(1),
            ),
        ];
        let soon = observe_certs(Threshold::Days(14), certs, now).unwrap();
        assert!(soon.breached);
        assert_eq!(
            soon.message,
            "the certificate for b.example.test expires in 9 days (fewer than 14)"
        );
        assert!(
            !observe_certs(Threshold::Days(7), certs, now)
                .unwrap()
                .breached
        );
        assert!(!observe_certs(Threshold::Days(7), [], now).unwrap().breached);
    }
}
