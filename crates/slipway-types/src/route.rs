//! The complete routing picture the control plane hands the router. The router never asks
//! the store anything: it serves whatever snapshot it was last given.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::names::AppName;

/// A healthy web container the router may send requests to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Backend {
    pub addr: SocketAddr,
    /// The container's id: a new container that reuses a freed address is a different
    /// backend, and must not inherit the old one's pooled connections.
    pub id: String,
    /// `web.1`, shown in router log lines.
    pub dyno: String,
    /// The release the container runs, for logs.
    pub release: String,
}

/// Everything one app serves: its hostnames and its healthy web backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRoutes {
    pub app: AppName,
    /// Lowercase hostnames without port: `<app>.<apps-domain>` and custom domains.
    pub hosts: Vec<String>,
    pub backends: Vec<Backend>,
    /// The router answers every request with a 503 maintenance page instead of reaching the
    /// backends, which keep running.
    #[serde(default)]
    pub maintenance: bool,
    /// A new release taking a share of the requests beside `backends` before it replaces them.
    #[serde(default)]
    pub canary: Option<CanaryRoutes>,
    /// Requests per client IP beyond which the router answers 429 instead of the app.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

/// The canary side of a site: its backends and the share of requests they get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryRoutes {
    /// The canary's release, as its backends carry it; also the sticky cookie's value.
    pub release: String,
    pub backends: Vec<Backend>,
    /// 1–99: the share of requests sent to `backends`.
    pub percent: u8,
    /// Keeps a client on the side it first got with a `slipway-canary` cookie, so one user does
    /// not see two releases alternate.
    pub sticky: bool,
}

/// A token bucket per client IP: `requests` per `period` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RateLimit {
    pub requests: u32,
    pub period: RatePeriod,
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RatePeriod {
    Second,
    Minute,
}

impl RatePeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            RatePeriod::Second => "s",
            RatePeriod::Minute => "m",
        }
    }

    pub fn seconds(self) -> u32 {
        match self {
            RatePeriod::Second => 1,
            RatePeriod::Minute => 60,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSnapshot {
    pub sites: Vec<SiteRoutes>,
}
