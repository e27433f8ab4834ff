//! Host names users attach to apps. Validated once, stored and compared in one canonical form
//! (lowercase, no trailing dot), so the router, the DNS server and ACME all agree on a name.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A custom domain (`www.example.com`) or a wildcard (`*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "domain `{0}` is invalid: use a full host name such as www.example.com (letters, digits and dashes in dot-separated labels of up to 63 characters, at most 253 in all), optionally starting with `*.`"
)]
pub struct DomainError(pub String);

fn is_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

impl DomainName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `*.example.com`: matches exactly one extra label, as in TLS certificates.
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// Whether this name (or wildcard) covers `host`, a lowercase host name without a port.
    pub fn covers(&self, host: &str) -> bool {
        match self.0.strip_prefix("*.") {
            Some(parent) => host
                .split_once('.')
                .is_some_and(|(first, rest)| !first.is_empty() && rest == parent),
            None => self.0 == host,
        }
    }

    /// Whether this name is `zone` itself or a name under it.
    pub fn is_within(&self, zone: &str) -> bool {
        let name = self.0.trim_start_matches("*.");
        name == zone
            || name
                .strip_suffix(zone)
                .is_some_and(|prefix| prefix.ends_with('.'))
    }
}

impl TryFrom<String> for DomainName {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let canonical = value.trim_end_matches('.').to_ascii_lowercase();
        let rest = canonical.strip_prefix("*.").unwrap_or(&canonical);
        let labels: Vec<&str> = rest.split('.').collect();
        let valid = canonical.len() <= 253
            && labels.len() >= 2
            && labels.iter().all(|label| is_label(label))
            && labels
                .last()
                .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()));
        if valid && !value.ends_with("..") {
            Ok(Self(canonical))
        } else {
            Err(DomainError(value))
        }
    }
}

impl std::str::FromStr for DomainName {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s.to_owned())
    }
}

impl From<DomainName> for String {
    fn from(value: DomainName) -> String {
        value.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Result<DomainName, DomainError> {
        s.parse()
    }

    #[test]
    fn accepts_host_names_and_wildcards_in_canonical_form() {
        assert_eq!(
            name("WWW.Example.COM.").unwrap().as_str(),
            "www.example.com"
        );
        assert!(name("*.apps.example.com").unwrap().is_wildcard());
        assert!(name("xn--bcher-kva.example").is_ok());
    }

    #[test]
    fn rejects_what_is_not_a_host_name() {
        for bad in [
            "",
            "localhost",
            "exa mple.com",
            "-a.example.com",
            "a-.example.com",
            "a..example.com",
            "example.com..",
            "www.*.example.com",
            "**.example.com",
            "*.com.",
            "1.2.3.4",
            "under_score.example.com",
            "ünicode.example.com",
            &format!("{}.com", "a".repeat(64)),
            &format!("{}com", "abcdefghi.".repeat(26)),
        ] {
            assert!(name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn wildcards_cover_exactly_one_label() {
        let wildcard = name("*.apps.test").unwrap();
        assert!(wildcard.covers("web.apps.test"));
        assert!(!wildcard.covers("apps.test"));
        assert!(!wildcard.covers("a.b.apps.test"));
        assert!(name("www.example.test").unwrap().covers("www.example.test"));
    }

    #[test]
    fn names_within_a_zone() {
        assert!(name("web.apps.test").unwrap().is_within("apps.test"));
        assert!(name("*.apps.test").unwrap().is_within("apps.test"));
        assert!(!name("web.myapps.test").unwrap().is_within("apps.test"));
    }
}
