#![doc = include_str!("../README.md")]

pub mod api;
pub mod app_json;
pub mod config;
pub mod container;
pub mod domain;
pub mod names;
pub mod procfile;
pub mod route;
pub mod tls;
pub mod version;

pub use app_json::{AppJson, AppJsonError, HealthCheck, parse_memory};
pub use config::{ConfigError, ConfigVars};
pub use container::{ContainerSpec, Mount, MountSource, labels};
pub use domain::{DomainError, DomainName};
pub use names::{AppName, ConfigKey, NameError, ProcessType};
pub use procfile::{Procfile, ProcfileError};
pub use route::{Backend, RouteSnapshot, SiteRoutes};
pub use tls::{CertSnapshot, ServedCert};
pub use version::{Bump, next_version};
