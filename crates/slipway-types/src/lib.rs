#![doc = include_str!("../README.md")]

pub mod alerts;
pub mod api;
pub mod app_json;
pub mod canary;
pub mod config;
pub mod container;
pub mod domain;
pub mod drains;
pub mod metrics;
pub mod names;
pub mod nodes;
pub mod pipeline;
pub mod procfile;
pub mod route;
pub mod tls;
pub mod version;

pub use app_json::{AppJson, AppJsonError, HealthCheck, parse_memory};
pub use config::{ConfigError, ConfigVars};
pub use container::{ContainerSpec, Mount, MountSource, labels};
pub use domain::{DomainError, DomainName};
pub use names::{AppName, ConfigKey, NameError, ProcessType};
pub use pipeline::{PipelineError, PipelineName, Stage};
pub use procfile::{Procfile, ProcfileError};
pub use route::{Backend, CanaryRoutes, RateLimit, RatePeriod, RouteSnapshot, SiteRoutes};
pub use tls::{CertSnapshot, ServedCert};
pub use version::{Bump, next_version};
