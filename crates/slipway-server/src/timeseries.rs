//! Per-app time series: at the end of every short bucket (a minute, or `--metrics-bucket`) the
//! router's per-app totals, the containers' CPU and memory and the reconciler's crash restarts
//! become one [`MetricBucket`] per app. It is merged into the store twice, as the short bucket
//! and into the long bucket (60 short ones: an hour) it belongs to, so the hourly roll-up is
//! always current, and sent to subscribers (alerts) as an [`AppPoint`].
//!
//! Memory stays small and fixed per app: the last reading of each app's totals and of each
//! container's CPU time. History lives in the store, pruned to a day of short buckets and 30
//! days of long ones, so a restart keeps it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_router::{Router, TrafficTotals};
use slipway_store::{App, Store};
use slipway_types::metrics::{MetricBucket, MetricsPoint, ProcessUsage};
use slipway_types::{AppName, labels};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::Platform;

/// Closed buckets a slow subscriber may fall behind by before it misses some: a few buckets'
/// worth of apps.
const SUBSCRIBER_BACKLOG: usize = 4096;

/// Short buckets kept: a day of minutes.
pub const SHORT_BUCKETS_KEPT: u32 = 1440;

/// Long buckets kept: 30 days of hours.
pub const LONG_BUCKETS_KEPT: u32 = 720;

/// Short buckets per long one: minutes in an hour.
const SHORT_PER_LONG: u32 = 60;

/// One app's closed bucket, as sent to subscribers.
#[derive(Debug, Clone, PartialEq)]
pub struct AppPoint {
    pub app: AppName,
    pub point: MetricsPoint,
}

/// The server's time series: where subscribers listen for closed buckets and readers get the
/// stored ones.
pub struct TimeSeries {
    width: Duration,
    closed: broadcast::Sender<Arc<AppPoint>>,
}

impl TimeSeries {
    pub fn new(width: Duration) -> Self {
        Self {
            width,
            closed: broadcast::channel(SUBSCRIBER_BACKLOG).0,
        }
    }

    /// The width of a short bucket in seconds: a minute unless `--metrics-bucket` says
    /// otherwise.
    fn short_secs(&self) -> u32 {
        u32::try_from(self.width.as_secs().max(1)).unwrap_or(u32::MAX)
    }

    fn long_secs(&self) -> u32 {
        self.short_secs().saturating_mul(SHORT_PER_LONG)
    }

    /// How far back the series reach: the long buckets' retention.
    pub fn reach(&self) -> Duration {
        Duration::from_secs(u64::from(self.long_secs()) * u64::from(LONG_BUCKETS_KEPT))
    }

    /// Every app's point as its bucket closes, from now on. A receiver that lags more than
    /// [`SUBSCRIBER_BACKLOG`] points behind gets `Lagged` and misses the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AppPoint>> {
        self.closed.subscribe()
    }

    /// The bucket width that covers `since` back from now: short buckets as long as they are
    /// kept that far back, long ones beyond.
    fn width_for(&self, since: Duration) -> u32 {
        let short_reach = u64::from(self.short_secs()) * u64::from(SHORT_BUCKETS_KEPT);
        if since.as_secs() <= short_reach {
            self.short_secs()
        } else {
            self.long_secs()
        }
    }

    /// The app's buckets over the last `since`, oldest first, one per bucket width with empty
    /// ones where nothing was recorded. The short bucket in progress is left out (it would
    /// look like a drop to zero); the long one in progress is in, as far as it goes.
    pub async fn app_points(
        &self,
        store: &Store,
        app_id: Uuid,
        since: Duration,
    ) -> slipway_store::Result<Vec<MetricsPoint>> {
        let width = self.width_for(since);
        let (from, until) = self.span(since, width, OffsetDateTime::now_utc());
        let stored = store.metric_buckets(Some(app_id), width, from).await?;
        Ok(filled(
            stored.into_iter().map(|(_, bucket)| bucket),
            from,
            until,
            width,
        ))
    }

    /// Every app's buckets added together, over the last `since`: the router's traffic for
    /// the platform. Processes are left out.
    pub async fn platform_points(
        &self,
        store: &Store,
        since: Duration,
    ) -> slipway_store::Result<Vec<MetricsPoint>> {
        let width = self.width_for(since);
        let (from, until) = self.span(since, width, OffsetDateTime::now_utc());
        let mut by_start: Vec<MetricBucket> = Vec::new();
        for (_, mut bucket) in store.metric_buckets(None, width, from).await? {
            bucket.processes.clear();
            match by_start.last_mut() {
                Some(last) if last.at == bucket.at => last.merge(&bucket),
                _ => by_start.push(bucket),
            }
        }
        Ok(filled(by_start, from, until, width))
    }

    /// The first bucket start to show and the first one not to.
    fn span(
        &self,
        since: Duration,
        width: u32,
        now: OffsetDateTime,
    ) -> (OffsetDateTime, OffsetDateTime) {
        let since =
            time::Duration::try_from(since.min(self.reach())).unwrap_or(time::Duration::ZERO);
        let from = bucket_start(now - since, width);
        let current = bucket_start(now, width);
        let until = if width == self.short_secs() {
            current
        } else {
            current + time::Duration::seconds(i64::from(width))
        };
        (from, until)
    }
}

/// The start of the bucket of `width` seconds holding `at`; buckets are aligned to the Unix
/// epoch, so minutes and hours start on the clock's.
pub fn bucket_start(at: OffsetDateTime, width: u32) -> OffsetDateTime {
    let width = i64::from(width.max(1));
    let start = at.unix_timestamp().div_euclid(width) * width;
    OffsetDateTime::from_unix_timestamp(start).unwrap_or(at)
}

/// The oldest bucket start of `width` still kept once the short bucket at `closed` has closed:
/// `kept` buckets, the one holding `closed` included.
fn kept_from(closed: OffsetDateTime, width: u32, kept: u32) -> OffsetDateTime {
    let span = time::Duration::seconds(i64::from(width) * i64::from(kept.saturating_sub(1)));
    bucket_start(closed, width) - span
}

/// One point per bucket start from `from` up to `until`, taking the stored bucket where there
/// is one (`stored` is oldest first).
fn filled(
    stored: impl IntoIterator<Item = MetricBucket>,
    from: OffsetDateTime,
    until: OffsetDateTime,
    width: u32,
) -> Vec<MetricsPoint> {
    let step = time::Duration::seconds(i64::from(width));
    let mut stored = stored.into_iter().peekable();
    let mut points = Vec::new();
    let mut at = from;
    while at < until {
        while stored.next_if(|bucket| bucket.at < at).is_some() {}
        match stored.next_if(|bucket| bucket.at == at) {
            Some(bucket) => points.push(bucket.point()),
            None => points.push(MetricsPoint::empty(at, width)),
        }
        at += step;
    }
    points
}

/// Closes a bucket at each boundary until `stop`, then once more for the bucket in progress,
/// so a restart loses none of what this server counted (its successor's counts of the same
/// bucket add to it). Cancel `stop` once the router has drained.
pub async fn collect(platform: Arc<Platform>, router: Arc<Router>, stop: CancellationToken) {
    let mut collector = Collector::new(platform, router);
    loop {
        let now = OffsetDateTime::now_utc();
        let width = collector.platform.series.short_secs();
        let ends = bucket_start(now, width) + time::Duration::seconds(i64::from(width));
        let wait = Duration::try_from(ends - now).unwrap_or(Duration::ZERO);
        tokio::select! {
            () = stop.cancelled() => {
                collector.close(bucket_start(now, width)).await;
                return;
            }
            () = tokio::time::sleep(wait) => {}
        }
        collector
            .close(ends - time::Duration::seconds(i64::from(width)))
            .await;
    }
}

/// What is needed to turn running totals into one bucket's figures.
struct Collector {
    platform: Arc<Platform>,
    router: Arc<Router>,
    /// Each app's router totals at the last close.
    traffic: HashMap<AppName, TrafficTotals>,
    /// Each process container's CPU time at the last close, and when it was read.
    cpu: HashMap<String, (u64, Instant)>,
    /// The reconciler's crash-restart attempts per slot at the last close.
    attempts: HashMap<String, u32>,
}

impl Collector {
    fn new(platform: Arc<Platform>, router: Arc<Router>) -> Self {
        Self {
            platform,
            router,
            traffic: HashMap::new(),
            cpu: HashMap::new(),
            attempts: HashMap::new(),
        }
    }

    /// Closes the bucket starting at `start`; failures are logged, and the bucket's traffic
    /// is then lost rather than counted twice.
    async fn close(&mut self, start: OffsetDateTime) {
        if let Err(error) = self.try_close(start).await {
            tracing::warn!(%error, at = %start, "closing a metrics bucket failed");
        }
    }

    async fn try_close(&mut self, start: OffsetDateTime) -> anyhow::Result<()> {
        let series = &self.platform.series;
        let (short, long) = (series.short_secs(), series.long_secs());
        let apps = self.platform.store.apps().await?;
        let mut traffic = self.traffic_since_last();
        let mut restarts = self.restarts_since_last();
        let mut seen_containers = Vec::new();
        let mut rows = Vec::new();
        let mut points = Vec::new();
        for app in &apps {
            let mut bucket = MetricBucket::empty(start, short);
            if let Some(delta) = traffic.remove(&app.name) {
                bucket.requests = delta.requests;
                bucket.response_bytes = delta.response_bytes;
                bucket.latency = delta.latency;
            }
            bucket.restarts = restarts.remove(&app.name).unwrap_or(0);
            bucket.processes = self.usage(app, &mut seen_containers).await;
            let busy = bucket.requests.iter().any(|n| *n > 0)
                || !bucket.processes.is_empty()
                || bucket.restarts > 0;
            if busy {
                let mut hour = bucket.clone();
                hour.at = bucket_start(start, long);
                hour.width_secs = long;
                rows.push((app.id, bucket.clone()));
                rows.push((app.id, hour));
            }
            points.push(AppPoint {
                app: app.name.clone(),
                point: bucket.point(),
            });
        }
        self.cpu.retain(|id, _| seen_containers.contains(id));
        let store = &self.platform.store;
        store.add_metric_buckets(&rows).await?;
        for point in points {
            // Nobody listening is not an error: alerts may be off.
            self.platform.series.closed.send(Arc::new(point)).ok();
        }
        store
            .prune_metric_buckets(short, kept_from(start, short, SHORT_BUCKETS_KEPT))
            .await?;
        store
            .prune_metric_buckets(long, kept_from(start, long, LONG_BUCKETS_KEPT))
            .await?;
        Ok(())
    }

    /// Each app's router traffic since the last close.
    fn traffic_since_last(&mut self) -> HashMap<AppName, TrafficTotals> {
        let reading = self.router.traffic();
        let mut deltas = HashMap::new();
        let mut totals = HashMap::new();
        for (app, now) in reading.apps {
            let before = self.traffic.remove(&app).unwrap_or_default();
            deltas.insert(app.clone(), traffic_delta(&now, &before));
            totals.insert(app, now);
        }
        self.traffic = totals;
        deltas
    }

    /// Each app's crash restarts since the last close, from the reconciler's attempts per
    /// slot: an attempt count that grew adds its growth; one that started over (the process
    /// was stable for a while, then crashed again) adds its new count.
    fn restarts_since_last(&mut self) -> HashMap<AppName, u32> {
        let attempts = self.platform.deployer.restart_attempts();
        let mut restarts: HashMap<AppName, u32> = HashMap::new();
        for (slot, now) in &attempts {
            let before = self.attempts.get(slot).copied().unwrap_or(0);
            let new = now.checked_sub(before).unwrap_or(*now);
            if let Some(app) = slot.split('/').next().and_then(|app| app.parse().ok())
                && new > 0
            {
                *restarts.entry(app).or_default() += new;
            }
        }
        self.attempts = attempts;
        restarts
    }

    /// CPU and memory of the app's running process containers. A container read for the
    /// first time has its CPU averaged since it started.
    async fn usage(&mut self, app: &App, seen: &mut Vec<String>) -> Vec<ProcessUsage> {
        let engine = self.platform.deployer.engine();
        let mut filter: Vec<(String, String)> = self
            .platform
            .deployer
            .app_labels(&app.name)
            .into_iter()
            .collect();
        filter.push((labels::ROLE.to_owned(), "process".to_owned()));
        let filter: Vec<(&str, &str)> = filter
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        let containers = match engine.list_containers(&filter).await {
            Ok(containers) => containers,
            Err(error) => {
                tracing::debug!(app = %app.name, %error, "listing processes for metrics failed");
                return Vec::new();
            }
        };
        let mut usage = Vec::new();
        for container in containers.iter().filter(|c| c.running) {
            let Some(dyno) = dyno_of(&container.labels) else {
                continue;
            };
            let Ok(stats) = engine.stats(&container.id).await else {
                continue;
            };
            let now = Instant::now();
            let cpu_percent = match self.cpu.get(&container.id) {
                Some((before_ns, before_at)) => percent_of_core(
                    stats.cpu_total_ns.saturating_sub(*before_ns),
                    now.duration_since(*before_at),
                ),
                None => container
                    .started_at
                    .as_deref()
                    .and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok())
                    .and_then(|at| Duration::try_from(OffsetDateTime::now_utc() - at).ok())
                    .map_or(0.0, |up| percent_of_core(stats.cpu_total_ns, up)),
            };
            self.cpu
                .insert(container.id.clone(), (stats.cpu_total_ns, now));
            seen.push(container.id.clone());
            usage.push(ProcessUsage {
                dyno,
                cpu_percent,
                memory_bytes: stats.memory_bytes,
                memory_limit_bytes: stats.memory_limit_bytes,
            });
        }
        usage.sort_by(|a, b| a.dyno.cmp(&b.dyno));
        usage
    }
}

/// Swarm names a task's container after the task: `<service>.<slot>.<task id>`.
const SWARM_TASK_NAME: &str = "com.docker.swarm.task.name";

/// The dyno a process container is, `web.2`: its index label under `--runtime docker`, the
/// slot in its task's name under `--runtime swarm` (a service gives every task the same
/// labels, so none can carry the slot).
fn dyno_of(container_labels: &BTreeMap<String, String>) -> Option<String> {
    let process = container_labels.get(labels::PROCESS)?;
    let index = match container_labels.get(labels::INDEX) {
        Some(index) => index.as_str(),
        None => {
            let (service_and_slot, _task) =
                container_labels.get(SWARM_TASK_NAME)?.rsplit_once('.')?;
            service_and_slot.rsplit_once('.')?.1
        }
    };
    Some(format!("{process}.{index}"))
}

/// CPU time used over a wall-clock span, in percent of one core.
fn percent_of_core(cpu_ns: u64, over: Duration) -> f64 {
    let over_ns = over.as_nanos() as f64;
    if over_ns <= 0.0 {
        return 0.0;
    }
    cpu_ns as f64 / over_ns * 100.0
}

/// What `now` counted beyond `before`. Totals that went backwards started over (the app left
/// the route table and came back): then all of `now` is new.
fn traffic_delta(now: &TrafficTotals, before: &TrafficTotals) -> TrafficTotals {
    let started_over = now
        .requests
        .iter()
        .zip(before.requests)
        .any(|(now, before)| *now < before)
        || now.response_bytes < before.response_bytes;
    if started_over {
        return now.clone();
    }
    TrafficTotals {
        requests: std::array::from_fn(|class| now.requests[class] - before.requests[class]),
        response_bytes: now.response_bytes - before.response_bytes,
        latency: now.latency.since(&before.latency),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).expect("a time")
    }

    #[test]
    fn buckets_start_on_multiples_of_their_width() {
        assert_eq!(bucket_start(at(119), 60), at(60));
        assert_eq!(bucket_start(at(120), 60), at(120));
        assert_eq!(bucket_start(at(7_199), 3_600), at(3_600));
        assert_eq!(bucket_start(at(5), 2), at(4));
    }

    #[test]
    fn a_bucket_rolls_over_at_its_end_and_its_hour_holds_sixty_of_them() {
        let series = TimeSeries::new(Duration::from_secs(60));
        let now = at(10 * 3600 + 30 * 60 + 15);
        let (from, until) = series.span(Duration::from_secs(600), 60, now);
        assert_eq!(from, at(10 * 3600 + 20 * 60));
        assert_eq!(
            until,
            at(10 * 3600 + 30 * 60),
            "the bucket in progress is left out"
        );
        let (from, until) = series.span(Duration::from_secs(3 * 86_400), 3600, now);
        assert_eq!(from, at(10 * 3600 - 3 * 86_400));
        assert_eq!(until, at(11 * 3600), "the hour in progress is in");
        assert_eq!(series.width_for(Duration::from_secs(86_400)), 60);
        assert_eq!(series.width_for(Duration::from_secs(86_401)), 3600);
        assert_eq!(series.reach(), Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn pruning_keeps_a_day_of_minutes_and_thirty_days_of_hours() {
        let closed = at(40 * 86_400 + 10 * 3600 + 30 * 60);
        let minutes_from = kept_from(closed, 60, SHORT_BUCKETS_KEPT);
        assert_eq!(closed - minutes_from, time::Duration::minutes(1439));
        let hours_from = kept_from(closed, 3600, LONG_BUCKETS_KEPT);
        assert_eq!(hours_from, at(10 * 86_400 + 11 * 3600));
        assert_eq!(
            (bucket_start(closed, 3600) - hours_from).whole_hours(),
            719,
            "the hour in progress is one of the 720"
        );
    }

    #[test]
    fn gaps_are_filled_with_empty_points_and_stray_buckets_skipped() {
        let mut busy = MetricBucket::empty(at(120), 60);
        busy.requests[1] = 7;
        let stray = MetricBucket::empty(at(30), 60);
        let points = filled([stray, busy], at(60), at(300), 60);
        let got: Vec<(i64, u64)> = points
            .iter()
            .map(|p| (p.at.unix_timestamp(), p.total_requests()))
            .collect();
        assert_eq!(got, [(60, 0), (120, 7), (180, 0), (240, 0)]);
    }

    #[test]
    fn traffic_deltas_subtract_the_last_reading_or_restart_from_zero() {
        let mut before = TrafficTotals {
            requests: [0, 10, 0, 2, 0],
            response_bytes: 1_000,
            ..TrafficTotals::default()
        };
        before.latency.record(1_000);
        let mut now = before.clone();
        now.requests = [0, 15, 1, 2, 0];
        now.response_bytes = 1_500;
        now.latency.record(50_000);
        let delta = traffic_delta(&now, &before);
        assert_eq!(delta.requests, [0, 5, 1, 0, 0]);
        assert_eq!(delta.response_bytes, 500);
        assert_eq!(delta.latency.count(), 1);

        let restarted = traffic_delta(&before, &now);
        assert_eq!(restarted, before, "totals that went backwards count whole");
    }

    #[test]
    fn a_dyno_is_its_index_or_its_swarm_tasks_slot() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect()
        };
        assert_eq!(
            dyno_of(&labels(&[(labels::PROCESS, "web"), (labels::INDEX, "3")])).as_deref(),
            Some("web.3")
        );
        assert_eq!(
            dyno_of(&labels(&[
                (labels::PROCESS, "web"),
                (
                    SWARM_TASK_NAME,
                    "slipway-hello-web.2.k3v9x0q1m2n3b4c5d6e7f8g9h"
                ),
            ]))
            .as_deref(),
            Some("web.2")
        );
        assert_eq!(dyno_of(&labels(&[(labels::PROCESS, "web")])), None);
        assert_eq!(
            dyno_of(&labels(&[
                (labels::PROCESS, "web"),
                (SWARM_TASK_NAME, "odd")
            ])),
            None
        );
    }

    #[test]
    fn cpu_is_a_percentage_of_one_core() {
        assert_eq!(percent_of_core(500_000_000, Duration::from_secs(1)), 50.0);
        assert_eq!(
            percent_of_core(4_000_000_000, Duration::from_secs(2)),
            200.0
        );
        assert_eq!(percent_of_core(1, Duration::ZERO), 0.0);
    }
}
