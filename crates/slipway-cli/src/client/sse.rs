//! Server-Sent Events, as the WHATWG HTML standard defines the `text/event-stream` format:
//! enough of it for the log stream. Bytes go in as the network delivers them; whole events
//! come out.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field; `message` when the server sent none.
    pub(crate) name: String,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: String,
}

#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// The current line, until its line break arrives.
    line: Vec<u8>,
    /// The last chunk ended with `\r`: a `\n` starting the next one belongs to that break.
    after_cr: bool,
    name: Option<String>,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// The events that `chunk` completes. A stream that ends in the middle of an event drops
    /// that event, as the standard says.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            rest = rest.strip_prefix(b"\n").unwrap_or(rest);
        }
        while let Some(end) = rest.iter().position(|b| matches!(b, b'\n' | b'\r')) {
            self.line.extend_from_slice(&rest[..end]);
            let line = std::mem::take(&mut self.line);
            events.extend(self.line_done(&line));
            let crlf = rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n');
            if rest[end] == b'\r' && end + 1 == rest.len() {
                self.after_cr = true;
            }
            rest = &rest[end + if crlf { 2 } else { 1 }..];
        }
        self.line.extend_from_slice(rest);
        events
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            let name = self.name.take();
            if !std::mem::take(&mut self.has_data) {
                return None;
            }
            let mut data = std::mem::take(&mut self.data);
            data.pop();
            return Some(SseEvent {
                name: name.unwrap_or_else(|| "message".to_owned()),
                data,
            });
        }
        if line.starts_with(b":") {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => self.name = Some(value.to_owned()),
            // `id` and `retry` matter for reconnecting, which `slipway logs` does not do.
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(data: &str) -> SseEvent {
        SseEvent {
            name: "message".to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn events_end_at_a_blank_line_and_comments_are_skipped() {
        let mut parser = SseParser::default();
        let events = parser.feed(b": keep-alive\n\ndata: {\"a\":1}\n\ndata:no space\n\n");
        assert_eq!(events, [message("{\"a\":1}"), message("no space")]);
    }

    #[test]
    fn events_split_anywhere_across_chunks() {
        let stream = b"data: first\r\n\r\nevent: custom\rdata: x\rdata:  y\r\rdata: last\n\n";
        let expected = [
            message("first"),
            SseEvent {
                name: "custom".to_owned(),
                data: "x\n y".to_owned(),
            },
            message("last"),
        ];
        for cut in 0..stream.len() {
            for second_cut in cut..stream.len() {
                let mut parser = SseParser::default();
                let mut events = parser.feed(&stream[..cut]);
                events.extend(parser.feed(&stream[cut..second_cut]));
                events.extend(parser.feed(&stream[second_cut..]));
                assert_eq!(events, expected, "cut at {cut} and {second_cut}");
            }
        }
    }

    #[test]
    fn multibyte_characters_may_straddle_chunks() {
        let stream = "data: héllo wörld\n\n".as_bytes();
        let mut parser = SseParser::default();
        let mut events = parser.feed(&stream[..8]);
        events.extend(parser.feed(&stream[8..]));
        assert_eq!(events, [message("héllo wörld")]);
    }

    #[test]
    fn an_event_without_data_is_not_dispatched_and_a_cut_one_is_dropped() {
        let mut parser = SseParser::default();
        assert!(parser.feed(b"event: ping\n\n").is_empty());
        assert_eq!(parser.feed(b"data\n\n"), [message("")]);
        assert!(parser.feed(b"data: half an event\n").is_empty());
    }
}
