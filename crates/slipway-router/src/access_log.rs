//! The one log line per request, in Heroku's router format so existing log tooling can read it:
//!
//! `at=info method=GET path="/" host=demo.example.com request_id=… fwd="127.0.0.1" dyno=web.1 connect=1ms service=12ms status=200 bytes=1234`
//!
//! Requests the router answered itself start with `at=error code=H.. desc="…"`; fields that do
//! not apply (no backend was picked) are left empty, as Heroku does.

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{Method, Uri};
use slipway_types::AppName;

use crate::stats::AppMetrics;
use crate::table::Site;

/// The tracing target of router log lines, so subscribers can send them to the app's log.
pub const LOG_TARGET: &str = "slipway::router";

/// Receives every log line of a request to a known app, with the app, so the control plane
/// can keep it in that app's log without parsing tracing output. It runs on the request path
/// when the response ends: it should hand the line off, not do I/O.
#[derive(Clone)]
pub struct AccessLogSink(Arc<SinkFn>);

type SinkFn = dyn Fn(&AppName, String) + Send + Sync;

impl AccessLogSink {
    pub fn new(sink: impl Fn(&AppName, String) + Send + Sync + 'static) -> Self {
        Self(Arc::new(sink))
    }
}

impl fmt::Debug for AccessLogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessLogSink")
    }
}

pub(crate) struct AccessLog {
    /// The app the host belongs to, once known.
    pub(crate) site: Option<Arc<Site>>,
    /// The app's series, or those of unknown hosts.
    pub(crate) metrics: Arc<AppMetrics>,
    sink: Option<AccessLogSink>,
    method: Method,
    /// Kept as received (a cheap clone) and only turned into text when a line is written.
    uri: Uri,
    host: String,
    request_id: HeaderValue,
    fwd: HeaderValue,
    pub(crate) dyno: Option<String>,
    /// When the request was handed to the upstream client; `service` is measured from here.
    pub(crate) sent_at: Option<Instant>,
    pub(crate) connect: Option<Duration>,
    pub(crate) error: Option<(&'static str, &'static str)>,
    pub(crate) status: u16,
}

impl AccessLog {
    pub(crate) fn new(
        method: Method,
        uri: Uri,
        host: String,
        request_id: HeaderValue,
        fwd: HeaderValue,
        sink: Option<AccessLogSink>,
        metrics: Arc<AppMetrics>,
    ) -> Self {
        Self {
            site: None,
            metrics,
            sink,
            method,
            uri,
            host,
            request_id,
            fwd,
            dyno: None,
            sent_at: None,
            connect: None,
            error: None,
            status: 0,
        }
    }

    /// Logs the finished request and records its metrics; `bytes` is the response body size
    /// sent to the client. The line is only written out when someone reads it.
    pub(crate) fn emit(&self, bytes: u64) {
        let service = self.sent_at.map(|sent| {
            sent.elapsed()
                .saturating_sub(self.connect.unwrap_or_default())
        });
        self.metrics.finished(self.status, service, bytes);
        let app = self.site.as_ref().map(|site| &site.app);
        let sink = self.sink.as_ref().zip(app);
        if sink.is_none() && !tracing::enabled!(target: LOG_TARGET, tracing::Level::INFO) {
            return;
        }
        let line = self.line(service, bytes);
        let app_name = app.map_or("", AppName::as_str);
        tracing::info!(target: LOG_TARGET, app = app_name, status = self.status, "{line}");
        if let Some((sink, app)) = sink {
            (sink.0)(app, line);
        }
    }

    fn line(&self, service: Option<Duration>, bytes: u64) -> String {
        let mut line = String::with_capacity(256);
        match self.error {
            None => line.push_str("at=info"),
            Some((code, desc)) => {
                let _ = write!(line, "at=error code={code} desc={}", Quoted(desc));
            }
        }
        let _ = write!(
            line,
            " method={} path={} host={} request_id={} fwd={} dyno={} connect={} service={} status={} bytes={}",
            self.method,
            Quoted(self.uri.path_and_query().map_or("/", PathAndQuery::as_str)),
            Bare(&self.host),
            Bare(self.request_id.to_str().unwrap_or_default()),
            Quoted(self.fwd.to_str().unwrap_or_default()),
            Bare(self.dyno.as_deref().unwrap_or_default()),
            Millis(self.connect),
            Millis(service),
            self.status,
            bytes,
        );
        line
    }
}

/// A value in double quotes with `"` and `\` escaped.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            if matches!(c, '"' | '\\') {
                f.write_char('\\')?;
            }
            f.write_char(c)?;
        }
        f.write_char('"')
    }
}

/// An unquoted value: anything that could split or fake a field (spaces, quotes, `=`, control
/// characters) becomes `_`, since hosts and ids come from the client.
struct Bare<'a>(&'a str);

impl fmt::Display for Bare<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            let safe = c.is_ascii_graphic() && !matches!(c, '"' | '=' | '\\');
            f.write_char(if safe { c } else { '_' })?;
        }
        Ok(())
    }
}

struct Millis(Option<Duration>);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(duration) => write!(f, "{}ms", duration.as_millis()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> AccessLog {
        AccessLog::new(
            Method::GET,
            Uri::from_static("/search?q=%22x%22"),
            "demo.example.com".to_owned(),
            HeaderValue::from_static("0190a2b4-7c2e-7def-8abc-0123456789ab"),
            HeaderValue::from_static("10.0.0.1, 127.0.0.1"),
            None,
            Arc::new(AppMetrics::new("demo", None)),
        )
    }

    #[test]
    fn info_line_matches_heroku_format() {
        let mut log = log();
        log.dyno = Some("web.1".to_owned());
        log.connect = Some(Duration::from_micros(1_400));
        log.status = 200;
        assert_eq!(
            log.line(Some(Duration::from_millis(12)), 1234),
            "at=info method=GET path=\"/search?q=%22x%22\" host=demo.example.com \
             request_id=0190a2b4-7c2e-7def-8abc-0123456789ab fwd=\"10.0.0.1, 127.0.0.1\" \
             dyno=web.1 connect=1ms service=12ms status=200 bytes=1234"
        );
    }

    #[test]
    fn error_line_leaves_unknown_fields_empty() {
        let mut log = log();
        log.error = Some(("H14", "No web processes running"));
        log.status = 503;
        assert_eq!(
            log.line(None, 180),
            "at=error code=H14 desc=\"No web processes running\" method=GET \
             path=\"/search?q=%22x%22\" host=demo.example.com \
             request_id=0190a2b4-7c2e-7def-8abc-0123456789ab fwd=\"10.0.0.1, 127.0.0.1\" \
             dyno= connect= service= status=503 bytes=180"
        );
    }

    #[test]
    fn quoted_values_escape_quotes_and_backslashes() {
        assert_eq!(Quoted(r#"a "b" \c"#).to_string(), r#""a \"b\" \\c""#);
    }

    #[test]
    fn client_supplied_host_cannot_inject_fields() {
        let log = AccessLog::new(
            Method::GET,
            Uri::from_static("/"),
            "evil.com status=200".to_owned(),
            HeaderValue::from_static("id"),
            HeaderValue::from_static("1.2.3.4"),
            None,
            Arc::new(AppMetrics::new("demo", None)),
        );
        assert!(log.line(None, 0).contains(" host=evil.com_status_200 "));
    }
}
