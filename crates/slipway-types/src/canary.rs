//! Canary releases and rate limits as the API, the CLI and the store speak of them.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::route::{RateLimit, RatePeriod};

/// How an app's next code release goes out: beside the current one, with `percent` of the
/// requests, for `duration_secs`, rolled back when its failure rate or p99 goes over the
/// thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryPolicy {
    /// 1–99.
    pub percent: u8,
    pub duration_secs: u64,
    /// The highest tolerated share of failed requests (5xx or no answer), in hundredths of a
    /// percent: 100 is 1%.
    pub max_error_basis_points: u32,
    /// The highest tolerated 99th percentile latency, if any.
    #[serde(default)]
    pub max_p99_ms: Option<u32>,
    /// Keep each client on one side with a `slipway-canary` cookie.
    #[serde(default)]
    pub sticky: bool,
}

impl CanaryPolicy {
    pub const DEFAULT_DURATION_SECS: u64 = 600;
    pub const DEFAULT_MAX_ERROR_BASIS_POINTS: u32 = 100;

    /// What is wrong with the policy, if anything.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=99).contains(&self.percent) {
            return Err(format!(
                "canary percent `{}` must be from 1 to 99",
                self.percent
            ));
        }
        if !(10..=86_400).contains(&self.duration_secs) {
            return Err(format!(
                "canary duration `{}s` must be from 10 s to 24 h",
                self.duration_secs
            ));
        }
        if self.max_error_basis_points > 10_000 {
            return Err(format!(
                "maximum error rate `{}` must be at most 100%",
                percent_text(self.max_error_basis_points)
            ));
        }
        if self.max_p99_ms == Some(0) {
            return Err("maximum p99 `0` must be at least 1 ms".to_owned());
        }
        Ok(())
    }
}

/// `1%`, `0.5%`, `12.25%`: basis points as a percentage without trailing zeros.
pub fn percent_text(basis_points: u32) -> String {
    let whole = basis_points / 100;
    let hundredths = basis_points % 100;
    match hundredths {
        0 => format!("{whole}%"),
        h if h % 10 == 0 => format!("{whole}.{}%", h / 10),
        h => format!("{whole}.{h:02}%"),
    }
}

/// `GET /v1/apps/{app}/canary`: the policy for the next release and the canary running now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryView {
    pub policy: Option<CanaryPolicy>,
    pub running: Option<RunningCanaryInfo>,
}

/// A canary serving now, with what the router has seen of it so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningCanaryInfo {
    pub release: String,
    pub policy: CanaryPolicy,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it is promoted if it holds.
    #[serde(with = "time::serde::rfc3339")]
    pub promote_at: OffsetDateTime,
    /// Requests the canary answered since it started.
    pub requests: u64,
    /// Of which failed (5xx or no answer).
    pub errors: u64,
    pub p99_ms: Option<u64>,
    /// Requests needed before the thresholds are applied.
    pub min_requests: u64,
}

/// `PUT /v1/apps/{app}/ratelimit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitView {
    pub limit: Option<RateLimit>,
}

/// Parses `100/s` or `6000/m`.
pub fn parse_rate(text: &str) -> Result<(u32, RatePeriod), String> {
    let bad = || format!("rate `{text}` must look like 100/s or 6000/m");
    let (count, period) = text.trim().split_once('/').ok_or_else(bad)?;
    let period = match period {
        "s" | "sec" | "second" => RatePeriod::Second,
        "m" | "min" | "minute" => RatePeriod::Minute,
        _ => return Err(bad()),
    };
    let count: u32 = count.parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(format!("rate `{text}` must allow at least 1 request"));
    }
    Ok((count, period))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_read_as_written() {
        assert_eq!(percent_text(100), "1%");
        assert_eq!(percent_text(50), "0.5%");
        assert_eq!(percent_text(1225), "12.25%");
        assert_eq!(percent_text(720), "7.2%");
    }

    #[test]
    fn rates_parse_per_second_and_minute() {
        assert_eq!(parse_rate("100/s"), Ok((100, RatePeriod::Second)));
        assert_eq!(parse_rate("6000/m"), Ok((6000, RatePeriod::Minute)));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("100").is_err());
        assert!(parse_rate("100/h").is_err());
    }

    #[test]
    fn policies_outside_the_ranges_are_refused() {
        let policy = CanaryPolicy {
            percent: 20,
            duration_secs: 600,
            max_error_basis_points: 100,
            max_p99_ms: None,
            sticky: false,
        };
        assert!(policy.check().is_ok());
        assert!(
            CanaryPolicy {
                percent: 0,
                ..policy
            }
            .check()
            .is_err()
        );
        assert!(
            CanaryPolicy {
                percent: 100,
                ..policy
            }
            .check()
            .is_err()
        );
        assert!(
            CanaryPolicy {
                duration_secs: 5,
                ..policy
            }
            .check()
            .is_err()
        );
        assert!(
            CanaryPolicy {
                max_p99_ms: Some(0),
                ..policy
            }
            .check()
            .is_err()
        );
    }
}
