//! `.dockerignore` for Dockerfile builds. The Docker CLI, not the engine, leaves the files it
//! lists out of the build context, so Slipway does the same before it hands the context over.
//! Each line is cleaned as Docker cleans it (trimmed, `path.Clean`ed, leading `/` dropped) and
//! becomes a one-pattern gitignore matcher of the `ignore` crate, anchored at the context root
//! because Docker matches every pattern against the whole path from the root. Docker's rule
//! for a path is then applied: the last line matching the path or one of its parents decides.

use std::io::{self, Read};
use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::upload::relative_path;

/// Files every Dockerfile build sends whatever `.dockerignore` says, as `docker build` does:
/// the engine needs the Dockerfile, and drops both from what `COPY` sees itself when they are
/// listed.
const ALWAYS_SENT: &[&str] = &["Dockerfile", ".dockerignore"];

/// The rules of one `.dockerignore`, one matcher per line, in order.
pub(crate) struct DockerIgnore {
    rules: Vec<Gitignore>,
}

impl DockerIgnore {
    /// Parses `.dockerignore`; an error names the line that is not a valid pattern.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim_start_matches('\u{feff}');
            if line.starts_with('#') {
                continue;
            }
            let line = line.trim();
            let (negated, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let Some(pattern) = clean(pattern) else {
                continue;
            };
            let anchored = format!("{}/{pattern}", if negated { "!" } else { "" });
            let invalid = |error: ignore::Error| format!("line {}: `{line}`: {error}", index + 1);
            let mut builder = GitignoreBuilder::new(".");
            builder.add_line(None, &anchored).map_err(invalid)?;
            rules.push(builder.build().map_err(invalid)?);
        }
        Ok(Self { rules })
    }

    fn excludes(&self, path: &Path, is_dir: bool) -> bool {
        if ALWAYS_SENT.iter().any(|kept| path == Path::new(kept)) {
            return false;
        }
        self.rules
            .iter()
            .rev()
            .map(|rule| rule.matched_path_or_any_parents(path, is_dir))
            .find(|decision| !decision.is_none())
            .is_some_and(|decision| decision.is_ignore())
    }

    /// The source tar without what the rules exclude, and how many files that left out.
    pub(crate) fn filter(&self, source_tar: &[u8]) -> io::Result<(Vec<u8>, usize)> {
        let mut kept = tar::Builder::new(Vec::new());
        let mut left_out = 0;
        let mut archive = tar::Archive::new(source_tar);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let kind = entry.header().entry_type();
            let is_dir = kind.is_dir();
            if !(is_dir || kind.is_file() || kind.is_symlink() || kind.is_hard_link()) {
                continue;
            }
            let Some(path) = relative_path(&entry.path()?)? else {
                continue;
            };
            if self.excludes(&path, is_dir) {
                left_out += usize::from(!is_dir);
                continue;
            }
            let mut header = entry.header().clone();
            if kind.is_symlink() || kind.is_hard_link() {
                let target = entry.link_name()?.unwrap_or_default().into_owned();
                kept.append_link(&mut header, &path, target)?;
            } else {
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                kept.append_data(&mut header, &path, data.as_slice())?;
            }
        }
        Ok((kept.into_inner()?, left_out))
    }
}

/// A pattern as Go's `path.Clean` leaves it, without a leading `/`; `None` for one that
/// names the context root itself or nothing.
fn clean(pattern: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn source(paths: &[&str]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for path in paths {
            let mut header = tar::Header::new_gnu();
            if let Some(dir) = path.strip_suffix('/') {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, dir, &[][..]).unwrap();
            } else {
                header.set_mode(0o644);
                header.set_size(1);
                builder.append_data(&mut header, path, &b"x"[..]).unwrap();
            }
        }
        builder.into_inner().unwrap()
    }

    fn kept(rules: &str, paths: &[&str]) -> (BTreeSet<String>, usize) {
        let (tar, left_out) = DockerIgnore::parse(rules)
            .unwrap()
            .filter(&source(paths))
            .unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let names = archive
            .entries()
            .unwrap()
            .map(|entry| entry.unwrap().path().unwrap().display().to_string())
            .collect();
        (names, left_out)
    }

    fn set(paths: &[&str]) -> BTreeSet<String> {
        paths.iter().map(|path| path.to_string()).collect()
    }

    #[test]
    fn patterns_are_anchored_at_the_root_like_docker_not_git() {
        let (names, left_out) = kept(
            "# secrets\nsecret.txt\n/logs/\n*.pyc\n",
            &[
                "Dockerfile",
                "secret.txt",
                "app/secret.txt",
                "logs/",
                "logs/a.log",
                "x.pyc",
                "app/y.pyc",
            ],
        );
        assert_eq!(
            names,
            set(&["Dockerfile", "app/secret.txt", "app/y.pyc"]),
            "only root-level matches are left out"
        );
        assert_eq!(left_out, 3);
    }

    #[test]
    fn double_stars_and_exceptions_work_and_the_last_match_wins() {
        let (names, _) = kept(
            "**/*.log\nnode_modules\n!node_modules/keep.js\ndocs/*\n!docs/README.md\n",
            &[
                "a.log",
                "deep/er/b.log",
                "node_modules/",
                "node_modules/x.js",
                "node_modules/keep.js",
                "docs/guide.md",
                "docs/README.md",
                "src/main.py",
            ],
        );
        assert_eq!(
            names,
            set(&["node_modules/keep.js", "docs/README.md", "src/main.py"])
        );
    }

    #[test]
    fn a_later_folder_pattern_beats_an_earlier_exception_inside_it() {
        let (names, _) = kept("!dir/keep\ndir\n", &["dir/keep", "dir/x", "other"]);
        assert_eq!(names, set(&["other"]));
    }

    #[test]
    fn the_dockerfile_and_dockerignore_are_always_sent() {
        let (names, left_out) = kept("*\n", &["Dockerfile", ".dockerignore", "app.py"]);
        assert_eq!(names, set(&["Dockerfile", ".dockerignore"]));
        assert_eq!(left_out, 1);
    }

    #[test]
    fn lines_are_cleaned_like_go_path_clean() {
        assert_eq!(clean("./build//out/"), Some("build/out".to_owned()));
        assert_eq!(clean("/tmp/../cache"), Some("cache".to_owned()));
        assert_eq!(clean("."), None);
        assert_eq!(clean(""), None);
        let (names, _) = kept(
            "  ./build/  \n\n! build/keep\n",
            &["build/x", "build/keep", "b"],
        );
        assert_eq!(names, set(&["build/keep", "b"]));
    }
}
