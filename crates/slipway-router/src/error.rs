//! Why the router answered a request itself instead of relaying the app's response.

use std::error::Error as _;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use slipway_types::AppName;

use crate::body::RequestBodyError;
use crate::pool::SendError;
use crate::upstream::UpstreamError;

/// Where a failed request went wrong. Client errors are the caller's to fix; upstream errors
/// are about the app's processes; operator ones are what the platform was told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorOrigin {
    Client,
    Upstream,
    Operator,
}

/// nginx's and Heroku's status for a request whose client went away before it was answered: no
/// client sees it, but the log line and the metrics do.
pub(crate) const CLIENT_CLOSED_REQUEST: u16 = 499;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("request names no host")]
    MissingHost,
    #[error("host `{host}` is not a valid host name")]
    InvalidHost { host: String },
    #[error("no app is configured for host `{host}`")]
    UnknownHost { host: String },
    #[error("request body is larger than the {limit}-byte limit")]
    BodyTooLarge { limit: u64 },
    #[error("client stopped sending the request body to upstream {addr}")]
    ClientAborted {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("app `{app}` is in maintenance mode")]
    Maintenance { app: AppName },
    #[error("app `{app}` has no web processes running")]
    NoBackends { app: AppName },
    #[error("could not connect to upstream {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("upstream {addr} closed a new connection without answering")]
    Unanswered {
        addr: SocketAddr,
        #[source]
        source: UpstreamError,
    },
    #[error("upstream {addr} failed before sending a complete response head")]
    Upstream {
        addr: SocketAddr,
        #[source]
        source: UpstreamError,
    },
    #[error("upstream {addr} switched protocols on a request that did not ask to")]
    UnexpectedUpgrade { addr: SocketAddr },
    #[error("upstream {addr} did not respond within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
}

impl ProxyError {
    /// Sorts an upstream failure: a connection that never reached the app, the client's own
    /// request body (too large, or cut off), or the app failing.
    pub(crate) fn from_send(addr: SocketAddr, failure: SendError) -> Self {
        match failure {
            SendError::Connect(source) => Self::Connect { addr, source },
            SendError::Unanswered(source) => Self::Unanswered { addr, source },
            SendError::Request(UpstreamError::RequestBody(RequestBodyError::TooLarge {
                limit,
            })) => Self::BodyTooLarge { limit },
            SendError::Request(UpstreamError::RequestBody(RequestBodyError::Aborted(source))) => {
                Self::ClientAborted { addr, source }
            }
            SendError::Request(source) => Self::Upstream { addr, source },
        }
    }

    pub(crate) fn origin(&self) -> ErrorOrigin {
        match self {
            Self::MissingHost
            | Self::InvalidHost { .. }
            | Self::UnknownHost { .. }
            | Self::BodyTooLarge { .. }
            | Self::ClientAborted { .. } => ErrorOrigin::Client,
            Self::Maintenance { .. } => ErrorOrigin::Operator,
            Self::NoBackends { .. }
            | Self::Connect { .. }
            | Self::Unanswered { .. }
            | Self::Upstream { .. }
            | Self::UnexpectedUpgrade { .. }
            | Self::Timeout { .. } => ErrorOrigin::Upstream,
        }
    }

    /// True when the request never reached an app, so sending it again cannot repeat its
    /// effects, or (`Unanswered`) when nothing answered on a connection opened for it, which
    /// behind a port proxy is a backend not listening. The router retries only these, and only
    /// idempotent requests it still holds whole.
    pub(crate) fn retry_safe(&self) -> bool {
        match self {
            Self::MissingHost
            | Self::InvalidHost { .. }
            | Self::UnknownHost { .. }
            | Self::Maintenance { .. }
            | Self::NoBackends { .. }
            | Self::Connect { .. }
            | Self::Unanswered { .. } => true,
            Self::BodyTooLarge { .. }
            | Self::ClientAborted { .. }
            | Self::Upstream { .. }
            | Self::UnexpectedUpgrade { .. }
            | Self::Timeout { .. } => false,
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::MissingHost | Self::InvalidHost { .. } => StatusCode::BAD_REQUEST,
            Self::UnknownHost { .. } => StatusCode::NOT_FOUND,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ClientAborted { .. } => StatusCode::from_u16(CLIENT_CLOSED_REQUEST)
                .expect("499 is within the valid status range"),
            Self::NoBackends { .. } | Self::Maintenance { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Connect { .. }
            | Self::Unanswered { .. }
            | Self::Upstream { .. }
            | Self::UnexpectedUpgrade { .. } => StatusCode::BAD_GATEWAY,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Heroku's router error code (`H12`…) for the log line, so existing runbooks apply.
    /// `H00` is Slipway's own: Heroku logs nothing for hosts it does not know.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::MissingHost | Self::InvalidHost { .. } => "H26",
            Self::UnknownHost { .. } => "H00",
            Self::BodyTooLarge { .. } => "H25",
            Self::ClientAborted { .. } => "H27",
            Self::Maintenance { .. } => "H80",
            Self::NoBackends { .. } => "H14",
            Self::Connect { .. } if self.connect_timed_out() => "H19",
            Self::Connect { .. } => "H21",
            Self::Unanswered { .. } | Self::Upstream { .. } => "H13",
            Self::UnexpectedUpgrade { .. } => "H17",
            Self::Timeout { .. } => "H12",
        }
    }

    /// The `desc="…"` of the log line and the heading of the error page.
    pub(crate) fn description(&self) -> &'static str {
        match self {
            Self::MissingHost | Self::InvalidHost { .. } => "Request error",
            Self::UnknownHost { .. } => "No such app",
            Self::BodyTooLarge { .. } => "Request body too large",
            Self::ClientAborted { .. } => "Client Request Interrupted",
            Self::Maintenance { .. } => "Maintenance mode",
            Self::NoBackends { .. } => "No web processes running",
            Self::Connect { .. } if self.connect_timed_out() => "Backend connection timeout",
            Self::Connect { .. } => "Backend connection refused",
            Self::Unanswered { .. } | Self::Upstream { .. } => "Connection closed without response",
            Self::UnexpectedUpgrade { .. } => "Poorly formatted HTTP response",
            Self::Timeout { .. } => "Request timeout",
        }
    }

    /// The error and its causes on one line, for operator logs.
    pub(crate) fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = self.source();
        while let Some(err) = cause {
            text.push_str(": ");
            text.push_str(&err.to_string());
            cause = err.source();
        }
        text
    }

    fn connect_timed_out(&self) -> bool {
        let mut cause = self.source();
        while let Some(err) = cause {
            if err
                .downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut)
            {
                return true;
            }
            cause = err.source();
        }
        false
    }
}
