//! What the metrics time series costs per app (deploy/bench/metrics.sh runs it):
//!
//! ```sh
//! cargo run --release -p slipway-server --example metrics_footprint -- 100
//! ```
//!
//! fills a SQLite store in a temporary directory with a full series for each of APPS apps (a
//! day of minute buckets and 30 days of hour buckets, two processes each, a dozen latency
//! buckets in use), then prints the store's size per app, how long reading an app's day and
//! the platform's hour takes, and the resident memory per app of the state the server keeps in
//! memory for the series: the router's per-app counters and the collector's last reading of
//! them, measured over 10,000 apps so the figure rises above the allocator's noise.

use std::time::Instant;

use slipway_router::{Router, RouterConfig};
use slipway_store::{Role, Store};
use slipway_types::metrics::{MetricBucket, ProcessUsage};
use slipway_types::{AppName, RouteSnapshot, SiteRoutes};
use time::{Duration, OffsetDateTime};

/// Apps of the memory measurement.
const MEMORY_APPS: usize = 10_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [memory, mode] = args.as_slice()
        && memory == "memory"
    {
        println!("{}", resident_per_app(mode == "on")?);
        return Ok(());
    }
    let apps: usize = match args.first() {
        Some(n) => n.parse()?,
        None => 100,
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("slipway.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url).await?;
    let owner = store.create_user("bench@example.test", Role::Admin).await?;
    let now = OffsetDateTime::now_utc();
    let minute = bucket_start(now, 60);
    let hour = bucket_start(now, 3600);
    let mut ids = Vec::new();
    let filling = Instant::now();
    for n in 0..apps {
        let name: AppName = format!("app-{n}").parse()?;
        let app = store.create_app(&name, owner.id).await?;
        ids.push(app.id);
        let mut rows = Vec::with_capacity(1440 + 720);
        for back in 1..=1440 {
            rows.push((app.id, bucket(minute - Duration::minutes(back), 60, back)));
        }
        for back in 0..720 {
            rows.push((app.id, bucket(hour - Duration::hours(back), 3600, back)));
        }
        store.add_metric_buckets(&rows).await?;
    }
    let filled = filling.elapsed();
    store.close().await;
    let bytes = std::fs::metadata(&path)?.len();
    println!(
        "store: {apps} apps × (1440 minute + 720 hour buckets) in {:.1} s; {:.1} MiB on disk, {:.0} KiB per app",
        filled.as_secs_f64(),
        bytes as f64 / f64::from(1 << 20),
        bytes as f64 / 1024.0 / apps as f64
    );

    let store = Store::open(&url).await?;
    let reading = Instant::now();
    let day = store
        .metric_buckets(Some(ids[0]), 60, now - Duration::days(1))
        .await?;
    let day_took = reading.elapsed();
    let reading = Instant::now();
    let platform = store
        .metric_buckets(None, 60, now - Duration::hours(1))
        .await?;
    let platform_took = reading.elapsed();
    let reading = Instant::now();
    let month = store
        .metric_buckets(Some(ids[0]), 3600, now - Duration::days(30))
        .await?;
    let month_took = reading.elapsed();
    println!(
        "reads: one app's day ({} buckets) {:.1} ms, its month ({} buckets) {:.1} ms, every app's hour ({} buckets) {:.1} ms",
        day.len(),
        day_took.as_secs_f64() * 1000.0,
        month.len(),
        month_took.as_secs_f64() * 1000.0,
        platform.len(),
        platform_took.as_secs_f64() * 1000.0,
    );
    store.close().await;

    // Each in a process of its own, so one does not reuse memory the other freed.
    let per_app = |mode: &str| -> Result<f64, Box<dyn std::error::Error>> {
        let out = std::process::Command::new(std::env::current_exe()?)
            .args(["memory", mode])
            .output()?;
        Ok(String::from_utf8(out.stdout)?.trim().parse()?)
    };
    let off = per_app("off")?;
    let on = per_app("on")?;
    println!(
        "memory: {:.0} bytes per app with the series' counters and last reading, {:.0} without: {:.0} bytes per app for the series (resident, over {MEMORY_APPS} apps)",
        on,
        off,
        on - off
    );
    Ok(())
}

/// Resident bytes per app of a router routing [`MEMORY_APPS`] apps, with the reading of
/// their counters the collector keeps when `on`.
fn resident_per_app(on: bool) -> Result<f64, Box<dyn std::error::Error>> {
    let snapshot = snapshot(MEMORY_APPS)?;
    let before = resident_bytes()?;
    let router = Router::new(RouterConfig {
        app_traffic: on,
        ..RouterConfig::default()
    });
    router.update(&snapshot);
    let reading = router.traffic();
    let after = resident_bytes()?;
    drop((reading, router));
    Ok((after as f64 - before as f64) / MEMORY_APPS as f64)
}

/// A busy bucket: traffic in every class, a dozen latency buckets, two processes.
fn bucket(at: OffsetDateTime, width_secs: u32, seed: i64) -> MetricBucket {
    let scale = u64::from(width_secs / 60);
    let seed = seed.unsigned_abs();
    let mut bucket = MetricBucket::empty(at, width_secs);
    bucket.requests = [0, 900 + seed % 97, 40, 25 + seed % 7, seed % 3].map(|n| n * scale);
    bucket.response_bytes = 2_000_000 * scale;
    for step in 0..12 {
        bucket
            .latency
            .record(800 + step * step * 2_000 + seed % 500);
    }
    bucket.processes = ["web.1", "worker.1"]
        .into_iter()
        .map(|dyno| ProcessUsage {
            dyno: dyno.to_owned(),
            cpu_percent: 12.5 + (seed % 10) as f64,
            memory_bytes: (180 << 20) + seed * 4096,
            memory_limit_bytes: Some(512 << 20),
        })
        .collect();
    bucket.restarts = u32::from(seed.is_multiple_of(50));
    bucket
}

fn bucket_start(at: OffsetDateTime, width: i64) -> OffsetDateTime {
    let start = at.unix_timestamp().div_euclid(width) * width;
    OffsetDateTime::from_unix_timestamp(start).unwrap_or(at)
}

fn snapshot(apps: usize) -> Result<RouteSnapshot, Box<dyn std::error::Error>> {
    let mut sites = Vec::with_capacity(apps);
    for n in 0..apps {
        sites.push(SiteRoutes {
            app: format!("app-{n}").parse()?,
            hosts: vec![format!("app-{n}.localhost")],
            backends: Vec::new(),
            maintenance: false,
            canary: None,
            rate_limit: None,
        });
    }
    Ok(RouteSnapshot { sites })
}

/// The process's resident set, from `/proc/self/statm`.
fn resident_bytes() -> Result<u64, Box<dyn std::error::Error>> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or("no resident size in /proc/self/statm")?
        .parse()?;
    Ok(pages * 4096)
}
