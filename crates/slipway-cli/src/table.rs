//! Plain-text output: aligned tables, `Key: value` blocks and timestamps, the same way in
//! every command.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Columns separated by two spaces, padded to the widest cell; the last column is not
/// padded, so lines carry no trailing spaces.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|cell| (*cell).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len(), "row width");
        self.rows.push(cells);
    }

    pub(crate) fn render(&self) -> String {
        let lines = std::iter::once(&self.header).chain(&self.rows);
        let mut widths = vec![0; self.header.len()];
        for line in lines.clone() {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in lines {
            let mut text = String::new();
            for (index, (cell, width)) in line.iter().zip(&widths).enumerate() {
                if index > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                let pad = width - cell.chars().count();
                text.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `Key:  value` lines with the values aligned.
pub(crate) fn render_pairs(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(key, _)| key.chars().count()).max();
    let mut out = String::new();
    for (key, value) in pairs {
        let pad = width.unwrap_or_default() - key.chars().count();
        let line = format!("{key}:{}  {value}", " ".repeat(pad));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Times are shown in UTC as RFC 3339 to the second: unambiguous, sortable and the same
/// in `--json` output.
pub(crate) fn time(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// A release version as users write it: `v1.2.0`.
pub(crate) fn version(version: &str) -> String {
    format!("v{version}")
}

/// An optional cell: `-` when there is nothing to show.
pub(crate) fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_owned())
}

/// Commits are shown as their first seven hex digits, as git does.
pub(crate) fn short_sha(commit: &str) -> String {
    commit.chars().take(7).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns_without_trailing_spaces() {
        let mut table = Table::new(&["NAME", "RELEASE", "URL"]);
        table.row(vec![
            "a".into(),
            "v1.0.0".into(),
            "http://a.localhost".into(),
        ]);
        table.row(vec!["longer-name".into(), "-".into(), String::new()]);
        assert_eq!(
            table.render(),
            "NAME         RELEASE  URL\n\
             a            v1.0.0   http://a.localhost\n\
             longer-name  -\n"
        );
    }

    #[test]
    fn counts_characters_not_bytes() {
        let mut table = Table::new(&["A", "B"]);
        table.row(vec!["été".into(), "x".into()]);
        assert_eq!(table.render(), "A    B\nété  x\n");
    }

    #[test]
    fn pairs_align_values() {
        assert_eq!(
            render_pairs(&[("Web URL", "http://a".into()), ("Release", "v1.0.0".into())]),
            "Web URL:  http://a\nRelease:  v1.0.0\n"
        );
    }

    #[test]
    fn times_are_utc_rfc3339_seconds() {
        let at = OffsetDateTime::parse("2026-11-02T12:04:05.123+02:00", &Rfc3339).unwrap();
        assert_eq!(time(at), "2026-11-02T10:04:05Z");
    }

    #[test]
    fn small_formatters() {
        assert_eq!(version("1.2.0"), "v1.2.0");
        assert_eq!(short_sha("0123456789abcdef"), "0123456");
        assert_eq!(or_dash(None), "-");
    }
}
