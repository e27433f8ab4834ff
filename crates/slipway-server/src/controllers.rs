//! One module per resource; `router.rs` lists every route.

pub mod access;
pub mod addons;
pub mod admin;
pub mod apps;
pub mod buildpacks;
pub mod builds;
pub mod certs;
pub mod config;
pub mod domains;
pub mod formation;
pub mod git;
pub mod health;
pub mod keys;
pub mod logs;
pub mod maintenance;
pub mod openapi;
pub mod releases;
pub mod runs;
pub mod sessions;
pub mod tokens;
pub mod whoami;
