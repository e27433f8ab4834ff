#![doc = include_str!("../README.md")]

mod access_log;
mod body;
mod connector;
mod error;
mod headers;
mod pages;
mod proxy;
mod router;
mod server;
mod table;

pub use access_log::{AccessLogSink, LOG_TARGET};
pub use router::{Router, RouterConfig};
