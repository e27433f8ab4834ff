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
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSnapshot {
    pub sites: Vec<SiteRoutes>,
}
