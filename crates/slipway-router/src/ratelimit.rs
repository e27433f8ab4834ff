//! Per-app rate limiting by client IP: a token bucket per address (GCRA, from `governor`),
//! answered with 429 and `Retry-After` before any app sees the request.
//!
//! The key is the address of the TCP peer, never `X-Forwarded-For`: the router is the edge and
//! has no trusted proxy in front of it, so a client-written header would let anyone pick the
//! bucket it is counted in.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use metrics::Counter;
use slipway_types::{RateLimit, RatePeriod};

use crate::access_log::AccessLog;
use crate::body::ResponseBody;
use crate::table::Site;

/// Addresses whose bucket is full again are forgotten after this many checks, so a flood of
/// distinct addresses holds memory only for those seen within one refill of the bucket.
const PRUNE_EVERY: u64 = 1024;

/// One app's buckets. It outlives route updates that keep the same limit, so changing an
/// unrelated app's routes does not refill everyone's bucket.
pub(crate) struct Limiter {
    pub(crate) limit: RateLimit,
    buckets: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    checks: AtomicU64,
    /// `slipway_router_rate_limited_total{app}`, made at first use like the app's other series.
    refused: OnceLock<Counter>,
    app: String,
}

impl Limiter {
    /// `None` for a limit of zero requests or burst, which the control plane never sends.
    pub(crate) fn new(app: &str, limit: RateLimit) -> Option<Self> {
        let requests = NonZeroU32::new(limit.requests)?;
        let burst = NonZeroU32::new(limit.burst)?;
        let quota = match limit.period {
            RatePeriod::Second => Quota::per_second(requests),
            RatePeriod::Minute => Quota::per_minute(requests),
        }
        .allow_burst(burst);
        let clock = DefaultClock::default();
        Some(Self {
            limit,
            buckets: governor::RateLimiter::dashmap_with_clock(quota, clock.clone()),
            clock,
            checks: AtomicU64::new(0),
            refused: OnceLock::new(),
            app: app.to_owned(),
        })
    }

    /// Takes one request from `ip`'s bucket, or says how long until one is available.
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.buckets.retain_recent();
            self.buckets.shrink_to_fit();
        }
        self.buckets.check_key(&ip).map_err(|not_until| {
            self.refused
                .get_or_init(|| {
                    metrics::counter!("slipway_router_rate_limited_total", "app" => self.app.clone())
                })
                .increment(1);
            not_until.wait_time_from(self.clock.now())
        })
    }

    /// Addresses currently remembered.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// A request refused for its client's rate.
pub(crate) struct Refusal {
    pub(crate) site: Arc<Site>,
    pub(crate) retry_after: Duration,
}

/// The peer address as the server wrote it (`Peer::ip`), back as an address.
pub(crate) fn peer_ip(ip: &HeaderValue) -> Option<IpAddr> {
    ip.to_str().ok()?.parse().ok()
}

/// 429 with a short plain-text body and `Retry-After` in whole seconds (at least 1), so a
/// well-behaved client waits long enough for the next token.
pub(crate) fn response(refusal: Refusal, mut log: AccessLog) -> Response<ResponseBody> {
    let status = StatusCode::TOO_MANY_REQUESTS;
    let seconds = retry_after_secs(refusal.retry_after);
    log.status = status.as_u16();
    log.metrics = Arc::clone(refusal.site.metrics());
    log.site = Some(refusal.site);
    let body = format!("rate limit exceeded: retry in {seconds} s\n");
    let mut response = Response::new(ResponseBody::page(Bytes::from(body), log));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn retry_after_secs(wait: Duration) -> u64 {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(requests: u32, period: RatePeriod, burst: u32) -> Limiter {
        Limiter::new(
            "demo",
            RateLimit {
                requests,
                period,
                burst,
            },
        )
        .expect("a valid limit")
    }

    #[test]
    fn a_burst_up_to_the_limit_passes_and_the_next_request_waits() {
        let limiter = limiter(10, RatePeriod::Second, 20);
        let client: IpAddr = [192, 0, 2, 1].into();
        for n in 0..20 {
            assert!(limiter.check(client).is_ok(), "request {n} of the burst");
        }
        let wait = limiter.check(client).expect_err("over the burst");
        assert!(
            wait <= Duration::from_millis(100),
            "one token per 100 ms: {wait:?}"
        );
        assert_eq!(retry_after_secs(wait), 1);
    }

    #[test]
    fn clients_are_counted_apart() {
        let limiter = limiter(1, RatePeriod::Minute, 1);
        let first: IpAddr = [192, 0, 2, 1].into();
        let second: IpAddr = "2001:db8::1".parse().expect("address");
        assert!(limiter.check(first).is_ok());
        let wait = limiter
            .check(first)
            .expect_err("second request in the minute");
        assert!(wait > Duration::from_secs(50), "{wait:?}");
        assert_eq!(retry_after_secs(wait), wait.as_secs() + 1);
        assert!(
            limiter.check(second).is_ok(),
            "another client has its own bucket"
        );
    }

    #[test]
    fn refilled_buckets_are_forgotten() {
        let limiter = limiter(1_000_000, RatePeriod::Second, 1);
        for n in 0..u32::try_from(PRUNE_EVERY).expect("small") {
            let ip = IpAddr::from(n.to_be_bytes());
            assert!(limiter.check(ip).is_ok());
        }
        std::thread::sleep(Duration::from_millis(10));
        assert!(limiter.check([10, 0, 0, 1].into()).is_ok());
        assert!(
            limiter.tracked() < 10,
            "a full bucket is dropped at the prune: {} left",
            limiter.tracked()
        );
    }

    #[test]
    fn zero_limits_make_no_limiter() {
        let zero = RateLimit {
            requests: 0,
            period: RatePeriod::Second,
            burst: 1,
        };
        assert!(Limiter::new("demo", zero).is_none());
    }

    #[test]
    fn peer_addresses_parse_back() {
        assert_eq!(
            peer_ip(&HeaderValue::from_static("::1")),
            Some("::1".parse().expect("address"))
        );
        assert_eq!(peer_ip(&HeaderValue::from_static("unknown")), None);
    }
}
