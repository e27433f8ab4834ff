//! One module per resource; `router.rs` lists every route.

pub mod addons;
pub mod apps;
pub mod builds;
pub mod certs;
pub mod config;
pub mod domains;
pub mod formation;
pub mod git;
pub mod health;
pub mod logs;
pub mod releases;
pub mod runs;
pub mod whoami;
