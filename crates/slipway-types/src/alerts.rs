//! Webhooks and alert rules: what `webhooks:*` and `alerts:*` send and get back, and the rules
//! and thresholds the server evaluates.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    #[error(
        "alert rule `{0}` is unknown: use 5xx-rate, p99-latency, memory, crash-loop or cert-expiry"
    )]
    UnknownRule(String),
    #[error("threshold `{threshold}` does not suit rule `{rule}`: {expected}")]
    BadThreshold {
        rule: AlertRule,
        threshold: String,
        expected: &'static str,
    },
    #[error("webhook event `{0}` is unknown: use release or alert")]
    UnknownEvents(String),
}

/// What a webhook is sent: the release events, the alert events, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// `release.succeeded`, `release.failed`, `release.rolled_back`.
    Release,
    /// `alert.firing`, `alert.resolved`.
    Alert,
}

impl EventKind {
    pub const ALL: [EventKind; 2] = [EventKind::Release, EventKind::Alert];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Release => "release",
            EventKind::Alert => "alert",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = AlertError;

    fn from_str(s: &str) -> Result<Self, AlertError> {
        match s.trim() {
            "release" => Ok(EventKind::Release),
            "alert" => Ok(EventKind::Alert),
            other => Err(AlertError::UnknownEvents(other.to_owned())),
        }
    }
}

/// An alert rule of an app. Each has one threshold; see [`AlertRule::parse_threshold`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AlertRule {
    /// Share of the router's answers in a bucket that were 5xx, in percent.
    #[serde(rename = "5xx-rate")]
    ErrorRate,
    /// The 99th percentile of the app's answer time in a bucket, in milliseconds.
    #[serde(rename = "p99-latency")]
    P99Latency,
    /// The busiest process's memory, in percent of its limit.
    #[serde(rename = "memory")]
    Memory,
    /// N crash restarts within M minutes, across the app's processes.
    #[serde(rename = "crash-loop")]
    CrashLoop,
    /// Fewer than N days left on one of the app's certificates.
    #[serde(rename = "cert-expiry")]
    CertExpiry,
}

impl AlertRule {
    pub const ALL: [AlertRule; 5] = [
        AlertRule::ErrorRate,
        AlertRule::P99Latency,
        AlertRule::Memory,
        AlertRule::CrashLoop,
        AlertRule::CertExpiry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertRule::ErrorRate => "5xx-rate",
            AlertRule::P99Latency => "p99-latency",
            AlertRule::Memory => "memory",
            AlertRule::CrashLoop => "crash-loop",
            AlertRule::CertExpiry => "cert-expiry",
        }
    }

    /// The threshold a rule has until the app sets or removes it. Crash loops, memory near
    /// the limit and expiring certificates are trouble for any app, so they are on; what
    /// error rate or latency is too much depends on the app, so those wait to be set.
    pub fn default_threshold(self) -> Option<Threshold> {
        match self {
            AlertRule::ErrorRate | AlertRule::P99Latency => None,
            AlertRule::Memory => Some(Threshold::Percent(90.0)),
            AlertRule::CrashLoop => Some(Threshold::Restarts {
                count: 3,
                minutes: 10,
            }),
            AlertRule::CertExpiry => Some(Threshold::Days(14)),
        }
    }

    /// Reads a threshold as a user types it: `5` or `5%` for the percentages, `800` or
    /// `800ms` for latency, `3/10` or `3/10m` (restarts / minutes) for crash loops, `14` or
    /// `14d` for certificate expiry.
    pub fn parse_threshold(self, text: &str) -> Result<Threshold, AlertError> {
        let text = text.trim();
        let bad = |expected| AlertError::BadThreshold {
            rule: self,
            threshold: text.to_owned(),
            expected,
        };
        match self {
            AlertRule::ErrorRate | AlertRule::Memory => {
                let expected = "a percentage above 0 and at most 100, like 5 or 2.5%";
                let percent: f64 = text
                    .strip_suffix('%')
                    .unwrap_or(text)
                    .trim()
                    .parse()
                    .map_err(|_| bad(expected))?;
                if percent > 0.0 && percent <= 100.0 {
                    Ok(Threshold::Percent(percent))
                } else {
                    Err(bad(expected))
                }
            }
            AlertRule::P99Latency => {
                let expected = "milliseconds above 0, like 800 or 800ms";
                let millis: u64 = text
                    .strip_suffix("ms")
                    .unwrap_or(text)
                    .trim()
                    .parse()
                    .map_err(|_| bad(expected))?;
                (millis > 0)
                    .then_some(Threshold::Millis(millis))
                    .ok_or_else(|| bad(expected))
            }
            AlertRule::CrashLoop => {
                let expected = "restarts/minutes, like 3/10 (3 restarts within 10 minutes)";
                let (count, minutes) = text.split_once('/').ok_or_else(|| bad(expected))?;
                let count: u32 = count.trim().parse().map_err(|_| bad(expected))?;
                let minutes: u32 = minutes
                    .trim()
                    .strip_suffix('m')
                    .unwrap_or(minutes.trim())
                    .parse()
                    .map_err(|_| bad(expected))?;
                if count > 0 && minutes > 0 && minutes <= 24 * 60 {
                    Ok(Threshold::Restarts { count, minutes })
                } else {
                    Err(bad(expected))
                }
            }
            AlertRule::CertExpiry => {
                let expected = "days above 0, like 14 or 14d";
                let days: u32 = text
                    .strip_suffix('d')
                    .unwrap_or(text)
                    .trim()
                    .parse()
                    .map_err(|_| bad(expected))?;
                (days > 0)
                    .then_some(Threshold::Days(days))
                    .ok_or_else(|| bad(expected))
            }
        }
    }
}

impl fmt::Display for AlertRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertRule {
    type Err = AlertError;

    fn from_str(s: &str) -> Result<Self, AlertError> {
        AlertRule::ALL
            .into_iter()
            .find(|rule| rule.as_str() == s)
            .ok_or_else(|| AlertError::UnknownRule(s.to_owned()))
    }
}

/// A rule's threshold. Its text form (`Display`) is what the store keeps and reads back with
/// [`AlertRule::parse_threshold`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Percent(f64),
    Millis(u64),
    Restarts { count: u32, minutes: u32 },
    Days(u32),
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::Percent(percent) => write!(f, "{percent}%"),
            Threshold::Millis(millis) => write!(f, "{millis}ms"),
            Threshold::Restarts { count, minutes } => write!(f, "{count}/{minutes}m"),
            Threshold::Days(days) => write!(f, "{days}d"),
        }
    }
}

/// `POST /v1/apps/{app}/webhooks`. Strings, so the server can say what is wrong with them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateWebhook {
    /// `https://…`, or `http://` to a loopback address.
    pub url: String,
    /// `release`, `alert`; every kind when empty.
    #[serde(default)]
    pub events: Vec<String>,
}

/// One webhook of an app; the secret is only shown when it is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookInfo {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<EventKind>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// How the latest delivery ended, once one has.
    pub last_delivery: Option<DeliveryInfo>,
}

/// The outcome of one delivery, after its retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryInfo {
    /// `release.succeeded`, `alert.firing`…
    pub event: String,
    pub ok: bool,
    /// `200 OK`, or why it failed (`503 Service Unavailable`, `connection refused`).
    pub status: String,
    pub attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The answer to creating a webhook: the only time its signing secret is shown.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedWebhook {
    pub webhook: WebhookInfo,
    /// Key of the HMAC-SHA256 signature in `X-Slipway-Signature`.
    pub secret: String,
}

impl fmt::Debug for CreatedWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedWebhook")
            .field("webhook", &self.webhook)
            .field("secret", &format_args!("<redacted>"))
            .finish()
    }
}

/// `PUT /v1/apps/{app}/alerts/{rule}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAlert {
    pub threshold: String,
}

/// An alert that has fired and not yet recovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiringAlert {
    pub rule: AlertRule,
    /// What was measured when it fired, like `42.5%`.
    pub value: String,
    pub message: String,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

/// One rule of an app as `alerts` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRuleInfo {
    pub rule: AlertRule,
    /// The threshold in force; `None` when the rule is off.
    pub threshold: Option<String>,
    /// Whether the app set it (`false`: the default is in force).
    pub custom: bool,
    pub firing: Option<FiringAlert>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_in_the_forms_users_type_and_print_canonically() {
        let cases = [
            (AlertRule::ErrorRate, "5", "5%"),
            (AlertRule::ErrorRate, "2.5%", "2.5%"),
            (AlertRule::Memory, " 90 % ", "90%"),
            (AlertRule::P99Latency, "800ms", "800ms"),
            (AlertRule::CrashLoop, "3/10", "3/10m"),
            (AlertRule::CrashLoop, "5/2m", "5/2m"),
            (AlertRule::CertExpiry, "14d", "14d"),
            (AlertRule::CertExpiry, "7", "7d"),
        ];
        for (rule, text, canonical) in cases {
            let threshold = rule.parse_threshold(text).unwrap();
            assert_eq!(threshold.to_string(), canonical, "{rule} {text}");
            assert_eq!(rule.parse_threshold(canonical).unwrap(), threshold);
        }
    }

    #[test]
    fn bad_thresholds_say_what_the_rule_expects() {
        for (rule, text) in [
            (AlertRule::ErrorRate, "0"),
            (AlertRule::ErrorRate, "101"),
            (AlertRule::ErrorRate, "lots"),
            (AlertRule::P99Latency, "0"),
            (AlertRule::CrashLoop, "3"),
            (AlertRule::CrashLoop, "0/10"),
            (AlertRule::CertExpiry, "-1"),
        ] {
            let error = rule.parse_threshold(text).unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("threshold `{text}` does not suit rule `{rule}`")),
                "{error}"
            );
        }
    }

    #[test]
    fn rules_and_event_kinds_read_by_name() {
        for rule in AlertRule::ALL {
            assert_eq!(rule.as_str().parse::<AlertRule>().unwrap(), rule);
            assert_eq!(
                serde_json::to_value(rule).unwrap(),
                serde_json::json!(rule.as_str())
            );
        }
        assert_eq!(
            "latency".parse::<AlertRule>().unwrap_err().to_string(),
            "alert rule `latency` is unknown: use 5xx-rate, p99-latency, memory, crash-loop or cert-expiry"
        );
        assert_eq!("alert".parse::<EventKind>().unwrap(), EventKind::Alert);
        assert!("deploy".parse::<EventKind>().is_err());
    }
}
