//! Ref updates as git hands them to a pre-receive hook, and object id checks.

use serde::{Deserialize, Serialize};

use crate::GitError;

/// One line of a pre-receive hook's input: `<old> <new> <ref>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefUpdate {
    /// Full object id the ref had; all zeros when the push creates it.
    pub old: String,
    /// Full object id the push sets; all zeros when the push deletes the ref.
    pub new: String,
    pub refname: String,
}

impl RefUpdate {
    /// Parses one `<old> <new> <ref>` line, checking both ids and the ref name so later `git`
    /// commands never receive something that could be read as an option.
    pub fn parse(line: &str) -> Result<Self, GitError> {
        let invalid = || GitError::InvalidRefUpdate(line.to_owned());
        let mut parts = line.split(' ');
        let (Some(old), Some(new), Some(refname), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        if !is_object_id(old) || !is_object_id(new) || !is_ref_name(refname) {
            return Err(invalid());
        }
        Ok(Self {
            old: old.to_owned(),
            new: new.to_owned(),
            refname: refname.to_owned(),
        })
    }

    /// Parses a hook's whole input, one update per non-empty line.
    pub fn parse_all(input: &str) -> Result<Vec<Self>, GitError> {
        input
            .lines()
            .filter(|line| !line.is_empty())
            .map(Self::parse)
            .collect()
    }

    /// `main` and `master` are the branches a push deploys from.
    pub fn is_deploy_branch(&self) -> bool {
        matches!(
            self.refname.as_str(),
            "refs/heads/main" | "refs/heads/master"
        )
    }

    pub fn is_branch(&self) -> bool {
        self.refname.starts_with("refs/heads/")
    }

    pub fn branch_name(&self) -> Option<&str> {
        self.refname.strip_prefix("refs/heads/")
    }

    pub fn is_tag(&self) -> bool {
        self.refname.starts_with("refs/tags/")
    }

    pub fn tag_name(&self) -> Option<&str> {
        self.refname.strip_prefix("refs/tags/")
    }

    pub fn is_create(&self) -> bool {
        is_zero_id(&self.old)
    }

    pub fn is_delete(&self) -> bool {
        is_zero_id(&self.new)
    }
}

/// A full SHA-1 (40) or SHA-256 (64) object id in lowercase hexadecimal.
pub fn is_object_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The all-zero id git uses for "no object" on either side of a ref update.
pub fn is_zero_id(s: &str) -> bool {
    is_object_id(s) && s.bytes().all(|b| b == b'0')
}

pub(crate) fn check_object_id(s: &str) -> Result<&str, GitError> {
    if is_object_id(s) {
        Ok(s)
    } else {
        Err(GitError::InvalidObjectId(s.to_owned()))
    }
}

fn is_ref_name(s: &str) -> bool {
    s.starts_with("refs/") && s.len() > "refs/".len() && !s.chars().any(char::is_whitespace)
}

pub(crate) fn check_ref_name(s: &str) -> Result<&str, GitError> {
    if is_ref_name(s) {
        Ok(s)
    } else {
        Err(GitError::InvalidRefName(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZERO: &str = "0000000000000000000000000000000000000000";
    const A: &str = "1ec4e79207ee3c6c347946f691f43031fc18120a";
    const B: &str = "8514611a14b8e2b562f30d9ec32d55ac4f165caa";

    #[test]
    fn parses_the_hook_input() {
        let input = format!("{ZERO} {A} refs/heads/main\n{A} {B} refs/tags/v1.2.0\n\n");
        let updates = RefUpdate::parse_all(&input).expect("valid input");
        assert_eq!(
            updates,
            vec![
                RefUpdate {
                    old: ZERO.into(),
                    new: A.into(),
                    refname: "refs/heads/main".into()
                },
                RefUpdate {
                    old: A.into(),
                    new: B.into(),
                    refname: "refs/tags/v1.2.0".into()
                },
            ]
        );
    }

    #[test]
    fn rejects_malformed_lines() {
        for line in [
            "",
            &format!("{A} {B}"),
            &format!("{A} {B} refs/heads/main extra"),
            &format!("{A} {B} main"),
            &format!("{A} {B} refs/"),
            &format!("{A}  {B} refs/heads/main"),
            &format!("{} {B} refs/heads/main", A.to_uppercase()),
            &format!("{} {B} refs/heads/main", &A[..39]),
            &format!("--output=x {B} refs/heads/main"),
        ] {
            assert!(
                matches!(RefUpdate::parse(line), Err(GitError::InvalidRefUpdate(l)) if l == line),
                "{line:?} should be rejected"
            );
        }
    }

    #[test]
    fn classifies_refs() {
        let update = |old: &str, new: &str, refname: &str| RefUpdate {
            old: old.into(),
            new: new.into(),
            refname: refname.into(),
        };
        let main = update(ZERO, A, "refs/heads/main");
        assert!(main.is_deploy_branch() && main.is_branch() && main.is_create());
        assert!(!main.is_delete() && !main.is_tag());
        assert_eq!(main.branch_name(), Some("main"));
        assert!(update(A, B, "refs/heads/master").is_deploy_branch());

        let feature = update(A, B, "refs/heads/feature/main");
        assert!(!feature.is_deploy_branch() && feature.is_branch());
        assert_eq!(feature.branch_name(), Some("feature/main"));

        let tag = update(ZERO, B, "refs/tags/v2.0.0");
        assert!(tag.is_tag() && !tag.is_branch() && !tag.is_deploy_branch());
        assert_eq!(tag.tag_name(), Some("v2.0.0"));
        assert_eq!(main.tag_name(), None);

        let delete = update(A, ZERO, "refs/heads/main");
        assert!(delete.is_delete() && !delete.is_create());
    }

    #[test]
    fn object_ids_are_full_lowercase_hex() {
        assert!(is_object_id(A));
        assert!(is_object_id(&"ab".repeat(32)));
        assert!(!is_object_id(&A[..7]));
        assert!(!is_object_id("HEAD"));
        assert!(!is_object_id(&A.to_uppercase()));
        assert!(is_zero_id(ZERO));
        assert!(!is_zero_id(A));
        assert!(!is_zero_id("0"));
    }
}
