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
mod proxy;
mod router;
mod server;
mod stats;
mod table;
mod tls;

pub use access_log::{AccessLogSink, LOG_TARGET};
pub use router::{Router, RouterConfig};
pub use tls::{CertLoadError, CertProblem};
