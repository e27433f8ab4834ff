//! The `~/.netrc` entry that lets plain `git push` (through curl) send the API token to the
//! server's smart-HTTP endpoint. Edits touch only the entry for one host and keep every other
//! entry, comment and macro as written.

use std::path::Path;

use crate::files;

/// The user name git sends; the server ignores it and checks the password, a token.
const LOGIN: &str = "slipway";

/// Adds or replaces the entry for `host`.
pub(crate) fn store(path: &Path, host: &str, token: &str) -> anyhow::Result<()> {
    let text = files::read_optional(path)?.unwrap_or_default();
    files::write_private(path, &with_machine(&text, host, LOGIN, token))
}

/// Removes the entry for `host`; a missing file or entry is not an error.
pub(crate) fn forget(path: &Path, host: &str) -> anyhow::Result<()> {
    let Some(text) = files::read_optional(path)? else {
        return Ok(());
    };
    let kept = without_machine(&text, host);
    if kept != text {
        files::write_private(path, &kept)?;
    }
    Ok(())
}

/// Where an entry starts in the file and, for `machine` entries, the host it is for.
struct Entry<'a> {
    start: usize,
    keyword: &'a str,
    host: Option<&'a str>,
}

/// Splits the file into entries: each runs from its keyword (`machine`, `default`, `macdef`)
/// to the next one. A `macdef` body runs to the next blank line and is not searched.
fn entries(text: &str) -> Vec<Entry<'_>> {
    let mut entries: Vec<Entry<'_>> = Vec::new();
    let mut expect_host = false;
    let mut pos = 0;
    while let Some(offset) = text[pos..].find(|c: char| !c.is_whitespace()) {
        let start = pos + offset;
        let end = text[start..]
            .find(char::is_whitespace)
            .map_or(text.len(), |len| start + len);
        let word = &text[start..end];
        pos = end;
        if expect_host {
            if let Some(entry) = entries.last_mut() {
                entry.host = Some(word);
            }
            expect_host = false;
            continue;
        }
        match word {
            "machine" | "default" | "macdef" => {
                entries.push(Entry {
                    start,
                    keyword: word,
                    host: None,
                });
                expect_host = word == "machine";
                if word == "macdef" {
                    pos = text[pos..]
                        .find("\n\n")
                        .map_or(text.len(), |blank| pos + blank + 2);
                }
            }
            _ => {}
        }
    }
    entries
}

fn without_machine(text: &str, host: &str) -> String {
    let entries = entries(text);
    let mut kept = String::with_capacity(text.len());
    let mut copied_to = 0;
    for (index, entry) in entries.iter().enumerate() {
        if entry.keyword == "machine" && entry.host == Some(host) {
            let end = entries.get(index + 1).map_or(text.len(), |next| next.start);
            kept.push_str(&text[copied_to..entry.start]);
            copied_to = end;
        }
    }
    kept.push_str(&text[copied_to..]);
    kept
}

/// The new entry goes before a `default` entry, if there is one: netrc readers stop at the
/// first entry that matches, and `default` matches every host.
fn with_machine(text: &str, host: &str, login: &str, password: &str) -> String {
    let kept = without_machine(text, host);
    let entry = format!("machine {host} login {login} password {password}\n");
    match entries(&kept)
        .iter()
        .find(|entry| entry.keyword == "default")
    {
        Some(default) => {
            let (before, after) = kept.split_at(default.start);
            format!("{before}{entry}{after}")
        }
        None if kept.is_empty() || kept.ends_with('\n') => format!("{kept}{entry}"),
        None => format!("{kept}\n{entry}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_an_entry_to_an_empty_file() {
        assert_eq!(
            with_machine("", "example.test", "slipway", "tok"),
            "machine example.test login slipway password tok\n"
        );
    }

    #[test]
    fn replaces_the_entry_for_the_host_and_keeps_the_others() {
        let text = "machine github.com login me password gh\n\
                    machine example.test\n  login slipway\n  password old\n\
                    machine other.test login x password y";
        assert_eq!(
            with_machine(text, "example.test", "slipway", "new"),
            "machine github.com login me password gh\n\
             machine other.test login x password y\n\
             machine example.test login slipway password new\n"
        );
    }

    #[test]
    fn inserts_before_default_and_skips_macro_bodies() {
        let text = "macdef init\nmachine example.test\n\n\
                    machine a.test login a password a\n\
                    default login anonymous password me@example.test\n";
        assert_eq!(
            with_machine(text, "example.test", "slipway", "tok"),
            "macdef init\nmachine example.test\n\n\
             machine a.test login a password a\n\
             machine example.test login slipway password tok\n\
             default login anonymous password me@example.test\n"
        );
    }

    #[test]
    fn removal_leaves_other_hosts_alone() {
        let text = "machine a.test login a password a\n\
                    machine example.test login slipway password tok\n\
                    machine b.test login b password b\n";
        assert_eq!(
            without_machine(text, "example.test"),
            "machine a.test login a password a\nmachine b.test login b password b\n"
        );
        assert_eq!(without_machine(text, "absent.test"), text);
    }

    #[test]
    fn store_and_forget_keep_the_file_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".netrc");
        std::fs::write(&path, "machine a.test login a password a\n").unwrap();

        store(&path, "example.test", "tok").unwrap();
        assert_eq!(files::mode(&path), 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "machine a.test login a password a\nmachine example.test login slipway password tok\n"
        );

        forget(&path, "example.test").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "machine a.test login a password a\n"
        );
        forget(&dir.path().join("absent"), "example.test").unwrap();
    }
}
