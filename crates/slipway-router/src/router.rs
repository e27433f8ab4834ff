//! The shared router state: configuration, the hot-swapped route table, the in-flight counters
//! and the upstream connection pool.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use slipway_types::RouteSnapshot;

use crate::access_log::AccessLogSink;
use crate::connector::TimedConnector;
use crate::table::{Counters, RouteTable};

/// Idle upstream connections are closed after this, so backends that left the table do not
/// keep sockets open for long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// How long an app has to start answering (response head received) before the client gets
    /// a 504. Streaming after that point is not limited.
    pub request_timeout: Duration,
    /// How long opening a connection to a backend may take before it counts as failed.
    pub connect_timeout: Duration,
    /// The public port clients connected to, told to apps as `X-Forwarded-Port`.
    pub listen_port: u16,
    /// Also gets each request's log line, besides tracing, when the request reached a known app.
    pub access_log: Option<AccessLogSink>,
}

/// Heroku's limits (30 s to answer, 5 s to connect) behind the standard HTTP port.
impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            listen_port: 80,
            access_log: None,
        }
    }
}

/// Requests go upstream with the client's body, or with an empty one when the router keeps the
/// request to retry it on another backend.
pub(crate) type UpstreamBody = Either<Incoming, Empty<Bytes>>;

/// Host-based reverse proxy. Share it as `Arc<Router>`: the control plane calls
/// [`Router::update`] and [`Router::in_flight`] while [`Router::serve`] runs.
pub struct Router {
    pub(crate) config: RouterConfig,
    pub(crate) table: ArcSwap<RouteTable>,
    counters: Mutex<Counters>,
}

/// A connection pool to one backend instance.
pub(crate) type UpstreamClient = Client<TimedConnector, UpstreamBody>;

impl Router {
    /// A router with an empty route table: every host gets 404 until the first update.
    pub fn new(config: RouterConfig) -> Arc<Router> {
        Arc::new(Router {
            config,
            table: ArcSwap::from_pointee(RouteTable::default()),
            counters: Mutex::new(Counters::default()),
        })
    }

    /// Replaces the whole route table atomically: a request sees either the old table or the
    /// new one, never a mix. Backends present in both keep their in-flight counts, so balancing
    /// and draining are not reset by an unrelated change.
    pub fn update(&self, snapshot: &RouteSnapshot) {
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        let connect_timeout = self.config.connect_timeout;
        let new_client = move || {
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .build(TimedConnector::new(connect_timeout))
        };
        let table = RouteTable::build(snapshot, &mut counters, &new_client);
        self.table.store(Arc::new(table));
    }

    /// Requests currently in flight to `addr`, including those started before it was removed
    /// from the table: the deployer waits for this to reach zero before stopping a container.
    /// An upgraded connection (WebSocket) counts until it closes.
    pub fn in_flight(&self, addr: SocketAddr) -> usize {
        self.counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .in_flight(addr)
    }
}
