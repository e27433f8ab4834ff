#![doc = include_str!("../README.md")]

pub mod acme;
pub mod certs;
pub mod check;
pub mod dns;
#[cfg(feature = "pebble")]
pub mod pebble;
