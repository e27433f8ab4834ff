//! `bin/release` output: the YAML a classic buildpack prints to declare default process types,
//! config var defaults and add-ons.

use std::collections::BTreeMap;

use serde::Deserialize;
use slipway_types::ProcessType;

/// What a buildpack's `bin/release` declared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    pub default_process_types: BTreeMap<ProcessType, String>,
    pub config_vars: BTreeMap<String, String>,
    pub addons: Vec<String>,
}

#[derive(Deserialize)]
struct RawRelease {
    #[serde(default)]
    default_process_types: Option<BTreeMap<String, String>>,
    #[serde(default)]
    config_vars: Option<BTreeMap<String, Scalar>>,
    #[serde(default)]
    addons: Option<Vec<String>>,
}

/// Buildpacks write config var defaults such as `WEB_CONCURRENCY: 2` unquoted.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Scalar {
    fn into_string(self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Text(s) => s,
        }
    }
}

impl Release {
    /// Parses `bin/release` output. An empty document declares nothing.
    pub fn parse(yaml: &str) -> Result<Self, String> {
        let body = yaml.trim();
        if body.is_empty() || body == "---" {
            return Ok(Self::default());
        }
        let raw: RawRelease = serde_saphyr::from_str(yaml).map_err(|error| error.to_string())?;
        let default_process_types = raw
            .default_process_types
            .unwrap_or_default()
            .into_iter()
            .map(|(name, command)| {
                let process = name
                    .parse::<ProcessType>()
                    .map_err(|error| error.to_string())?;
                Ok((process, command))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            default_process_types,
            config_vars: raw
                .config_vars
                .unwrap_or_default()
                .into_iter()
                .map(|(key, value)| (key, value.into_string()))
                .collect(),
            addons: raw.addons.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_all_three_sections() {
        let release = Release::parse(
            "---\naddons:\n  - heroku-postgresql\nconfig_vars:\n  WEB_CONCURRENCY: 2\n  DEBUG: false\n  NAME: app\ndefault_process_types:\n  web: gunicorn mysite.wsgi --bind 0.0.0.0:$PORT\n",
        )
        .unwrap();
        assert_eq!(
            release.default_process_types[&ProcessType::web()],
            "gunicorn mysite.wsgi --bind 0.0.0.0:$PORT"
        );
        assert_eq!(release.config_vars["WEB_CONCURRENCY"], "2");
        assert_eq!(release.config_vars["DEBUG"], "false");
        assert_eq!(release.config_vars["NAME"], "app");
        assert_eq!(release.addons, vec!["heroku-postgresql".to_owned()]);
    }

    #[test]
    fn empty_and_null_sections_declare_nothing() {
        for yaml in [
            "",
            "---",
            "---\n",
            "---\ndefault_process_types: {}\n",
            "default_process_types:\nconfig_vars:\naddons: []\n",
        ] {
            assert_eq!(
                Release::parse(yaml).unwrap(),
                Release::default(),
                "{yaml:?}"
            );
        }
    }

    #[test]
    fn bad_yaml_and_bad_process_types_are_errors() {
        assert!(Release::parse("default_process_types: [web]").is_err());
        assert!(Release::parse("default_process_types: {web: [").is_err());
        let bad_type = Release::parse("default_process_types:\n  Web Server: x\n").unwrap_err();
        assert!(bad_type.contains("`Web Server`"), "{bad_type}");
    }
}
