//! Validated names. Each type can only hold a value that passed its rule, so code that
//! receives an `AppName` never re-checks it.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "app name `{0}` is invalid: use 3 to 30 characters, lowercase letters, digits and dashes, starting with a letter and not ending with a dash"
    )]
    App(String),
    #[error(
        "config key `{0}` is invalid: use letters, digits and underscores, not starting with a digit"
    )]
    ConfigKey(String),
    #[error(
        "process type `{0}` is invalid: use up to 30 lowercase letters, digits, `_` or `-`, starting with a letter"
    )]
    ProcessType(String),
}

fn is_app_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    (3..=30).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[bytes.len() - 1] != b'-'
}

fn is_config_key(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_process_type(s: &str) -> bool {
    let bytes = s.as_bytes();
    (1..=30).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

macro_rules! validated_name {
    ($name:ident, $check:ident, $err:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                if $check(&value) {
                    Ok(Self(value))
                } else {
                    Err(NameError::$err(value))
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::try_from(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

validated_name!(AppName, is_app_name, App);
validated_name!(ConfigKey, is_config_key, ConfigKey);
validated_name!(ProcessType, is_process_type, ProcessType);

impl ProcessType {
    /// The process type that receives HTTP traffic.
    pub fn web() -> Self {
        Self("web".to_owned())
    }

    pub fn is_web(&self) -> bool {
        self.0 == "web"
    }

    /// The Procfile entry that runs once per release, before any process is replaced.
    pub fn release() -> Self {
        Self("release".to_owned())
    }

    pub fn is_release(&self) -> bool {
        self.0 == "release"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_follow_the_spec() {
        for ok in ["abc", "hello", "my-app-2", "a12", &"a".repeat(30)] {
            assert!(ok.parse::<AppName>().is_ok(), "{ok} should be valid");
        }
        for bad in [
            "",
            "ab",
            "Hello",
            "1app",
            "app-",
            "-app",
            "my_app",
            "my app",
            "app.x",
            &"a".repeat(31),
        ] {
            let err = bad.parse::<AppName>().unwrap_err();
            assert!(err.to_string().contains(&format!("`{bad}`")));
        }
    }

    #[test]
    fn config_keys_follow_the_spec() {
        for ok in ["A", "_X", "DATABASE_URL", "lower_ok", "A1"] {
            assert!(ok.parse::<ConfigKey>().is_ok(), "{ok} should be valid");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "É"] {
            assert!(bad.parse::<ConfigKey>().is_err(), "{bad} should be invalid");
        }
    }

    #[test]
    fn process_types_follow_the_spec() {
        for ok in ["web", "worker", "release", "a", "queue_2", "x-y"] {
            assert!(ok.parse::<ProcessType>().is_ok(), "{ok} should be valid");
        }
        for bad in ["", "Web", "1web", "_web", "we b", &"a".repeat(31)] {
            assert!(
                bad.parse::<ProcessType>().is_err(),
                "{bad} should be invalid"
            );
        }
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<AppName>("\"ok-app\"").is_ok());
        assert!(serde_json::from_str::<AppName>("\"BAD\"").is_err());
    }
}
