//! Release versions: semver, never reused, bumped Conventional-Commits style.

use semver::Version;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bump {
    Patch,
    Minor,
    Major,
}

impl Bump {
    /// The bump a set of commit messages asks for: a breaking change (`type!:` or a
    /// `BREAKING CHANGE:` footer) is major, any `feat:` minor, anything else patch.
    pub fn for_messages<'a>(messages: impl IntoIterator<Item = &'a str>) -> Bump {
        messages
            .into_iter()
            .map(Bump::for_message)
            .max()
            .unwrap_or(Bump::Patch)
    }

    fn for_message(message: &str) -> Bump {
        let subject = message.lines().next().unwrap_or_default().trim();
        let breaking_footer = message.lines().any(|line| {
            line.starts_with("BREAKING CHANGE:") || line.starts_with("BREAKING-CHANGE:")
        });
        let Some((head, _)) = subject.split_once(':') else {
            return if breaking_footer {
                Bump::Major
            } else {
                Bump::Patch
            };
        };
        let head = head.trim();
        let (head, bang) = match head.strip_suffix('!') {
            Some(rest) => (rest, true),
            None => (head, false),
        };
        let kind = head.split_once('(').map_or(head, |(kind, _)| kind);
        let is_type = !kind.is_empty() && kind.chars().all(|c| c.is_ascii_alphanumeric());
        if is_type && bang || breaking_footer {
            Bump::Major
        } else if is_type && kind.eq_ignore_ascii_case("feat") {
            Bump::Minor
        } else {
            Bump::Patch
        }
    }

    pub fn apply(self, from: &Version) -> Version {
        match self {
            Bump::Major => Version::new(from.major + 1, 0, 0),
            Bump::Minor => Version::new(from.major, from.minor + 1, 0),
            Bump::Patch => Version::new(from.major, from.minor, from.patch + 1),
        }
    }
}

/// The next release version: `1.0.0` for the first, else the highest existing one bumped.
/// Pre-release and build metadata of existing versions are ignored for the bump.
pub fn next_version(existing: &[Version], bump: Bump) -> Version {
    match existing.iter().max_by(|a, b| a.cmp_precedence(b)) {
        None => Version::new(1, 0, 0),
        Some(highest) => bump.apply(&Version::new(highest.major, highest.minor, highest.patch)),
    }
}

/// Whether a version set by a pushed `vX.Y.Z` tag may be used: it must be higher than
/// every existing release.
pub fn tag_is_usable(existing: &[Version], tagged: &Version) -> bool {
    existing
        .iter()
        .all(|v| tagged.cmp_precedence(v) == std::cmp::Ordering::Greater)
}

/// Parses a tag name `vX.Y.Z` (or `X.Y.Z`) into a version, if it is one.
pub fn parse_tag(tag: &str) -> Option<Version> {
    let raw = tag.strip_prefix('v').unwrap_or(tag);
    let version = Version::parse(raw).ok()?;
    version.build.is_empty().then_some(version)
}

/// The version as shown to people: with `+g<short-sha>` build metadata when the commit is known.
pub fn display_version(version: &impl std::fmt::Display, commit: Option<&str>) -> String {
    match commit {
        Some(sha) if sha.len() >= 7 => format!("{version}+g{}", &sha[..7]),
        _ => version.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn first_release_is_1_0_0_whatever_the_commits_say() {
        assert_eq!(next_version(&[], Bump::Major), v("1.0.0"));
        assert_eq!(next_version(&[], Bump::Patch), v("1.0.0"));
    }

    #[test]
    fn bump_follows_conventional_commits() {
        assert_eq!(
            Bump::for_messages(["fix: typo", "chore: deps"]),
            Bump::Patch
        );
        assert_eq!(
            Bump::for_messages(["fix: typo", "feat: login"]),
            Bump::Minor
        );
        assert_eq!(Bump::for_messages(["feat(api): scope"]), Bump::Minor);
        assert_eq!(Bump::for_messages(["feat!: drop v1"]), Bump::Major);
        assert_eq!(Bump::for_messages(["refactor(core)!: rename"]), Bump::Major);
        assert_eq!(
            Bump::for_messages(["fix: thing\n\nBREAKING CHANGE: config renamed"]),
            Bump::Major
        );
        assert_eq!(Bump::for_messages(["update readme"]), Bump::Patch);
        assert_eq!(Bump::for_messages(["featured: not a type"]), Bump::Patch);
        assert_eq!(Bump::for_messages(["WIP feat: not at start"]), Bump::Patch);
        assert_eq!(Bump::for_messages(Vec::<&str>::new()), Bump::Patch);
    }

    #[test]
    fn bump_starts_from_the_highest_existing_version() {
        let existing = [v("1.0.0"), v("1.2.3"), v("1.1.9")];
        assert_eq!(next_version(&existing, Bump::Patch), v("1.2.4"));
        assert_eq!(next_version(&existing, Bump::Minor), v("1.3.0"));
        assert_eq!(next_version(&existing, Bump::Major), v("2.0.0"));
    }

    #[test]
    fn tags_must_be_higher_than_every_release() {
        let existing = [v("1.0.0"), v("1.4.0")];
        assert!(tag_is_usable(&existing, &v("1.4.1")));
        assert!(tag_is_usable(&existing, &v("3.0.0")));
        assert!(!tag_is_usable(&existing, &v("1.4.0")));
        assert!(!tag_is_usable(&existing, &v("1.2.0")));
        assert_eq!(parse_tag("v2.1.0"), Some(v("2.1.0")));
        assert_eq!(parse_tag("release-2"), None);
        assert_eq!(parse_tag("v1.0.0+meta"), None);
    }

    #[test]
    fn build_metadata_is_shown_not_compared() {
        assert_eq!(
            display_version(&v("1.2.0"), Some("abcdef1234")),
            "1.2.0+gabcdef1"
        );
        assert_eq!(display_version(&v("1.2.0"), None), "1.2.0");
    }
}
