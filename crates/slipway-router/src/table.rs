//! The route table built from a [`RouteSnapshot`]: hostname → site, each site with its backends
//! and their in-flight counters, the canary beside them and its share, and the rate limiter.
//!
//! Each backend instance (address and container id) has an [`Upstream`]: its in-flight counter
//! and its own connection pool, shared between successive tables. A backend that survives a
//! route update keeps counting the requests it is already serving, a backend that was removed
//! can still be watched until its last request finishes (draining), and once nothing refers to
//! it its pool is dropped, so a new container that reuses the address starts with fresh
//! connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use http::header::HeaderValue;
use http::{HeaderMap, StatusCode};
use slipway_types::{AppName, Backend, RateLimit, RouteSnapshot};

use crate::ratelimit::Limiter;
use crate::release_stats::{ReleaseCounts, ReleaseStats};
use crate::router::UpstreamClient;
use crate::split::{self, Split};
use crate::stats::{AppMetrics, AppTraffic, Traffic};

/// How long a backend that refused or timed out a connection is passed over. Until the control
/// plane's health check removes it, this keeps every other request from paying for a failed
/// connect (up to the connect timeout when the container is unreachable).
const CONNECT_FAILURE_PENALTY: Duration = Duration::from_secs(5);

#[derive(Default)]
pub(crate) struct RouteTable {
    sites: HashMap<String, Arc<Site>>,
}

impl RouteTable {
    /// Builds the table for `snapshot`, reusing the counters of backends already known.
    pub(crate) fn build(
        snapshot: &RouteSnapshot,
        counters: &mut Counters,
        new_client: &dyn Fn(SocketAddr) -> UpstreamClient,
    ) -> Self {
        let mut sites = HashMap::new();
        for routes in &snapshot.sites {
            let canary = routes
                .canary
                .as_ref()
                .filter(|canary| !canary.backends.is_empty());
            // Only a site with a canary pays for per-release counters.
            let mut slot = |backend: &Backend| Slot {
                backend: backend.clone(),
                upstream: counters.upstream(backend, new_client),
                avoid_until: AtomicU64::new(0),
                stats: canary.map(|_| counters.release_stats(&routes.app, &backend.release)),
            };
            let backends = Pool::new(routes.backends.iter().map(&mut slot).collect());
            let canary = canary.map(|canary| CanarySide {
                release: canary.release.clone(),
                pool: Pool::new(canary.backends.iter().map(&mut slot).collect()),
                split: Split::new(canary.percent),
                sticky: canary.sticky,
            });
            let site = Arc::new(Site {
                app: routes.app.clone(),
                backends,
                canary,
                limiter: routes
                    .rate_limit
                    .and_then(|limit| counters.limiter(&routes.app, limit)),
                created: Instant::now(),
                maintenance: routes.maintenance,
                metrics: OnceLock::new(),
                traffic: counters.traffic.app(&routes.app),
            });
            for host in &routes.hosts {
                let host = host.trim_end_matches('.').to_ascii_lowercase();
                if let Some(previous) = sites.insert(host.clone(), Arc::clone(&site)) {
                    tracing::warn!(
                        %host,
                        replaced = %previous.app,
                        app = %site.app,
                        "host is routed to two apps; the later one wins"
                    );
                }
            }
        }
        counters.prune();
        counters
            .traffic
            .retain(snapshot.sites.iter().map(|routes| &routes.app));
        Self { sites }
    }

    /// `host` must already be lowercase and without a port.
    pub(crate) fn site(&self, host: &str) -> Option<&Arc<Site>> {
        self.sites.get(host)
    }
}

/// One app's backends, the canary beside them if one runs, and its rate limiter.
pub(crate) struct Site {
    pub(crate) app: AppName,
    backends: Pool,
    canary: Option<CanarySide>,
    /// Buckets by client IP when the app has a rate limit.
    pub(crate) limiter: Option<Arc<Limiter>>,
    /// The origin of the millisecond clock in [`Slot::avoid_until`].
    created: Instant,
    /// Requests get the maintenance page; the backends are left alone.
    pub(crate) maintenance: bool,
    /// Made at the first request rather than with the table, so the handles come from the
    /// recorder the binary installed by then.
    metrics: OnceLock<Arc<AppMetrics>>,
    /// The app's readable totals, shared with the tables before and after this one.
    traffic: Option<Arc<AppTraffic>>,
}

/// Backends plus the round-robin cursor used to break ties between them.
struct Pool {
    slots: Vec<Slot>,
    next: AtomicUsize,
}

impl Pool {
    fn new(slots: Vec<Slot>) -> Self {
        Self {
            slots,
            next: AtomicUsize::new(0),
        }
    }
}

/// The next release's backends and the share of requests they get.
struct CanarySide {
    release: String,
    pool: Pool,
    split: Split,
    sticky: bool,
}

struct Slot {
    backend: Backend,
    upstream: Arc<Upstream>,
    /// Milliseconds after [`Site::created`] until which this backend is passed over.
    avoid_until: AtomicU64,
    /// The counters of the backend's release, while the site runs a canary.
    stats: Option<Arc<ReleaseStats>>,
}

/// One backend instance's shared state: its requests in flight and its connection pool.
pub(crate) struct Upstream {
    in_flight: AtomicUsize,
    client: UpstreamClient,
}

impl Site {
    pub(crate) fn backend_count(&self) -> usize {
        self.backends.slots.len() + self.canary.as_ref().map_or(0, |c| c.pool.slots.len())
    }

    pub(crate) fn metrics(&self) -> &Arc<AppMetrics> {
        self.metrics
            .get_or_init(|| Arc::new(AppMetrics::new(self.app.as_str(), self.traffic.clone())))
    }

    /// Picks a backend for a request with `headers`: first the side of the canary split the
    /// request falls on (by its cookie when the split is sticky and it has one, else by one
    /// draw), then within it the backend with the fewest outstanding requests, never `skip`.
    /// When that side has no backend left to try, the other side serves. A sticky split asks
    /// for a cookie whenever the client's does not name the release it got.
    pub(crate) fn pick(&self, skip: Option<SocketAddr>, headers: &HeaderMap) -> Option<Picked<'_>> {
        let Some(canary) = &self.canary else {
            return self.pick_in(&self.backends, skip);
        };
        let cookie = canary
            .sticky
            .then(|| split::cookie_release(headers))
            .flatten();
        let to_canary = match cookie {
            Some(release) => release == canary.release,
            None => canary.split.to_canary(),
        };
        let (first, second) = if to_canary {
            (&canary.pool, &self.backends)
        } else {
            (&self.backends, &canary.pool)
        };
        let mut picked = self
            .pick_in(first, skip)
            .or_else(|| self.pick_in(second, skip))?;
        if canary.sticky && cookie != Some(picked.backend.release.as_str()) {
            picked.set_cookie = split::set_cookie(&picked.backend.release);
        }
        Some(picked)
    }

    /// The least loaded backend of `pool`, a recently failed one only when every other is too.
    /// Equal loads are taken in turn: the scan starts one slot further on each call and only
    /// a strictly better slot displaces the first one.
    fn pick_in<'a>(&'a self, pool: &'a Pool, skip: Option<SocketAddr>) -> Option<Picked<'a>> {
        let count = pool.slots.len();
        if count == 0 {
            return None;
        }
        let now = self.millis_since_created();
        let start = pool.next.fetch_add(1, Ordering::Relaxed) % count;
        let mut best: Option<(&Slot, (bool, usize))> = None;
        for offset in 0..count {
            let slot = &pool.slots[(start + offset) % count];
            if Some(slot.backend.addr) == skip {
                continue;
            }
            let avoided = slot.avoid_until.load(Ordering::Relaxed) > now;
            let rank = (avoided, slot.upstream.in_flight.load(Ordering::Relaxed));
            if best.is_none_or(|(_, best_rank)| rank < best_rank) {
                best = Some((slot, rank));
            }
        }
        best.map(|(slot, _)| Picked {
            backend: &slot.backend,
            in_flight: InFlight::start(&slot.upstream, self.metrics(), slot.stats.as_ref()),
            client: slot.upstream.client.clone(),
            set_cookie: None,
        })
    }

    /// Passes `addr` over for a while after a connection to it failed.
    pub(crate) fn connect_failed(&self, addr: SocketAddr) {
        let until = self
            .millis_since_created()
            .saturating_add(u64::try_from(CONNECT_FAILURE_PENALTY.as_millis()).unwrap_or(u64::MAX));
        let canary = self.canary.iter().flat_map(|canary| &canary.pool.slots);
        for slot in self
            .backends
            .slots
            .iter()
            .chain(canary)
            .filter(|slot| slot.backend.addr == addr)
        {
            slot.avoid_until.store(until, Ordering::Relaxed);
        }
    }

    fn millis_since_created(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// The backend chosen for a request.
pub(crate) struct Picked<'a> {
    pub(crate) backend: &'a Backend,
    /// Counts the new request until it is dropped.
    pub(crate) in_flight: InFlight,
    /// The backend's own connection pool.
    pub(crate) client: UpstreamClient,
    /// `Set-Cookie` for the response: a sticky canary split pins the client to this side.
    pub(crate) set_cookie: Option<HeaderValue>,
}

/// Counts one request against a backend, and in the app's active-requests gauge, for as long
/// as it lives; on a canary site also in its release's counters when it ends.
pub(crate) struct InFlight {
    upstream: Arc<Upstream>,
    metrics: Arc<AppMetrics>,
    release: Option<(Arc<ReleaseStats>, Instant)>,
    status: Option<u16>,
}

impl InFlight {
    fn start(
        upstream: &Arc<Upstream>,
        metrics: &Arc<AppMetrics>,
        release: Option<&Arc<ReleaseStats>>,
    ) -> Self {
        upstream.in_flight.fetch_add(1, Ordering::Relaxed);
        metrics.active.increment(1);
        Self {
            upstream: Arc::clone(upstream),
            metrics: Arc::clone(metrics),
            release: release.map(|stats| (Arc::clone(stats), Instant::now())),
            status: None,
        }
    }

    /// The backend answered with `status`; a request dropped without an answer counts as
    /// failed in its release's counters.
    pub(crate) fn answered(&mut self, status: StatusCode) {
        self.status = Some(status.as_u16());
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.upstream.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.metrics.active.decrement(1);
        // A protocol switch lasts as long as the connection: not a latency.
        if let Some((stats, started)) = &self.release
            && self.status != Some(StatusCode::SWITCHING_PROTOCOLS.as_u16())
        {
            stats.record(self.status, started.elapsed());
        }
    }
}

/// Every counter still referenced by a table or by a request in flight. Weak references let a
/// counter disappear on its own once neither needs it.
#[derive(Default)]
pub(crate) struct Counters {
    by_backend: HashMap<(SocketAddr, String), Weak<Upstream>>,
    by_release: HashMap<(AppName, String), Weak<ReleaseStats>>,
    limiters: HashMap<AppName, Weak<Limiter>>,
    /// Each app's readable totals, which outlive tables.
    pub(crate) traffic: Traffic,
}

impl Counters {
    fn upstream(
        &mut self,
        backend: &Backend,
        new_client: &dyn Fn(SocketAddr) -> UpstreamClient,
    ) -> Arc<Upstream> {
        let key = (backend.addr, backend.id.clone());
        if let Some(upstream) = self.by_backend.get(&key).and_then(Weak::upgrade) {
            return upstream;
        }
        let upstream = Arc::new(Upstream {
            in_flight: AtomicUsize::new(0),
            client: new_client(backend.addr),
        });
        self.by_backend.insert(key, Arc::downgrade(&upstream));
        upstream
    }

    fn release_stats(&mut self, app: &AppName, release: &str) -> Arc<ReleaseStats> {
        let key = (app.clone(), release.to_owned());
        if let Some(stats) = self.by_release.get(&key).and_then(Weak::upgrade) {
            return stats;
        }
        let stats = Arc::new(ReleaseStats::default());
        self.by_release.insert(key, Arc::downgrade(&stats));
        stats
    }

    /// The app's limiter, kept (with its buckets) while the limit stays the same.
    fn limiter(&mut self, app: &AppName, limit: RateLimit) -> Option<Arc<Limiter>> {
        if let Some(limiter) = self.limiters.get(app).and_then(Weak::upgrade)
            && limiter.limit == limit
        {
            return Some(limiter);
        }
        let limiter = Arc::new(Limiter::new(app.as_str(), limit)?);
        self.limiters.insert(app.clone(), Arc::downgrade(&limiter));
        Some(limiter)
    }

    fn prune(&mut self) {
        self.by_backend
            .retain(|_, upstream| upstream.strong_count() > 0);
        self.by_release.retain(|_, stats| stats.strong_count() > 0);
        self.limiters
            .retain(|_, limiter| limiter.strong_count() > 0);
    }

    /// Requests in flight to every backend instance at `addr`.
    pub(crate) fn in_flight(&self, addr: SocketAddr) -> usize {
        self.by_backend
            .iter()
            .filter(|((backend_addr, _), _)| *backend_addr == addr)
            .filter_map(|(_, upstream)| upstream.upgrade())
            .map(|upstream| upstream.in_flight.load(Ordering::Relaxed))
            .sum()
    }

    /// What `release` of `app` has served while the app runs a canary; zeros otherwise.
    pub(crate) fn release_counts(&self, app: &AppName, release: &str) -> ReleaseCounts {
        self.by_release
            .get(&(app.clone(), release.to_owned()))
            .and_then(Weak::upgrade)
            .map(|stats| stats.counts())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use slipway_types::SiteRoutes;

    use super::*;

    fn backend(port: u16, dyno: &str) -> Backend {
        Backend {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            id: format!("container-{port}"),
            dyno: dyno.to_owned(),
            release: "v1.0.0".to_owned(),
        }
    }

    fn new_client(addr: SocketAddr) -> UpstreamClient {
        UpstreamClient::new(addr, Duration::from_secs(1), 1)
    }

    fn snapshot(backends: Vec<Backend>) -> RouteSnapshot {
        RouteSnapshot {
            sites: vec![SiteRoutes {
                app: "demo".parse().expect("valid app name"),
                hosts: vec!["demo.example.com".to_owned()],
                backends,
                maintenance: false,
                canary: None,
                rate_limit: None,
            }],
        }
    }

    #[test]
    fn equal_loads_are_taken_in_turn() {
        let mut counters = Counters::default();
        let table = RouteTable::build(
            &snapshot(vec![backend(1, "web.1"), backend(2, "web.2")]),
            &mut counters,
            &new_client,
        );
        let site = table.site("demo.example.com").expect("site");
        let dynos: Vec<String> = (0..4)
            .map(|_| {
                site.pick(None, &HeaderMap::new())
                    .expect("backend")
                    .backend
                    .dyno
                    .clone()
            })
            .collect();
        assert_eq!(dynos, ["web.1", "web.2", "web.1", "web.2"]);
    }

    #[test]
    fn busy_backend_is_avoided_and_skip_is_honoured() {
        let mut counters = Counters::default();
        let table = RouteTable::build(
            &snapshot(vec![backend(1, "web.1"), backend(2, "web.2")]),
            &mut counters,
            &new_client,
        );
        let site = table.site("demo.example.com").expect("site");
        let held = site.pick(None, &HeaderMap::new()).expect("backend");
        let first = held.backend.dyno.clone();
        for _ in 0..3 {
            let other = site.pick(None, &HeaderMap::new()).expect("backend");
            assert_ne!(other.backend.dyno, first);
        }
        let busy = backend(if first == "web.1" { 1 } else { 2 }, &first).addr;
        let other = site.pick(Some(busy), &HeaderMap::new()).expect("backend");
        assert_ne!(other.backend.addr, busy);
    }

    #[test]
    fn a_backend_that_failed_to_connect_is_passed_over() {
        let mut counters = Counters::default();
        let table = RouteTable::build(
            &snapshot(vec![backend(1, "web.1"), backend(2, "web.2")]),
            &mut counters,
            &new_client,
        );
        let site = table.site("demo.example.com").expect("site");
        site.connect_failed(backend(1, "web.1").addr);
        for _ in 0..4 {
            assert_eq!(
                site.pick(None, &HeaderMap::new())
                    .expect("backend")
                    .backend
                    .dyno,
                "web.2"
            );
        }

        site.connect_failed(backend(2, "web.2").addr);
        assert!(
            site.pick(None, &HeaderMap::new()).is_some(),
            "all failed: still try one"
        );
        let only = site
            .pick(Some(backend(1, "web.1").addr), &HeaderMap::new())
            .expect("backend");
        assert_eq!(only.backend.dyno, "web.2");
    }

    #[test]
    fn counters_survive_updates_and_outlive_removed_backends() {
        let mut counters = Counters::default();
        let old = RouteTable::build(
            &snapshot(vec![backend(1, "web.1")]),
            &mut counters,
            &new_client,
        );
        let site = old.site("demo.example.com").expect("site");
        let held = site
            .pick(None, &HeaderMap::new())
            .expect("backend")
            .in_flight;
        let addr = backend(1, "web.1").addr;

        let same = RouteTable::build(
            &snapshot(vec![backend(1, "web.1")]),
            &mut counters,
            &new_client,
        );
        drop(old);
        assert_eq!(counters.in_flight(addr), 1);

        drop(same);
        let _empty = RouteTable::build(&snapshot(vec![]), &mut counters, &new_client);
        assert_eq!(counters.in_flight(addr), 1, "removed backend still drains");
        drop(held);
        assert_eq!(counters.in_flight(addr), 0);
    }

    fn canary_snapshot(percent: u8, sticky: bool) -> RouteSnapshot {
        let mut snapshot = snapshot(vec![backend(1, "web.1")]);
        let mut canary = backend(2, "web.1");
        canary.release = "v1.1.0".to_owned();
        snapshot.sites[0].canary = Some(slipway_types::CanaryRoutes {
            release: "v1.1.0".to_owned(),
            backends: vec![canary],
            percent,
            sticky,
        });
        snapshot
    }

    #[test]
    fn the_canary_gets_its_share_of_requests() {
        let mut counters = Counters::default();
        let table = RouteTable::build(&canary_snapshot(20, false), &mut counters, &new_client);
        let site = table.site("demo.example.com").expect("site");
        let draws = 10_000;
        let canary = (0..draws)
            .filter(|_| {
                let picked = site.pick(None, &HeaderMap::new()).expect("backend");
                assert!(picked.set_cookie.is_none(), "not sticky: no cookie");
                picked.backend.release == "v1.1.0"
            })
            .count();
        assert!((1_800..=2_200).contains(&canary), "{canary} of {draws}");
    }

    #[test]
    fn a_sticky_split_follows_and_sets_the_cookie() {
        let mut counters = Counters::default();
        let table = RouteTable::build(&canary_snapshot(50, true), &mut counters, &new_client);
        let site = table.site("demo.example.com").expect("site");
        let with_cookie = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::COOKIE, HeaderValue::from_static(value));
            headers
        };
        for _ in 0..20 {
            let canary = site
                .pick(None, &with_cookie("slipway-canary=v1.1.0"))
                .expect("backend");
            assert_eq!(canary.backend.release, "v1.1.0");
            assert!(canary.set_cookie.is_none(), "the cookie already says so");
            let stable = site
                .pick(None, &with_cookie("slipway-canary=v1.0.0"))
                .expect("backend");
            assert_eq!(stable.backend.release, "v1.0.0");
        }
        let fresh = site.pick(None, &HeaderMap::new()).expect("backend");
        let cookie = fresh.set_cookie.expect("a new client is pinned");
        assert!(
            cookie
                .to_str()
                .expect("ascii")
                .starts_with(&format!("slipway-canary={};", fresh.backend.release))
        );
        // Skipping the canary's only backend falls back to the current release.
        let fallback = site
            .pick(
                Some(backend(2, "web.1").addr),
                &with_cookie("slipway-canary=v1.1.0"),
            )
            .expect("backend");
        assert_eq!(fallback.backend.release, "v1.0.0");
    }

    #[test]
    fn canary_sites_count_requests_by_release() {
        let mut counters = Counters::default();
        let table = RouteTable::build(&canary_snapshot(50, true), &mut counters, &new_client);
        let site = table.site("demo.example.com").expect("site");
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            HeaderValue::from_static("slipway-canary=v1.1.0"),
        );
        for status in [StatusCode::OK, StatusCode::BAD_GATEWAY, StatusCode::OK] {
            let mut picked = site.pick(None, &headers).expect("backend");
            picked.in_flight.answered(status);
        }
        drop(site.pick(None, &headers).expect("backend"));
        let app: AppName = "demo".parse().expect("valid app name");
        let counts = counters.release_counts(&app, "v1.1.0");
        assert_eq!(
            (counts.requests, counts.errors),
            (4, 2),
            "502 and no answer"
        );
        assert_eq!(counters.release_counts(&app, "v1.0.0").requests, 0);

        drop(table);
        let _plain = RouteTable::build(&snapshot(vec![]), &mut counters, &new_client);
        assert_eq!(counters.release_counts(&app, "v1.1.0").requests, 0);
    }
}
