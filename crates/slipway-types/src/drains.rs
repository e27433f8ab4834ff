//! Log drains: where an app's log lines are shipped (`drains:add URL`), the drain URL's
//! parsing and redaction, and the API bodies of `/v1/apps/{app}/drains`.
//!
//! A drain URL may hold credentials (`https://user:secret@host/…`, `?token=…`), so it is only
//! ever shown redacted: the password and the query are replaced by `…`.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Longest drain URL accepted: a URL is a destination, not a payload.
pub const MAX_DRAIN_URL: usize = 2048;

/// How a drain ships lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainKind {
    /// `syslog+tls://host:port`: RFC 5424 messages, octet-counting framing (RFC 6587) over TLS
    /// (RFC 5425).
    SyslogTls,
    /// `syslog://host:port`: the same over plain TCP, for a receiver on the same host or
    /// network.
    Syslog,
    /// `https://…`: batches of lines POSTed as `application/logplex-1`, like Heroku's drains.
    Https,
}

impl DrainKind {
    pub fn scheme(self) -> &'static str {
        match self {
            DrainKind::SyslogTls => "syslog+tls",
            DrainKind::Syslog => "syslog",
            DrainKind::Https => "https",
        }
    }

    fn default_port(self) -> Option<u16> {
        match self {
            DrainKind::Https => Some(443),
            DrainKind::SyslogTls | DrainKind::Syslog => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrainUrlError {
    #[error("drain url `{0}` must start with syslog+tls://, syslog:// or https://")]
    Scheme(String),
    #[error("drain url `{0}` has no host")]
    NoHost(String),
    #[error("drain url `{0}` needs a port, like syslog+tls://logs.example.com:6514")]
    NoPort(String),
    #[error("drain url `{url}` has an invalid port `{port}`")]
    Port { url: String, port: String },
    #[error("drain url `{0}` has an invalid host")]
    Host(String),
    #[error(
        "drain url `{0}` may not have a path, query or credentials: syslog takes host and port only"
    )]
    SyslogExtras(String),
    #[error("drain url `{0}` has spaces or control characters")]
    Characters(String),
    #[error("drain url is longer than {MAX_DRAIN_URL} characters")]
    TooLong,
}

/// A parsed drain URL. `Debug` and `Display` show it redacted; [`DrainUrl::as_secret_str`]
/// gives the whole URL, for delivery and storage only.
#[derive(Clone, PartialEq, Eq)]
pub struct DrainUrl {
    raw: String,
    kind: DrainKind,
    /// As written: a name, an IPv4 address or a bracketed IPv6 address (`[::1]`).
    host: String,
    port: u16,
    /// `user:password` or `user`, when given.
    userinfo: Option<String>,
    /// From the first `/` on, without the query; empty when none.
    path: String,
    query: Option<String>,
}

impl DrainUrl {
    pub fn parse(text: &str) -> Result<DrainUrl, DrainUrlError> {
        let text = text.trim();
        if text.len() > MAX_DRAIN_URL {
            return Err(DrainUrlError::TooLong);
        }
        // Errors quote the URL: redacted as far as it can be before it is understood.
        let shown = || redact_loosely(text);
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(DrainUrlError::Characters(shown()));
        }
        let (kind, rest) = [DrainKind::SyslogTls, DrainKind::Syslog, DrainKind::Https]
            .into_iter()
            .find_map(|kind| {
                let rest = text.get(kind.scheme().len()..)?;
                (text[..kind.scheme().len()].eq_ignore_ascii_case(kind.scheme())
                    && rest.starts_with("://"))
                .then(|| (kind, &rest[3..]))
            })
            .ok_or_else(|| DrainUrlError::Scheme(shown()))?;
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let tail = tail.split_once('#').map_or(tail, |(before, _)| before);
        let (path, query) = match tail.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (tail, None),
        };
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        let (host, port) =
            split_host_port(host_port).ok_or_else(|| DrainUrlError::Host(shown()))?;
        if host.is_empty() {
            return Err(DrainUrlError::NoHost(shown()));
        }
        if !valid_host(host) {
            return Err(DrainUrlError::Host(shown()));
        }
        let port = match port {
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| DrainUrlError::Port {
                    url: shown(),
                    port: port.to_owned(),
                })?,
            None => kind
                .default_port()
                .ok_or_else(|| DrainUrlError::NoPort(shown()))?,
        };
        let is_syslog = matches!(kind, DrainKind::Syslog | DrainKind::SyslogTls);
        if is_syslog && (userinfo.is_some() || query.is_some() || !matches!(path, "" | "/")) {
            return Err(DrainUrlError::SyslogExtras(shown()));
        }
        Ok(DrainUrl {
            raw: text.to_owned(),
            kind,
            host: host.to_ascii_lowercase(),
            port,
            userinfo: userinfo.filter(|u| !u.is_empty()).map(str::to_owned),
            path: path.to_owned(),
            query: query.map(str::to_owned),
        })
    }

    pub fn kind(&self) -> DrainKind {
        self.kind
    }

    /// The host as a name or an IP address, without IPv6 brackets: what to connect to and
    /// what the TLS certificate must name.
    pub fn host(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user and password of an HTTPS drain, for HTTP Basic authentication.
    pub fn credentials(&self) -> Option<(&str, Option<&str>)> {
        self.userinfo
            .as_deref()
            .map(|userinfo| match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            })
    }

    /// The URL to POST to, without the credentials (they travel as a header).
    pub fn endpoint(&self) -> String {
        let mut url = format!(
            "{}://{}:{}{}",
            self.kind.scheme(),
            self.host,
            self.port,
            self.path
        );
        if let Some(query) = &self.query {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// The URL as the user gave it, secrets included: to store (sealed) and to compare.
    pub fn as_secret_str(&self) -> &str {
        &self.raw
    }

    /// The URL to show: the password and the query are replaced by `…`.
    pub fn redacted(&self) -> String {
        let mut shown = format!("{}://", self.kind.scheme());
        if let Some(userinfo) = &self.userinfo {
            match userinfo.split_once(':') {
                Some((user, _)) => shown.push_str(&format!("{user}:…@")),
                None => shown.push_str(&format!("{userinfo}@")),
            }
        }
        shown.push_str(&self.host);
        if Some(self.port) != self.kind.default_port() {
            shown.push_str(&format!(":{}", self.port));
        }
        shown.push_str(&self.path);
        if self.query.is_some() {
            shown.push_str("?…");
        }
        shown
    }
}

impl fmt::Display for DrainUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DrainUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DrainUrl({})", self.redacted())
    }
}

/// `host` and `port` of `host:port`, `host`, `[v6]:port` or `[v6]`; `None` when brackets do
/// not match.
fn split_host_port(host_port: &str) -> Option<(&str, Option<&str>)> {
    if host_port.starts_with('[') {
        let end = host_port.find(']')?;
        let (host, rest) = host_port.split_at(end + 1);
        return match rest {
            "" => Some((host, None)),
            _ => Some((host, Some(rest.strip_prefix(':')?))),
        };
    }
    Some(match host_port.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host_port, None),
    })
}

fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A URL that did not parse, with whatever looks like a secret hidden: everything between
/// `://` and the last `@`, and the query.
fn redact_loosely(text: &str) -> String {
    let mut shown = text.to_owned();
    if let Some(query) = shown.find('?') {
        shown.truncate(query);
        shown.push_str("?…");
    }
    if let (Some(start), Some(at)) = (shown.find("://"), shown.rfind('@'))
        && at > start
    {
        shown.replace_range(start + 3..at, "…");
    }
    shown
}

/// `POST /v1/apps/{app}/drains`. A plain string so the server can say what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddDrain {
    pub url: String,
}

/// One drain of an app, with how its delivery is going since the server started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainInfo {
    /// `d.<uuid>`: names the drain in `drains:remove`, and is sent with every batch
    /// (`Logplex-Drain-Token`) so a receiver can tell drains apart.
    pub id: String,
    /// Redacted: see [`DrainUrl::redacted`].
    pub url: String,
    pub kind: DrainKind,
    /// Lines the receiver accepted.
    pub delivered: u64,
    /// Lines dropped because the buffer was full while the receiver was slow or down.
    pub dropped: u64,
    /// Lines waiting to be sent.
    pub buffered: u64,
    /// Why the last attempt failed, while delivery is failing.
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_schemes_parse_with_their_ports() {
        let tls = DrainUrl::parse("syslog+tls://Logs.Example.com:6514").unwrap();
        assert_eq!(tls.kind(), DrainKind::SyslogTls);
        assert_eq!((tls.host(), tls.port()), ("logs.example.com", 6514));
        let plain = DrainUrl::parse("syslog://127.0.0.1:514/").unwrap();
        assert_eq!(plain.kind(), DrainKind::Syslog);
        let https = DrainUrl::parse("https://user:s3cret@[::1]/logs?token=abc").unwrap();
        assert_eq!(https.kind(), DrainKind::Https);
        assert_eq!((https.host(), https.port()), ("::1", 443));
        assert_eq!(https.credentials(), Some(("user", Some("s3cret"))));
        assert_eq!(https.endpoint(), "https://[::1]:443/logs?token=abc");
        assert_eq!(
            https.as_secret_str(),
            "https://user:s3cret@[::1]/logs?token=abc"
        );
    }

    #[test]
    fn redaction_hides_the_password_and_the_query() {
        let url = DrainUrl::parse("https://user:s3cret@logs.example.com:8443/in?key=k3y").unwrap();
        assert_eq!(url.redacted(), "https://user:…@logs.example.com:8443/in?…");
        assert_eq!(url.to_string(), url.redacted());
        let debug = format!("{url:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("k3y"),
            "{debug}"
        );
        assert_eq!(
            DrainUrl::parse("https://logs.example.com/")
                .unwrap()
                .redacted(),
            "https://logs.example.com/"
        );
    }

    #[test]
    fn bad_urls_get_one_line_errors_without_secrets() {
        for (bad, expected) in [
            ("http://user:pw@example.com/", "must start with"),
            ("syslog+tls://logs.example.com", "needs a port"),
            ("syslog://logs.example.com:99999", "invalid port `99999`"),
            ("syslog://:514", "has no host"),
            (
                "syslog+tls://user:pw@logs.example.com:6514",
                "syslog takes host and port only",
            ),
            ("https://bad_host/", "invalid host"),
            ("https://[::1/", "invalid host"),
            ("https://exa mple.com/", "spaces"),
        ] {
            let error = DrainUrl::parse(bad).unwrap_err().to_string();
            assert!(error.contains(expected), "{bad}: {error}");
            assert!(!error.contains("pw"), "{bad}: {error}");
            assert!(!error.contains('\n'), "{bad}: {error}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_DRAIN_URL));
        assert_eq!(DrainUrl::parse(&long).unwrap_err(), DrainUrlError::TooLong);
    }
}
