#![doc = include_str!("../README.md")]

mod access_log;
mod body;
mod challenge;
mod connector;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod headers;
mod pages;
mod pool;
mod proxy;
mod ratelimit;
mod release_stats;
mod router;
mod server;
mod split;
mod stats;
mod table;
mod tls;
mod upstream;
mod workers;

pub use access_log::{AccessLogSink, LOG_TARGET};
pub use release_stats::ReleaseCounts;
pub use router::{Router, RouterConfig};
pub use stats::{TrafficReading, TrafficTotals};
pub use tls::{CertLoadError, CertProblem};
