//! How lines look on the wire. Syslog drains get RFC 5424 messages with octet-counting framing
//! (RFC 6587 §3.4.1, the framing RFC 5425 prescribes for TLS). HTTPS drains get Heroku's
//! `application/logplex-1` body: the same framing around Heroku's variant of the message, which
//! has no STRUCTURED-DATA field, because receivers of that content type parse Heroku's lines.

use slipway_types::AppName;
use slipway_types::api::{LogEntry, LogSource};
use time::UtcOffset;

/// Which message layout a drain's receiver parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG`.
    Rfc5424,
    /// Heroku logplex: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID MSG`.
    Logplex,
}

/// Heroku's priorities, so filters written for Heroku drains keep working: app output is
/// local7.info, the router local3.info, and the platform's own lines syslog.notice.
fn priority(source: LogSource) -> u8 {
    match source {
        LogSource::App => 190,
        LogSource::Router => 158,
        LogSource::Build | LogSource::Platform => 45,
    }
}

/// One line as a syslog message: HOSTNAME is the app, APP-NAME is `app` for the app's own
/// output and `slipway` for the platform's lines (as `slipway logs` shows them), PROCID is the
/// dyno or `router`, `build`….
pub(super) fn message(app: &AppName, line: &LogEntry, layout: Layout) -> String {
    let at = line.at.to_offset(UtcOffset::UTC);
    let name = match line.source {
        LogSource::App => "app",
        LogSource::Router | LogSource::Build | LogSource::Platform => "slipway",
    };
    let structured_data = match layout {
        Layout::Rfc5424 => " -",
        Layout::Logplex => "",
    };
    format!(
        "<{}>1 {:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00 {app} {name} {} -{structured_data} {}",
        priority(line.source),
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond(),
        header_field(&line.process, 128),
        line.text,
    )
}

/// A header field as RFC 5424 allows it: 1 to `max` printable ASCII characters without
/// spaces, `-` when empty.
fn header_field(value: &str, max: usize) -> String {
    let field: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if field.is_empty() {
        "-".to_owned()
    } else {
        field
    }
}

/// Appends `message` with octet-counting framing: its length in bytes, a space, the message.
pub(super) fn push_framed(out: &mut Vec<u8>, message: &str) {
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message.as_bytes());
}

/// The framed messages of `lines`, one after the other: a syslog write or a logplex body.
pub(super) fn frames(app: &AppName, lines: &[LogEntry], layout: Layout) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.text.len() + 96).sum());
    for line in lines {
        push_framed(&mut out, &message(app, line, layout));
    }
    out
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;

    fn line(source: LogSource, process: &str, text: &str) -> LogEntry {
        LogEntry {
            // 2026-11-22T01:02:03.123456Z, seen from +02:00.
            at: OffsetDateTime::from_unix_timestamp_nanos(1_795_309_323_123_456_789)
                .unwrap()
                .to_offset(UtcOffset::from_hms(2, 0, 0).unwrap()),
            source,
            process: process.to_owned(),
            text: text.to_owned(),
        }
    }

    #[test]
    fn rfc5424_messages_carry_the_app_the_dyno_and_an_empty_structured_data() {
        let app: AppName = "shop".parse().unwrap();
        assert_eq!(
            message(
                &app,
                &line(LogSource::App, "web.1", "hello wörld"),
                Layout::Rfc5424
            ),
            "<190>1 2026-11-22T01:02:03.123456+00:00 shop app web.1 - - hello wörld"
        );
        assert_eq!(
            message(
                &app,
                &line(LogSource::Router, "router", "at=info"),
                Layout::Rfc5424
            ),
            "<158>1 2026-11-22T01:02:03.123456+00:00 shop slipway router - - at=info"
        );
        assert_eq!(
            message(&app, &line(LogSource::Platform, "", "x"), Layout::Rfc5424),
            "<45>1 2026-11-22T01:02:03.123456+00:00 shop slipway - - - x"
        );
    }

    #[test]
    fn logplex_messages_are_herokus_without_structured_data() {
        let app: AppName = "shop".parse().unwrap();
        assert_eq!(
            message(
                &app,
                &line(LogSource::Build, "build", "-----> Done"),
                Layout::Logplex
            ),
            "<45>1 2026-11-22T01:02:03.123456+00:00 shop slipway build - -----> Done"
        );
    }

    #[test]
    fn octet_counting_counts_bytes_not_characters() {
        let mut out = Vec::new();
        push_framed(&mut out, "é");
        push_framed(&mut out, "");
        assert_eq!(out, "2 é0 ".as_bytes());
        let app: AppName = "shop".parse().unwrap();
        let lines = [
            line(LogSource::App, "web.1", "one"),
            line(LogSource::App, "web.2", "two\nlines"),
        ];
        let framed = frames(&app, &lines, Layout::Rfc5424);
        let mut rest = framed.as_slice();
        let mut parsed = Vec::new();
        while !rest.is_empty() {
            let space = rest.iter().position(|b| *b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&rest[..space])
                .unwrap()
                .parse()
                .unwrap();
            parsed.push(std::str::from_utf8(&rest[space + 1..space + 1 + len]).unwrap());
            rest = &rest[space + 1 + len..];
        }
        assert_eq!(parsed.len(), 2);
        assert!(parsed[1].ends_with("web.2 - - two\nlines"), "{}", parsed[1]);
    }
}
