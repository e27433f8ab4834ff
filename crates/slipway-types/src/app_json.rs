//! `app.json`: the parts Slipway reads. Health checks use Dokku's format
//! (`healthchecks.<type>[]`); `formation` sets process counts and sizes on the first deploy.
//! Other keys (`name`, `env`, `scripts`, …) are allowed and ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::names::ProcessType;

/// The most containers of one process type.
pub const MAX_QUANTITY: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppJsonError {
    #[error("app.json: {0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> AppJsonError {
    AppJsonError::Invalid(message.into())
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppJson {
    #[serde(default)]
    pub healthchecks: BTreeMap<ProcessType, Vec<HealthCheck>>,
    #[serde(default)]
    pub formation: BTreeMap<ProcessType, FormationSpec>,
    /// The port the web process listens on in its container: `$PORT` is set to it and the
    /// router and health checks connect to it. A Dockerfile's EXPOSE fills it in, since such
    /// an image may ignore `$PORT`; absent, web processes get 5000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckType {
    /// Run while a new container starts; decides whether the release goes live.
    #[default]
    Startup,
    /// Accepted for Dokku compatibility; Slipway runs only startup checks.
    Liveness,
    Readiness,
}

/// One check, with Dokku's defaults: 3 attempts, 5 s timeout, 5 s between attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    #[serde(default, rename = "type")]
    pub kind: CheckType,
    #[serde(default)]
    pub name: Option<String>,
    /// HTTP GET of this path on the container; succeeds on a 2xx or 3xx answer.
    #[serde(default)]
    pub path: Option<String>,
    /// The answer's body must contain this.
    #[serde(default)]
    pub content: Option<String>,
    /// Seconds the container must have been running.
    #[serde(default)]
    pub uptime: Option<u64>,
    /// Port to check; `$PORT` when absent.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    #[serde(default = "default_seconds")]
    pub timeout: u64,
    #[serde(default = "default_seconds")]
    pub wait: u64,
    #[serde(default)]
    pub initial_delay: u64,
    /// Dokku runs a command in the container; Slipway refuses it with a clear message.
    #[serde(default)]
    pub command: Option<Vec<String>>,
}

fn default_attempts() -> u32 {
    3
}

fn default_seconds() -> u64 {
    5
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormationSpec {
    #[serde(default)]
    pub quantity: Option<u32>,
    /// Memory, like `512M` or `1G`.
    #[serde(default)]
    pub size: Option<String>,
}

impl AppJson {
    /// Parses and checks `app.json`; errors name the field (`healthchecks.web[0].path`).
    pub fn parse(text: &str) -> Result<Self, AppJsonError> {
        let deserializer = &mut serde_json::Deserializer::from_str(text);
        let parsed: AppJson = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                invalid(inner.to_string())
            } else {
                invalid(format!("`{path}`: {inner}"))
            }
        })?;
        parsed.validate()?;
        Ok(parsed)
    }

    fn validate(&self) -> Result<(), AppJsonError> {
        if self.port == Some(0) {
            return Err(invalid("`port` must not be 0"));
        }
        for (process, checks) in &self.healthchecks {
            for (i, check) in checks.iter().enumerate() {
                check.validate(&format!("healthchecks.{process}[{i}]"))?;
            }
        }
        for (process, spec) in &self.formation {
            if let Some(quantity) = spec.quantity
                && quantity > MAX_QUANTITY
            {
                return Err(invalid(format!(
                    "`formation.{process}.quantity` is {quantity}: at most {MAX_QUANTITY}"
                )));
            }
            if let Some(size) = &spec.size {
                parse_memory(size)
                    .map_err(|e| invalid(format!("`formation.{process}.size`: {e}")))?;
            }
        }
        Ok(())
    }

    /// The startup checks for a process type.
    pub fn startup_checks(&self, process: &ProcessType) -> Vec<&HealthCheck> {
        self.healthchecks
            .get(process)
            .map(|checks| {
                checks
                    .iter()
                    .filter(|c| c.kind == CheckType::Startup)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl HealthCheck {
    fn validate(&self, at: &str) -> Result<(), AppJsonError> {
        if self.command.is_some() {
            return Err(invalid(format!(
                "`{at}.command`: command checks are not supported: use `path` (HTTP) or `uptime`"
            )));
        }
        if let Some(path) = &self.path
            && !path.starts_with('/')
        {
            return Err(invalid(format!(
                "`{at}.path` is `{path}`: it must start with `/`"
            )));
        }
        if self.path.is_some() && self.uptime.is_some() {
            return Err(invalid(format!(
                "`{at}`: give `path` or `uptime`, not both"
            )));
        }
        if self.content.is_some() && self.path.is_none() {
            return Err(invalid(format!("`{at}.content` needs a `path` to fetch")));
        }
        let bounds = [
            ("attempts", u64::from(self.attempts), 1, 100),
            ("timeout", self.timeout, 1, 600),
            ("wait", self.wait, 0, 600),
            ("initialDelay", self.initial_delay, 0, 3600),
            ("uptime", self.uptime.unwrap_or(1), 1, 3600),
        ];
        for (field, value, low, high) in bounds {
            if !(low..=high).contains(&value) {
                return Err(invalid(format!(
                    "`{at}.{field}` is {value}: use {low} to {high}"
                )));
            }
        }
        if self.port == Some(0) {
            return Err(invalid(format!("`{at}.port` must not be 0")));
        }
        Ok(())
    }
}

/// Parses a memory size like `512M`, `1G`, `256MB` or a byte count, between 64 MiB and 64 GiB.
pub fn parse_memory(text: &str) -> Result<i64, String> {
    let trimmed = text.trim();
    let upper = trimmed.to_ascii_uppercase();
    let upper = upper.strip_suffix('B').unwrap_or(&upper);
    let (digits, unit) = match upper.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => upper.split_at(at),
        None => (upper, ""),
    };
    let multiplier: i64 = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => {
            return Err(format!(
                "`{trimmed}` is not a size: use a number with M or G, like 512M"
            ));
        }
    };
    let bytes = digits
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("`{trimmed}` is not a size: use a number with M or G, like 512M"))?;
    if !(64 << 20..=64 << 30).contains(&bytes) {
        return Err(format!("`{trimmed}` is out of range: use 64M to 64G"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dokku_format_with_defaults() {
        let app = AppJson::parse(
            r#"{"name": "x", "healthchecks": {"web": [{"type": "startup", "path": "/health", "content": "ok"}, {"type": "liveness", "path": "/"}]},
                "formation": {"web": {"quantity": 2, "size": "512M"}}}"#,
        )
        .unwrap();
        let checks = app.startup_checks(&ProcessType::web());
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].path.as_deref(), Some("/health"));
        assert_eq!(checks[0].attempts, 3);
        assert_eq!(checks[0].timeout, 5);
        assert_eq!(checks[0].wait, 5);
        assert_eq!(checks[0].initial_delay, 0);
        assert_eq!(app.formation[&ProcessType::web()].quantity, Some(2));
        assert_eq!(app.port, None);
        assert_eq!(
            AppJson::parse(r#"{"port": 8080}"#).unwrap().port,
            Some(8080)
        );
        assert!(
            AppJson::parse("{}")
                .unwrap()
                .startup_checks(&ProcessType::web())
                .is_empty()
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                r#"{"healthchecks": {"web": [{"path": "health"}]}}"#,
                "healthchecks.web[0].path",
            ),
            (
                r#"{"healthchecks": {"web": [{"path": "/", "attempts": "x"}]}}"#,
                "healthchecks.web[0].attempts",
            ),
            (
                r#"{"healthchecks": {"web": [{"path": "/", "attempts": 0}]}}"#,
                "healthchecks.web[0].attempts",
            ),
            (
                r#"{"healthchecks": {"web": [{"command": ["true"]}]}}"#,
                "healthchecks.web[0].command",
            ),
            (r#"{"healthchecks": {"Web": []}}"#, "healthchecks"),
            (
                r#"{"formation": {"web": {"quantity": 1000}}}"#,
                "formation.web.quantity",
            ),
            (
                r#"{"formation": {"web": {"size": "lots"}}}"#,
                "formation.web.size",
            ),
            (
                r#"{"healthchecks": {"web": [{"content": "ok"}]}}"#,
                "healthchecks.web[0].content",
            ),
            (r#"{"port": 0}"#, "`port` must not be 0"),
            (r#"{"port": 70000}"#, "port"),
        ];
        for (text, field) in cases {
            let err = AppJson::parse(text).unwrap_err().to_string();
            assert!(err.starts_with("app.json: "), "{err}");
            assert!(err.contains(field), "{text}: {err}");
        }
        assert!(
            AppJson::parse("not json")
                .unwrap_err()
                .to_string()
                .starts_with("app.json: ")
        );
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512M"), Ok(512 << 20));
        assert_eq!(parse_memory("1g"), Ok(1 << 30));
        assert_eq!(parse_memory("256MB"), Ok(256 << 20));
        assert!(parse_memory("1M").is_err());
        assert!(parse_memory("100G").is_err());
        assert!(parse_memory("-5M").is_err());
        assert!(parse_memory("12X").is_err());
        assert!(parse_memory("99999999999999999999G").is_err());
    }
}
