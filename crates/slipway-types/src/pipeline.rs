//! Pipelines: apps grouped by stage, so a release built once in staging is promoted, image
//! and all, to production. The names, the stages and the API bodies of `/v1/pipelines`.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    #[error(
        "pipeline name `{0}` is invalid: use 3 to 30 characters, lowercase letters, digits and dashes, starting with a letter and not ending with a dash"
    )]
    Name(String),
    #[error("stage `{0}` is unknown: use staging or production")]
    Stage(String),
}

/// A pipeline's name: the rule of app names, since both appear side by side in commands.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PipelineName(String);

impl PipelineName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PipelineName {
    type Error = PipelineError;

    fn try_from(value: String) -> Result<Self, PipelineError> {
        if value.parse::<crate::AppName>().is_ok() {
            Ok(Self(value))
        } else {
            Err(PipelineError::Name(value))
        }
    }
}

impl std::str::FromStr for PipelineName {
    type Err = PipelineError;

    fn from_str(s: &str) -> Result<Self, PipelineError> {
        Self::try_from(s.to_owned())
    }
}

impl From<PipelineName> for String {
    fn from(value: PipelineName) -> String {
        value.0
    }
}

impl fmt::Display for PipelineName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an app sits in its pipeline. Releases move from staging to production only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Staging,
    Production,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Staging => "staging",
            Stage::Production => "production",
        }
    }
}

impl std::str::FromStr for Stage {
    type Err = PipelineError;

    fn from_str(s: &str) -> Result<Self, PipelineError> {
        [Stage::Staging, Stage::Production]
            .into_iter()
            .find(|stage| stage.as_str() == s)
            .ok_or_else(|| PipelineError::Stage(s.to_owned()))
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /v1/pipelines`. A plain string, so the server can say what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePipeline {
    pub name: String,
}

/// `POST /v1/pipelines/{name}/apps`. Plain strings, for the same reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddPipelineApp {
    pub app: String,
    pub stage: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineInfo {
    pub name: String,
    /// The email of the user who created it.
    pub owner: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Staging apps first, then production ones, each by name.
    pub apps: Vec<PipelineApp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineApp {
    pub app: String,
    pub stage: Stage,
    /// The version serving now; `None` before the first release, and for apps the caller may
    /// not use.
    pub current_release: Option<String>,
}

/// `POST /v1/apps/{app}/promote`, from the staging app in the path. `to` names production apps
/// of its pipeline; empty means every one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteRequest {
    #[serde(default)]
    pub to: Vec<String>,
}

/// A promotion that went live on every target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteResult {
    pub pipeline: String,
    /// The staging app and the version of its release that was promoted.
    pub from: String,
    pub version: String,
    pub promoted: Vec<Promotion>,
}

/// The release a promotion cut in one production app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    pub app: String,
    pub version: String,
    pub description: String,
    pub image: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_app_name_rule() {
        assert_eq!(
            "shop".parse::<PipelineName>().unwrap().as_str(),
            "shop".to_owned()
        );
        let error = "Shop".parse::<PipelineName>().unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("pipeline name `Shop` is invalid"),
            "{error}"
        );
        assert!("ab".parse::<PipelineName>().is_err());
        assert!(serde_json::from_str::<PipelineName>("\"no-\"").is_err());
    }

    #[test]
    fn stages_are_staging_or_production() {
        assert_eq!("staging".parse::<Stage>().unwrap(), Stage::Staging);
        assert_eq!("production".parse::<Stage>().unwrap(), Stage::Production);
        assert_eq!(
            "review".parse::<Stage>().unwrap_err().to_string(),
            "stage `review` is unknown: use staging or production"
        );
        assert_eq!(
            serde_json::to_string(&Stage::Production).unwrap(),
            "\"production\""
        );
    }
}
