//! One module per resource; `router.rs` lists every route.

pub mod apps;
pub mod builds;
pub mod config;
pub mod git;
pub mod health;
pub mod releases;
pub mod whoami;
