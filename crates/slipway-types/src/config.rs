//! An app's config vars, with the size limits of the spec.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::names::{ConfigKey, NameError};

pub const MAX_VALUE_BYTES: usize = 32 * 1024;
pub const MAX_TOTAL_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Key(#[from] NameError),
    #[error("config value of `{key}` is {size} bytes: the limit is 32 KiB")]
    ValueTooLarge { key: String, size: usize },
    #[error("the app's config would be {size} bytes: the limit is 64 KiB in all")]
    TotalTooLarge { size: usize },
    #[error("config value of `{key}` contains a NUL byte")]
    NulByte { key: String },
}

/// A complete set of config vars: what a release snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConfigVars(BTreeMap<ConfigKey, String>);

impl ConfigVars {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: &ConfigKey) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ConfigKey, &str)> {
        self.0.iter().map(|(k, v)| (k, v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Applies sets and unsets and returns the new whole set, or the first limit it breaks.
    /// `self` is left untouched, so a rejected change writes nothing.
    pub fn with_changes(
        &self,
        set: &BTreeMap<ConfigKey, String>,
        unset: &[ConfigKey],
    ) -> Result<Self, ConfigError> {
        let mut next = self.0.clone();
        for key in unset {
            next.remove(key);
        }
        for (key, value) in set {
            validate_value(key, value)?;
            next.insert(key.clone(), value.clone());
        }
        let size: usize = next.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
        if size > MAX_TOTAL_BYTES {
            return Err(ConfigError::TotalTooLarge { size });
        }
        Ok(Self(next))
    }

    pub fn into_map(self) -> BTreeMap<ConfigKey, String> {
        self.0
    }
}

impl FromIterator<(ConfigKey, String)> for ConfigVars {
    fn from_iter<T: IntoIterator<Item = (ConfigKey, String)>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

fn validate_value(key: &ConfigKey, value: &str) -> Result<(), ConfigError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(ConfigError::ValueTooLarge {
            key: key.to_string(),
            size: value.len(),
        });
    }
    if value.contains('\0') {
        return Err(ConfigError::NulByte {
            key: key.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ConfigKey {
        s.parse().unwrap()
    }

    #[test]
    fn changes_produce_a_new_snapshot_and_leave_the_old_one() {
        let old = ConfigVars::new()
            .with_changes(
                &BTreeMap::from([(key("A"), "1".into()), (key("B"), "2".into())]),
                &[],
            )
            .unwrap();
        let new = old
            .with_changes(&BTreeMap::from([(key("A"), "x".into())]), &[key("B")])
            .unwrap();
        assert_eq!(old.get(&key("A")), Some("1"));
        assert_eq!(old.get(&key("B")), Some("2"));
        assert_eq!(new.get(&key("A")), Some("x"));
        assert_eq!(new.get(&key("B")), None);
    }

    #[test]
    fn limits_are_enforced() {
        let big = "x".repeat(MAX_VALUE_BYTES + 1);
        let err = ConfigVars::new()
            .with_changes(&BTreeMap::from([(key("BIG"), big)]), &[])
            .unwrap_err();
        assert!(matches!(err, ConfigError::ValueTooLarge { .. }));
        assert!(err.to_string().contains("`BIG`"));

        let near = "x".repeat(MAX_VALUE_BYTES);
        let two = ConfigVars::new()
            .with_changes(
                &BTreeMap::from([(key("A"), near.clone()), (key("B"), near.clone())]),
                &[],
            )
            .unwrap_err();
        assert!(matches!(two, ConfigError::TotalTooLarge { .. }));

        let exactly = ConfigVars::new()
            .with_changes(&BTreeMap::from([(key("A"), near)]), &[])
            .unwrap();
        assert_eq!(exactly.len(), 1);

        assert!(matches!(
            ConfigVars::new()
                .with_changes(&BTreeMap::from([(key("N"), "a\0b".into())]), &[])
                .unwrap_err(),
            ConfigError::NulByte { .. }
        ));
    }

    #[test]
    fn snapshot_round_trips_as_a_json_object() {
        let vars = ConfigVars::new()
            .with_changes(&BTreeMap::from([(key("GREETING"), "hi".into())]), &[])
            .unwrap();
        let json = serde_json::to_string(&vars).unwrap();
        assert_eq!(json, r#"{"GREETING":"hi"}"#);
        assert_eq!(serde_json::from_str::<ConfigVars>(&json).unwrap(), vars);
        assert!(serde_json::from_str::<ConfigVars>(r#"{"1BAD":"x"}"#).is_err());
    }
}
