//! Server configuration: flags, `SLIPWAY_*` environment variables and a TOML file, in that
//! order of precedence, validated once at start.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// `slipway server` flags. Each is also `SLIPWAY_<FLAG>` in the environment and `<flag>` in
/// the `--config` TOML file.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServerArgs {
    /// TOML file with any of the settings below (flags and environment win over it)
    #[arg(long, env = "SLIPWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// State: SQLite file, bare git repos, build caches [default: ./.slipway]
    #[arg(long, env = "SLIPWAY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Control-plane store, `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB` (several
    /// servers may share one PostgreSQL) [default: sqlite://<data-dir>/slipway.db]
    #[arg(long, env = "SLIPWAY_DATABASE_URL")]
    pub database_url: Option<String>,
    /// How long the leader's lease lasts without renewal: a follower takes over deploys this
    /// long after the leader dies. Renewed every third of it [default: 15s]
    #[arg(long, env = "SLIPWAY_LEADER_LEASE")]
    pub leader_lease: Option<String>,
    /// REST API, git smart-HTTP and /healthz [default: 127.0.0.1:7070]
    #[arg(long, env = "SLIPWAY_API_LISTEN")]
    pub api_listen: Option<SocketAddr>,
    /// Router, plain HTTP [default: 0.0.0.0:80]
    #[arg(long, env = "SLIPWAY_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Router, TLS with SNI [default: 0.0.0.0:443]
    #[arg(long, env = "SLIPWAY_HTTPS_LISTEN")]
    pub https_listen: Option<SocketAddr>,
    /// Git over SSH, `ssh://git@host:PORT/<app>.git` [default: 0.0.0.0:2222]
    #[arg(long, env = "SLIPWAY_SSH_LISTEN")]
    pub ssh_listen: Option<SocketAddr>,
    /// Every app answers at <app>.<apps-domain> [default: localhost]
    #[arg(long, env = "SLIPWAY_APPS_DOMAIN")]
    pub apps_domain: Option<String>,
    /// Where apps run: `docker` (containers on this engine) or `swarm` (Docker Swarm
    /// services; the engine must be a swarm manager) [default: docker]
    #[arg(long, env = "SLIPWAY_RUNTIME")]
    pub runtime: Option<String>,
    /// With `--runtime swarm`: registry, `HOST[:PORT][/PREFIX]`, that release images are
    /// pushed to so every node pulls them (anonymous push, no login) [default: none, images
    /// stay on this node]
    #[arg(long, env = "SLIPWAY_REGISTRY")]
    pub registry: Option<String>,
    /// Image that builds and runs apps [default: slipway/stack:trixie]
    #[arg(long, env = "SLIPWAY_STACK_IMAGE")]
    pub stack_image: Option<String>,
    /// PEM file of extra CA certificates trusted inside build containers
    #[arg(long, env = "SLIPWAY_BUILD_CA_BUNDLE")]
    pub build_ca_bundle: Option<PathBuf>,
    /// PEM file of extra CA certificates trusted when shipping logs to syslog+tls:// and
    /// https:// drains, on top of the system's
    #[arg(long, env = "SLIPWAY_DRAIN_CA_BUNDLE")]
    pub drain_ca_bundle: Option<PathBuf>,
    /// Lines buffered per log drain while its receiver is slow or down [default: 10000]
    #[arg(long, env = "SLIPWAY_DRAIN_BUFFER_LINES", hide = true)]
    pub drain_buffer_lines: Option<usize>,
    /// Key that signs API tokens [default: <data-dir>/master.key, created 0600]
    #[arg(long, env = "SLIPWAY_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// How many builds of different apps may run at once [default: 2]
    #[arg(long, env = "SLIPWAY_BUILD_CONCURRENCY")]
    pub build_concurrency: Option<usize>,
    /// A build still running after this long is stopped, like `90s`, `30m` or `2h` [default: 30m]
    #[arg(long, env = "SLIPWAY_BUILD_TIMEOUT")]
    pub build_timeout: Option<String>,
    /// Memory each build container may use, like `512M` or `4G`, from 64M to 64G [default: 2G]
    #[arg(long, env = "SLIPWAY_BUILD_MEMORY")]
    pub build_memory: Option<String>,
    /// Log lines kept per app, in memory and on disk under <data-dir>/logs [default: 1500]
    #[arg(long, env = "SLIPWAY_LOG_LINES")]
    pub log_lines: Option<usize>,
    /// How long a Procfile `release:` command may run, like `90s`, `30m` or `2h` [default: 30m]
    #[arg(long, env = "SLIPWAY_RELEASE_TIMEOUT")]
    pub release_timeout: Option<String>,
    /// Image of Postgres add-ons [default: slipway/postgres:17]
    #[arg(long, env = "SLIPWAY_POSTGRES_IMAGE")]
    pub postgres_image: Option<String>,
    /// Image of Redis add-ons [default: slipway/redis:8]
    #[arg(long, env = "SLIPWAY_REDIS_IMAGE")]
    pub redis_image: Option<String>,
    /// Days the daily Postgres backups are kept under <data-dir>/backups [default: 7]
    #[arg(long, env = "SLIPWAY_BACKUP_RETENTION")]
    pub backup_retention: Option<u32>,
    /// ACME directory URL (Let's Encrypt, or Pebble in tests) [default: none, no ACME]
    #[arg(long, env = "SLIPWAY_ACME_DIRECTORY")]
    pub acme_directory: Option<String>,
    /// ACME account contact e-mail
    #[arg(long, env = "SLIPWAY_ACME_EMAIL")]
    pub acme_email: Option<String>,
    /// Extra root CA (PEM) to trust when talking to the ACME server
    #[arg(long, env = "SLIPWAY_ACME_CA_BUNDLE")]
    pub acme_ca_bundle: Option<PathBuf>,
    /// Built-in authoritative DNS server for the apps domain, like 0.0.0.0:53 [default: off]
    #[arg(long, env = "SLIPWAY_DNS_LISTEN")]
    pub dns_listen: Option<SocketAddr>,
    /// Zones of custom domains delegated to the built-in DNS server, comma-separated
    #[arg(long, env = "SLIPWAY_DNS_ZONES", value_delimiter = ',')]
    pub dns_zones: Option<Vec<String>>,
    /// Address served for apps and expected by domain checks [default: first non-loopback address]
    #[arg(long, env = "SLIPWAY_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,
    /// DNS server that domain checks ask, like 127.0.0.1:53 [default: the system's resolvers]
    #[arg(long, env = "SLIPWAY_DNS_RESOLVER")]
    pub dns_resolver: Option<SocketAddr>,
    /// Width of the metrics time series' short buckets [default: 60s]; tests shorten it
    #[arg(long, env = "SLIPWAY_METRICS_BUCKET", hide = true)]
    pub metrics_bucket: Option<String>,
}

/// The same settings as they appear in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    leader_lease: Option<String>,
    api_listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    https_listen: Option<SocketAddr>,
    ssh_listen: Option<SocketAddr>,
    apps_domain: Option<String>,
    runtime: Option<String>,
    registry: Option<String>,
    stack_image: Option<String>,
    build_ca_bundle: Option<PathBuf>,
    drain_ca_bundle: Option<PathBuf>,
    drain_buffer_lines: Option<usize>,
    master_key_file: Option<PathBuf>,
    build_concurrency: Option<usize>,
    build_timeout: Option<String>,
    build_memory: Option<String>,
    log_lines: Option<usize>,
    release_timeout: Option<String>,
    postgres_image: Option<String>,
    redis_image: Option<String>,
    backup_retention: Option<u32>,
    acme_directory: Option<String>,
    acme_email: Option<String>,
    acme_ca_bundle: Option<PathBuf>,
    dns_listen: Option<SocketAddr>,
    dns_zones: Option<Vec<String>>,
    public_ip: Option<IpAddr>,
    dns_resolver: Option<SocketAddr>,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub database_url: String,
    /// How long the leader's lease lasts without renewal.
    pub leader_lease: Duration,
    pub api_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub https_listen: SocketAddr,
    pub ssh_listen: SocketAddr,
    pub apps_domain: String,
    pub runtime: Runtime,
    /// `HOST[:PORT][/PREFIX]` that Swarm release images are pushed to; `None` keeps them
    /// local. Only with [`Runtime::Swarm`].
    pub registry: Option<String>,
    pub stack_image: String,
    pub build_ca_bundle: Option<PathBuf>,
    /// Extra roots for drains' TLS.
    pub drain_ca_bundle: Option<PathBuf>,
    /// Lines each drain buffers before it drops the oldest.
    pub drain_buffer_lines: usize,
    pub master_key_file: PathBuf,
    pub build_concurrency: usize,
    pub build_timeout: Duration,
    /// Bytes of memory per build container.
    pub build_memory: i64,
    /// Lines of each app's log that `slipway logs` can show, kept across restarts.
    pub log_lines: usize,
    pub release_timeout: Duration,
    pub postgres_image: String,
    pub redis_image: String,
    /// How long scheduled backups are kept.
    pub backup_retention: Duration,
    /// Certificates are ordered only when this is set.
    pub acme: Option<AcmeSettings>,
    pub dns_listen: Option<SocketAddr>,
    /// Zones of custom domains whose DNS is delegated to the built-in server.
    pub dns_zones: Vec<String>,
    pub public_ip: IpAddr,
    /// `None`: the system's resolvers.
    pub dns_resolver: Option<SocketAddr>,
    /// Width of the metrics series' short buckets; an hour bucket is 60 of them.
    pub metrics_bucket: Duration,
}

/// Where apps run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// Containers on this server's Docker engine, managed by Slipway.
    Docker,
    /// Docker Swarm services: Swarm places, restarts and rolls the tasks on its nodes.
    Swarm,
}

#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub directory: String,
    pub email: Option<String>,
    pub ca_bundle: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file `{path}`: {message}")]
    File { path: String, message: String },
    #[error("{setting} {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
}

impl ServerArgs {
    /// Merges flags/env (already in `self`) over the `--config` file over the defaults.
    pub fn resolve(self) -> Result<ServerConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./.slipway"));
        let data_dir = absolute(&data_dir);
        let database_url = self
            .database_url
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("slipway.db").display()));
        if !["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|scheme| database_url.starts_with(scheme))
        {
            return Err(ConfigError::Invalid {
                setting: "--database-url",
                message: format!(
                    "`{}` is not supported: use a sqlite:// or postgres:// URL",
                    redact_url(&database_url)
                ),
            });
        }
        let leader_lease = match self.leader_lease.or(file.leader_lease) {
            Some(text) => parse_duration(&text)
                .filter(|ttl| (3..=600).contains(&ttl.as_secs()))
                .ok_or_else(|| ConfigError::Invalid {
                    setting: "--leader-lease",
                    message: format!("`{text}` is not a duration from 3s to 10m, like 15s"),
                })?,
            None => Duration::from_secs(15),
        };
        let runtime = match self.runtime.or(file.runtime).as_deref() {
            None | Some("docker") => Runtime::Docker,
            Some("swarm") => Runtime::Swarm,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    setting: "--runtime",
                    message: format!("`{other}` is not a runtime: use `docker` or `swarm`"),
                });
            }
        };
        let registry = self
            .registry
            .or(file.registry)
            .map(|registry| validate_registry(&registry))
            .transpose()?;
        if registry.is_some() && runtime != Runtime::Swarm {
            return Err(ConfigError::Invalid {
                setting: "--registry",
                message: "needs --runtime swarm: with --runtime docker images never leave this \
                          node"
                    .to_owned(),
            });
        }
        let apps_domain = self
            .apps_domain
            .or(file.apps_domain)
            .unwrap_or_else(|| "localhost".into())
            .to_ascii_lowercase();
        let apps_domain = validate_domain("--apps-domain", apps_domain)?;
        let build_ca_bundle = self.build_ca_bundle.or(file.build_ca_bundle);
        if let Some(bundle) = &build_ca_bundle
            && !bundle.is_file()
        {
            return Err(ConfigError::Invalid {
                setting: "--build-ca-bundle",
                message: format!("`{}` is not a readable file", bundle.display()),
            });
        }
        let drain_ca_bundle = self.drain_ca_bundle.or(file.drain_ca_bundle);
        if let Some(bundle) = &drain_ca_bundle
            && !bundle.is_file()
        {
            return Err(ConfigError::Invalid {
                setting: "--drain-ca-bundle",
                message: format!("`{}` is not a readable file", bundle.display()),
            });
        }
        let drain_buffer_lines = self
            .drain_buffer_lines
            .or(file.drain_buffer_lines)
            .unwrap_or(crate::drains::DEFAULT_BUFFER_LINES);
        if !(10..=1_000_000).contains(&drain_buffer_lines) {
            return Err(ConfigError::Invalid {
                setting: "--drain-buffer-lines",
                message: format!("must be between 10 and 1000000, not {drain_buffer_lines}"),
            });
        }
        let build_concurrency = self
            .build_concurrency
            .or(file.build_concurrency)
            .unwrap_or(2);
        if !(1..=64).contains(&build_concurrency) {
            return Err(ConfigError::Invalid {
                setting: "--build-concurrency",
                message: format!("must be between 1 and 64, not {build_concurrency}"),
            });
        }
        let build_timeout = match self.build_timeout.or(file.build_timeout) {
            Some(text) => parse_duration(&text).ok_or_else(|| ConfigError::Invalid {
                setting: "--build-timeout",
                message: format!("`{text}` is not a duration from 1s to 24h: use a number with s, m or h, like 30m"),
            })?,
            None => Duration::from_secs(30 * 60),
        };
        let build_memory = match self.build_memory.or(file.build_memory) {
            Some(text) => {
                slipway_types::parse_memory(&text).map_err(|message| ConfigError::Invalid {
                    setting: "--build-memory",
                    message,
                })?
            }
            None => 2 << 30,
        };
        let release_timeout = match self.release_timeout.or(file.release_timeout) {
            Some(text) => parse_duration(&text).ok_or_else(|| ConfigError::Invalid {
                setting: "--release-timeout",
                message: format!("`{text}` is not a duration from 1s to 24h: use a number with s, m or h, like 30m"),
            })?,
            None => Duration::from_secs(30 * 60),
        };
        let metrics_bucket = match self.metrics_bucket {
            Some(text) => parse_duration(&text).ok_or_else(|| ConfigError::Invalid {
                setting: "--metrics-bucket",
                message: format!("`{text}` is not a duration from 1s to 24h, like 60s"),
            })?,
            None => Duration::from_secs(60),
        };
        let log_lines = self
            .log_lines
            .or(file.log_lines)
            .unwrap_or(crate::logs::DEFAULT_KEEP_LINES);
        if !(100..=1_000_000).contains(&log_lines) {
            return Err(ConfigError::Invalid {
                setting: "--log-lines",
                message: format!("must be between 100 and 1000000, not {log_lines}"),
            });
        }
        let backup_retention = self.backup_retention.or(file.backup_retention).unwrap_or(7);
        if !(1..=3650).contains(&backup_retention) {
            return Err(ConfigError::Invalid {
                setting: "--backup-retention",
                message: format!("must be between 1 and 3650 days, not {backup_retention}"),
            });
        }
        let acme = match self.acme_directory.or(file.acme_directory) {
            Some(directory) => Some(acme_settings(
                directory,
                self.acme_email.or(file.acme_email),
                self.acme_ca_bundle.or(file.acme_ca_bundle),
            )?),
            None => None,
        };
        let dns_zones = self.dns_zones.or(file.dns_zones).unwrap_or_default();
        let dns_zones = dns_zones
            .iter()
            .map(|zone| zone.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|zone| !zone.is_empty())
            .map(|zone| validate_domain("--dns-zones", zone))
            .collect::<Result<Vec<_>, _>>()?;
        let master_key_file = self
            .master_key_file
            .or(file.master_key_file)
            .unwrap_or_else(|| data_dir.join("master.key"));
        Ok(ServerConfig {
            database_url,
            leader_lease,
            api_listen: self
                .api_listen
                .or(file.api_listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7070))),
            http_listen: self
                .http_listen
                .or(file.http_listen)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 80))),
            https_listen: self
                .https_listen
                .or(file.https_listen)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 443))),
            ssh_listen: self
                .ssh_listen
                .or(file.ssh_listen)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 2222))),
            apps_domain,
            runtime,
            registry,
            acme,
            dns_listen: self.dns_listen.or(file.dns_listen),
            dns_zones,
            public_ip: self
                .public_ip
                .or(file.public_ip)
                .unwrap_or_else(first_public_address),
            dns_resolver: self.dns_resolver.or(file.dns_resolver),
            stack_image: self
                .stack_image
                .or(file.stack_image)
                .unwrap_or_else(|| "slipway/stack:trixie".into()),
            build_ca_bundle: build_ca_bundle.map(|p| absolute(&p)),
            drain_ca_bundle: drain_ca_bundle.map(|p| absolute(&p)),
            drain_buffer_lines,
            master_key_file: absolute(&master_key_file),
            build_concurrency,
            build_timeout,
            build_memory,
            log_lines,
            release_timeout,
            postgres_image: self
                .postgres_image
                .or(file.postgres_image)
                .unwrap_or_else(|| "slipway/postgres:17".into()),
            redis_image: self
                .redis_image
                .or(file.redis_image)
                .unwrap_or_else(|| "slipway/redis:8".into()),
            backup_retention: Duration::from_secs(u64::from(backup_retention) * 24 * 3600),
            metrics_bucket,
            data_dir,
        })
    }
}

impl ServerConfig {
    /// The public URL of an app through the router.
    pub fn app_url(&self, app: &str) -> String {
        match self.http_listen.port() {
            80 => format!("http://{app}.{}", self.apps_domain),
            port => format!("http://{app}.{}:{port}", self.apps_domain),
        }
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_listen)
    }
}

/// `90s`, `30m`, `2h` or plain seconds, from 1 s to 24 h.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return None,
    };
    let seconds = digits.parse::<u64>().ok()?.checked_mul(scale)?;
    (1..=24 * 3600)
        .contains(&seconds)
        .then(|| Duration::from_secs(seconds))
}

/// `HOST[:PORT][/PREFIX]` as Docker reads the start of an image name: the host must have a
/// dot or a port (or be `localhost`), else Docker takes it for a Docker Hub account; the
/// prefix is lowercase path components. Returned without a trailing slash.
fn validate_registry(text: &str) -> Result<String, ConfigError> {
    let invalid = |why: &str| ConfigError::Invalid {
        setting: "--registry",
        message: format!(
            "`{text}` is not HOST[:PORT][/PREFIX], like registry.internal:5000: {why}"
        ),
    };
    let registry = text.trim().trim_end_matches('/');
    if registry.contains("://") {
        return Err(invalid("leave out the scheme"));
    }
    let (host_port, prefix) = registry.split_once('/').unwrap_or((registry, ""));
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (host_port, None),
    };
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|port| port > 0)
    {
        return Err(invalid("the port is not a number from 1 to 65535"));
    }
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
        }
    };
    if !host_ok {
        return Err(invalid("the host is not a host name or IP address"));
    }
    if port.is_none() && !host.contains('.') && host != "localhost" {
        return Err(invalid(
            "Docker reads a host without a dot or a port as a Docker Hub account: add the port",
        ));
    }
    let component_ok = |component: &str| {
        !component.is_empty()
            && component.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && component.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && component
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
    };
    if !prefix.is_empty() && !prefix.split('/').all(component_ok) {
        return Err(invalid(
            "the prefix must be lowercase letters, digits and . _ - between slashes",
        ));
    }
    Ok(registry.to_owned())
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.display().to_string(),
        message: e.message().to_owned(),
    })
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn acme_settings(
    directory: String,
    email: Option<String>,
    ca_bundle: Option<PathBuf>,
) -> Result<AcmeSettings, ConfigError> {
    if !directory.starts_with("https://") {
        return Err(ConfigError::Invalid {
            setting: "--acme-directory",
            message: format!("`{directory}` is not an https:// URL of an ACME directory"),
        });
    }
    if let Some(email) = &email
        && (email.contains(char::is_whitespace) || !email.contains('@'))
    {
        return Err(ConfigError::Invalid {
            setting: "--acme-email",
            message: format!("`{email}` is not an e-mail address"),
        });
    }
    if let Some(bundle) = &ca_bundle
        && !bundle.is_file()
    {
        return Err(ConfigError::Invalid {
            setting: "--acme-ca-bundle",
            message: format!("`{}` is not a readable file", bundle.display()),
        });
    }
    Ok(AcmeSettings {
        directory,
        email,
        ca_bundle: ca_bundle.map(|p| absolute(&p)),
    })
}

/// The first address of an interface that is up and not loopback, IPv4 first; loopback when
/// there is none (a laptop offline).
fn first_public_address() -> IpAddr {
    let addresses: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|iface| !iface.is_loopback())
        .map(|iface| iface.ip())
        .collect();
    addresses
        .iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| addresses.first())
        .copied()
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

fn validate_domain(setting: &'static str, domain: String) -> Result<String, ConfigError> {
    let valid = !domain.is_empty()
        && domain.len() <= 200
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if valid {
        Ok(domain)
    } else {
        Err(ConfigError::Invalid {
            setting,
            message: format!("`{domain}` is not a valid domain name"),
        })
    }
}

/// A database URL without its password, for messages.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://…@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = ServerArgs::default().resolve().unwrap();
        assert!(config.data_dir.ends_with(".slipway"));
        assert!(config.database_url.ends_with(".slipway/slipway.db"));
        assert_eq!(config.api_listen.to_string(), "127.0.0.1:7070");
        assert_eq!(config.http_listen.to_string(), "0.0.0.0:80");
        assert_eq!(config.ssh_listen.to_string(), "0.0.0.0:2222");
        assert_eq!(config.apps_domain, "localhost");
        assert_eq!(config.stack_image, "slipway/stack:trixie");
        assert_eq!(config.app_url("hello"), "http://hello.localhost");
        assert_eq!(config.release_timeout, Duration::from_secs(1800));
        assert_eq!(config.postgres_image, "slipway/postgres:17");
        assert_eq!(config.redis_image, "slipway/redis:8");
        assert_eq!(config.backup_retention, Duration::from_secs(7 * 24 * 3600));
    }

    #[test]
    fn addon_settings_come_from_flag_or_file_and_retention_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("slipway.toml");
        std::fs::write(
            &file,
            "postgres-image = \"pg:file\"\nredis-image = \"redis:file\"\nbackup-retention = 30\n",
        )
        .unwrap();
        let from_file = ServerArgs {
            config: Some(file),
            ..Default::default()
        };
        let config = from_file.clone().resolve().unwrap();
        assert_eq!(config.postgres_image, "pg:file");
        assert_eq!(config.redis_image, "redis:file");
        assert_eq!(config.backup_retention, Duration::from_secs(30 * 24 * 3600));
        let config = ServerArgs {
            postgres_image: Some("pg:flag".into()),
            backup_retention: Some(1),
            ..from_file
        }
        .resolve()
        .unwrap();
        assert_eq!(config.postgres_image, "pg:flag");
        assert_eq!(config.backup_retention, Duration::from_secs(24 * 3600));
        for bad in [0, 3651] {
            let err = ServerArgs {
                backup_retention: Some(bad),
                ..Default::default()
            }
            .resolve()
            .unwrap_err();
            assert!(
                err.to_string().starts_with("--backup-retention"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_registry_is_a_host_with_a_dot_or_port_and_needs_the_swarm_runtime() {
        let swarm = |registry: &str| ServerArgs {
            runtime: Some("swarm".into()),
            registry: Some(registry.into()),
            ..Default::default()
        };
        assert_eq!(ServerArgs::default().resolve().unwrap().registry, None);
        for (given, kept) in [
            ("127.0.0.1:5000", "127.0.0.1:5000"),
            ("registry.internal/team/", "registry.internal/team"),
            ("localhost", "localhost"),
            ("[::1]:5000/a/b-c", "[::1]:5000/a/b-c"),
        ] {
            let config = swarm(given).resolve().unwrap();
            assert_eq!(config.registry.as_deref(), Some(kept), "{given}");
        }
        for bad in [
            "registry",
            "http://registry.internal",
            "registry.internal:0",
            "registry.internal:http",
            "-bad.internal",
            "registry.internal/Team",
            "registry.internal//team",
            "",
        ] {
            let err = swarm(bad).resolve().unwrap_err().to_string();
            assert!(err.starts_with("--registry `"), "{bad}: {err}");
            assert!(!err.contains('\n'), "{bad}: {err}");
        }
        let err = ServerArgs {
            registry: Some("127.0.0.1:5000".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--registry needs --runtime swarm: with --runtime docker images never leave this node"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("slipway.toml");
        std::fs::write(&file, "runtime = \"swarm\"\nregistry = \"10.0.0.5:5000\"\n").unwrap();
        let from_file = ServerArgs {
            config: Some(file),
            ..Default::default()
        };
        assert_eq!(
            from_file.resolve().unwrap().registry.as_deref(),
            Some("10.0.0.5:5000")
        );
    }

    #[test]
    fn build_limits_come_from_flag_or_file_and_bad_ones_are_one_line_errors() {
        let config = ServerArgs::default().resolve().unwrap();
        assert_eq!(config.build_timeout, Duration::from_secs(1800));
        assert_eq!(config.build_memory, 2 << 30);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("slipway.toml");
        std::fs::write(&file, "build-timeout = \"10m\"\nbuild-memory = \"4g\"\n").unwrap();
        let from_file = ServerArgs {
            config: Some(file),
            ..Default::default()
        };
        let config = from_file.clone().resolve().unwrap();
        assert_eq!(config.build_timeout, Duration::from_secs(600));
        assert_eq!(config.build_memory, 4 << 30);
        let config = ServerArgs {
            build_timeout: Some("90s".into()),
            build_memory: Some("512M".into()),
            ..from_file
        }
        .resolve()
        .unwrap();
        assert_eq!(config.build_timeout, Duration::from_secs(90));
        assert_eq!(config.build_memory, 512 << 20);
        for (args, expected) in [
            (
                ServerArgs {
                    build_timeout: Some("forever".into()),
                    ..Default::default()
                },
                "--build-timeout `forever` is not a duration from 1s to 24h: use a number with s, m or h, like 30m",
            ),
            (
                ServerArgs {
                    build_memory: Some("lots".into()),
                    ..Default::default()
                },
                "--build-memory `lots` is not a size: use a number with M or G, like 512M",
            ),
            (
                ServerArgs {
                    build_memory: Some("16M".into()),
                    ..Default::default()
                },
                "--build-memory `16M` is out of range: use 64M to 64G",
            ),
        ] {
            assert_eq!(args.resolve().unwrap_err().to_string(), expected);
        }
    }

    #[test]
    fn runtime_is_docker_or_swarm_from_flag_or_file() {
        assert_eq!(
            ServerArgs::default().resolve().unwrap().runtime,
            Runtime::Docker
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("slipway.toml");
        std::fs::write(&file, "runtime = \"swarm\"\n").unwrap();
        let from_file = ServerArgs {
            config: Some(file),
            ..Default::default()
        };
        assert_eq!(from_file.clone().resolve().unwrap().runtime, Runtime::Swarm);
        let flag_wins = ServerArgs {
            runtime: Some("docker".into()),
            ..from_file
        };
        assert_eq!(flag_wins.resolve().unwrap().runtime, Runtime::Docker);
        let error = ServerArgs {
            runtime: Some("kubernetes".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            "--runtime `kubernetes` is not a runtime: use `docker` or `swarm`"
        );
    }

    #[test]
    fn release_timeout_takes_units() {
        for (text, seconds) in [("90s", 90), ("30m", 1800), ("2h", 7200), ("45", 45)] {
            let config = ServerArgs {
                release_timeout: Some(text.into()),
                ..Default::default()
            }
            .resolve()
            .unwrap();
            assert_eq!(
                config.release_timeout,
                Duration::from_secs(seconds),
                "{text}"
            );
        }
        for bad in ["0s", "25h", "soon", "-5m", "5d"] {
            let err = ServerArgs {
                release_timeout: Some(bad.into()),
                ..Default::default()
            }
            .resolve()
            .unwrap_err();
            assert!(
                err.to_string().starts_with("--release-timeout"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn postgres_urls_and_leader_leases_are_taken_within_bounds() {
        let config = ServerArgs {
            database_url: Some("postgres://u:secret@db/x".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(config.database_url, "postgres://u:secret@db/x");
        assert_eq!(config.leader_lease, Duration::from_secs(15));
        for (text, seconds) in [("3s", 3), ("1m", 60), ("10m", 600)] {
            let config = ServerArgs {
                leader_lease: Some(text.into()),
                ..Default::default()
            }
            .resolve()
            .unwrap();
            assert_eq!(config.leader_lease, Duration::from_secs(seconds), "{text}");
        }
        for bad in ["2s", "11m", "soon"] {
            let err = ServerArgs {
                leader_lease: Some(bad.into()),
                ..Default::default()
            }
            .resolve()
            .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("--leader-lease `{bad}` is not a duration from 3s to 10m, like 15s")
            );
        }
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("slipway.toml");
        std::fs::write(
            &file,
            "apps-domain = \"from-file.test\"\nhttp-listen = \"127.0.0.1:8080\"\n",
        )
        .unwrap();
        let config = ServerArgs {
            config: Some(file),
            apps_domain: Some("from-flag.test".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(config.apps_domain, "from-flag.test");
        assert_eq!(config.http_listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.app_url("a1b"), "http://a1b.from-flag.test:8080");
    }

    #[test]
    fn log_lines_come_from_flag_or_file_within_bounds() {
        assert_eq!(ServerArgs::default().resolve().unwrap().log_lines, 1500);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("slipway.toml");
        std::fs::write(&file, "log-lines = 5000\n").unwrap();
        let from_file = ServerArgs {
            config: Some(file),
            ..Default::default()
        };
        assert_eq!(from_file.clone().resolve().unwrap().log_lines, 5000);
        let flag = ServerArgs {
            log_lines: Some(200),
            ..from_file
        };
        assert_eq!(flag.resolve().unwrap().log_lines, 200);
        for bad in [0, 99, 1_000_001] {
            let err = ServerArgs {
                log_lines: Some(bad),
                ..Default::default()
            }
            .resolve()
            .unwrap_err();
            assert!(err.to_string().starts_with("--log-lines"), "{bad}: {err}");
        }
    }

    #[test]
    fn drain_settings_are_checked_at_start() {
        let config = ServerArgs::default().resolve().unwrap();
        assert_eq!(config.drain_buffer_lines, 10_000);
        assert_eq!(config.drain_ca_bundle, None);
        for bad in [9, 1_000_001] {
            let err = ServerArgs {
                drain_buffer_lines: Some(bad),
                ..Default::default()
            }
            .resolve()
            .unwrap_err();
            assert!(
                err.to_string().starts_with("--drain-buffer-lines"),
                "{bad}: {err}"
            );
        }
        let err = ServerArgs {
            drain_ca_bundle: Some("/no/such/ca.pem".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().starts_with("--drain-ca-bundle"), "{err}");
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = ServerArgs {
            apps_domain: Some("bad domain".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().starts_with("--apps-domain"), "{err}");

        let err = ServerArgs {
            database_url: Some("mysql://u:secret@db/x".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("--database-url"));
        assert!(!err.to_string().contains("secret"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "no-such-setting = 1\n").unwrap();
        let err = ServerArgs {
            config: Some(file),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("no-such-setting"), "{err}");
    }
}
