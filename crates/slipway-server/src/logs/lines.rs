//! Container output arrives in chunks that need not end at a line break, with stdout and
//! stderr interleaved; this turns it back into lines.

use slipway_engine::OutputStream;

/// Longer lines are cut into pieces this size, so an app printing without line breaks cannot
/// grow the buffer without bound.
pub(super) const MAX_LINE: usize = 16 * 1024;

/// The unfinished last line of each stream.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl LineSplitter {
    /// The lines `bytes` completes, without their line breaks (`\n` or `\r\n`).
    pub(crate) fn feed(&mut self, stream: OutputStream, bytes: &[u8]) -> Vec<String> {
        let partial = match stream {
            OutputStream::Stdout => &mut self.stdout,
            OutputStream::Stderr => &mut self.stderr,
        };
        let mut lines = Vec::new();
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            partial.extend_from_slice(&rest[..end]);
            lines.push(text(partial));
            partial.clear();
            rest = &rest[end + 1..];
        }
        partial.extend_from_slice(rest);
        while partial.len() >= MAX_LINE {
            let cut = char_boundary(partial, MAX_LINE);
            lines.push(text(&partial[..cut]));
            partial.drain(..cut);
        }
        lines
    }

    /// What is left once the output ended: a last line without a line break.
    pub(crate) fn finish(self) -> Vec<String> {
        [self.stdout, self.stderr]
            .into_iter()
            .filter(|partial| !partial.is_empty())
            .map(|partial| text(&partial))
            .collect()
    }
}

fn text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

/// The largest index up to `max` that does not split a UTF-8 character, unless there is none
/// near (the bytes are not UTF-8 anyway).
fn char_boundary(bytes: &[u8], max: usize) -> usize {
    (max.saturating_sub(3)..=max)
        .rev()
        .find(|&i| bytes.get(i).is_none_or(|b| (b & 0xC0) != 0x80))
        .unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_become_lines_per_stream() {
        let mut splitter = LineSplitter::default();
        assert!(splitter.feed(OutputStream::Stdout, b"hel").is_empty());
        assert_eq!(
            splitter.feed(OutputStream::Stderr, b"oops\r\nhalf"),
            ["oops"]
        );
        assert_eq!(
            splitter.feed(OutputStream::Stdout, b"lo\n\nworld\n"),
            ["hello", "", "world"]
        );
        assert_eq!(
            splitter.feed(OutputStream::Stderr, b" done\n"),
            ["half done"]
        );
        assert!(splitter.feed(OutputStream::Stdout, b"tail").is_empty());
        assert_eq!(splitter.finish(), ["tail"]);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_dropped() {
        let mut splitter = LineSplitter::default();
        assert_eq!(
            splitter.feed(OutputStream::Stdout, b"a\xffb\n"),
            ["a\u{fffd}b"]
        );
    }

    #[test]
    fn endless_lines_are_cut_at_character_boundaries() {
        let mut splitter = LineSplitter::default();
        // 'é' is two bytes; an odd prefix puts one across the cut.
        let long = format!("x{}", "é".repeat(MAX_LINE));
        let lines = splitter.feed(OutputStream::Stdout, long.as_bytes());
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|line| !line.contains('\u{fffd}')));
        assert!(lines.iter().all(|line| line.len() <= MAX_LINE));
        let rest = splitter.finish().concat();
        assert_eq!(format!("{}{rest}", lines.concat()), long);
    }
}
