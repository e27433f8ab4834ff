//! What an add-on is: its kind, its names on the engine and its credentials.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use slipway_types::{AppName, labels};

use crate::AddonError;

/// Label naming the add-on a container or volume belongs to.
pub const ADDON_LABEL: &str = "slipway.addon";

/// Label holding the add-on's kind, so an operator can tell the containers apart.
pub const ADDON_KIND_LABEL: &str = "slipway.addon-kind";

/// `slipway.role` of an add-on's server container.
pub const ROLE_ADDON: &str = "addon";

/// `slipway.role` of the short-lived containers that check, dump or restore an add-on.
pub const ROLE_ADDON_JOB: &str = "addon-job";

/// Length of generated passwords: alphanumeric, so they need no escaping in a URL, and about
/// 190 bits of entropy.
const PASSWORD_LEN: usize = 32;

/// Docker resolves a container by name on its network, and a DNS label holds at most 63
/// bytes: a longer container name would give the app a URL whose host never resolves.
const MAX_CONTAINER_NAME: usize = 63;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddonKind {
    Postgres,
    Redis,
}

impl AddonKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Redis => "redis",
        }
    }

    /// The config var the first add-on of this kind sets on its app; later ones get
    /// `<NAME>_URL` (the server decides).
    pub fn default_var(self) -> &'static str {
        match self {
            Self::Postgres => "DATABASE_URL",
            Self::Redis => "REDIS_URL",
        }
    }

    /// The port the server listens on inside the app network.
    pub fn port(self) -> u16 {
        match self {
            Self::Postgres => 5432,
            Self::Redis => 6379,
        }
    }
}

impl FromStr for AddonKind {
    type Err = AddonError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "postgres" => Ok(Self::Postgres),
            "redis" => Ok(Self::Redis),
            other => Err(AddonError::UnknownKind(other.to_owned())),
        }
    }
}

impl fmt::Display for AddonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The server images the provisioner runs. Either Slipway's own (built by
/// `slipway stack:build`) or the official `postgres` and `redis` images: both take the same
/// environment and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddonImages {
    pub postgres: String,
    pub redis: String,
}

impl AddonImages {
    pub fn image(&self, kind: AddonKind) -> &str {
        match kind {
            AddonKind::Postgres => &self.postgres,
            AddonKind::Redis => &self.redis,
        }
    }
}

impl Default for AddonImages {
    fn default() -> Self {
        Self {
            postgres: "slipway/postgres:17".to_owned(),
            redis: "slipway/redis:8".to_owned(),
        }
    }
}

/// Everything needed to (re)create an add-on; the server stores it (the secret part
/// encrypted). Its `Debug` output leaves the password out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddonInstance {
    pub kind: AddonKind,
    pub app: AppName,
    /// The add-on's name within its app, e.g. `postgres-1` or `cache`.
    pub name: String,
    /// `slipway-<app>-addon-<name>`: also the server's DNS name on the app network.
    pub container_name: String,
    /// `slipway-<app>-addon-<name>-data`, the named volume holding the data.
    pub volume: String,
    /// The app's network, `slipway-<app>`.
    pub network: String,
    /// Postgres: the superuser the app connects as. Redis: `default`.
    pub user: String,
    pub password: String,
    /// Postgres: the database the app uses. Redis: `0`.
    pub database: String,
    /// Labels the server puts on everything of the app (app, installation); the provisioner
    /// adds the role, the add-on's name and kind.
    pub labels: BTreeMap<String, String>,
}

impl fmt::Debug for AddonInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddonInstance")
            .field("kind", &self.kind)
            .field("app", &self.app)
            .field("name", &self.name)
            .field("container_name", &self.container_name)
            .field("volume", &self.volume)
            .field("network", &self.network)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("database", &self.database)
            .field("labels", &self.labels)
            .finish()
    }
}

impl AddonInstance {
    /// A new add-on with a random password and names derived from the app and `name`. The
    /// name is checked by [`AddonInstance::check`] (and again by the provisioner).
    pub fn new(
        kind: AddonKind,
        app: AppName,
        name: impl Into<String>,
        network: impl Into<String>,
        labels: BTreeMap<String, String>,
    ) -> Self {
        let name = name.into();
        let container_name = format!("slipway-{app}-addon-{name}");
        let (user, database) = match kind {
            // `app_` plus the app name with `_` for `-` is a plain SQL identifier (no quoting in
            // psql), and never starts with `pg_`, which PostgreSQL reserves for its own roles.
            AddonKind::Postgres => {
                let identifier = format!("app_{}", app.as_str().replace('-', "_"));
                (identifier.clone(), identifier)
            }
            AddonKind::Redis => ("default".to_owned(), "0".to_owned()),
        };
        Self {
            kind,
            volume: format!("{container_name}-data"),
            container_name,
            network: network.into(),
            user,
            password: Alphanumeric.sample_string(&mut rand::rng(), PASSWORD_LEN),
            database,
            labels,
            app,
            name,
        }
    }

    /// Checks `name` is a valid add-on name: 1 to 30 lowercase letters, digits and dashes,
    /// starting with a letter.
    pub fn check_name(name: &str) -> Result<(), AddonError> {
        let bytes = name.as_bytes();
        let valid = (1..=30).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if valid {
            Ok(())
        } else {
            Err(AddonError::InvalidName(name.to_owned()))
        }
    }

    /// Checks the name, and that the container name fits in one DNS label so the URL's host
    /// resolves on the app network.
    pub fn check(&self) -> Result<(), AddonError> {
        Self::check_name(&self.name)?;
        if self.container_name.len() > MAX_CONTAINER_NAME {
            return Err(AddonError::NameTooLong {
                name: self.name.clone(),
                app: self.app.to_string(),
                max: MAX_CONTAINER_NAME - (self.container_name.len() - self.name.len()),
            });
        }
        Ok(())
    }

    /// The URL the app is given: `postgres://user:pass@<container_name>:5432/<db>?sslmode=require`
    /// or `redis://default:pass@<container_name>:6379/0`.
    pub fn url(&self) -> String {
        let port = self.kind.port();
        match self.kind {
            AddonKind::Postgres => format!(
                "postgres://{}:{}@{}:{port}/{}?sslmode=require",
                self.user, self.password, self.container_name, self.database
            ),
            AddonKind::Redis => format!(
                "redis://{}:{}@{}:{port}/{}",
                self.user, self.password, self.container_name, self.database
            ),
        }
    }

    /// `slipway-<app>-addon-<name>-tls`: under Swarm, the volume holding a Postgres server's
    /// certificate, key and `pg_hba.conf`. Files cannot be put into a service's container
    /// before it starts, so they are written into this volume, which the service mounts.
    pub fn tls_volume(&self) -> String {
        format!("{}-tls", self.container_name)
    }

    /// How messages name the add-on: `<app>/<name>`.
    pub(crate) fn display_name(&self) -> String {
        format!("{}/{}", self.app, self.name)
    }

    /// Labels of the server container and its volume.
    pub(crate) fn server_labels(&self) -> BTreeMap<String, String> {
        self.labels_with_role(ROLE_ADDON)
    }

    /// Labels of the short-lived containers that check, dump or restore the add-on; `destroy`
    /// finds leftovers by them.
    pub(crate) fn job_labels(&self) -> BTreeMap<String, String> {
        self.labels_with_role(ROLE_ADDON_JOB)
    }

    fn labels_with_role(&self, role: &str) -> BTreeMap<String, String> {
        let mut all = self.labels.clone();
        all.insert(labels::APP.to_owned(), self.app.to_string());
        all.insert(labels::ROLE.to_owned(), role.to_owned());
        all.insert(ADDON_LABEL.to_owned(), self.name.clone());
        all.insert(ADDON_KIND_LABEL.to_owned(), self.kind.as_str().to_owned());
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppName {
        "blog-api".parse().expect("a valid app name")
    }

    /// PostgreSQL refuses role names starting with `pg_`, so an app called `pg-…` must not
    /// become one.
    #[test]
    fn postgres_roles_of_pg_apps_are_not_reserved_names() {
        let app: AppName = "pg-shop".parse().expect("a valid app name");
        let pg = AddonInstance::new(
            AddonKind::Postgres,
            app,
            "postgres-1",
            "slipway-pg-shop",
            BTreeMap::new(),
        );
        assert!(!pg.user.starts_with("pg_"), "{}", pg.user);
        assert!(!pg.database.starts_with("pg_"), "{}", pg.database);
    }

    #[test]
    fn names_and_credentials_derive_from_app_and_name() {
        let labels = BTreeMap::from([("slipway.instance".to_owned(), "test".to_owned())]);
        let pg = AddonInstance::new(
            AddonKind::Postgres,
            app(),
            "postgres-1",
            "slipway-blog-api",
            labels.clone(),
        );
        assert_eq!(pg.container_name, "slipway-blog-api-addon-postgres-1");
        assert_eq!(pg.volume, "slipway-blog-api-addon-postgres-1-data");
        assert_eq!(pg.tls_volume(), "slipway-blog-api-addon-postgres-1-tls");
        assert_eq!(
            (pg.user.as_str(), pg.database.as_str()),
            ("app_blog_api", "app_blog_api")
        );
        assert_eq!(pg.password.len(), 32);
        assert!(pg.password.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(
            pg.url(),
            format!(
                "postgres://app_blog_api:{}@slipway-blog-api-addon-postgres-1:5432/app_blog_api?sslmode=require",
                pg.password
            )
        );

        let redis =
            AddonInstance::new(AddonKind::Redis, app(), "cache", "slipway-blog-api", labels);
        assert_eq!(
            redis.url(),
            format!(
                "redis://default:{}@slipway-blog-api-addon-cache:6379/0",
                redis.password
            )
        );
        assert_ne!(pg.password, redis.password);
        let server = redis.server_labels();
        assert_eq!(server["slipway.role"], "addon");
        assert_eq!(server["slipway.addon"], "cache");
        assert_eq!(server["slipway.addon-kind"], "redis");
        assert_eq!(server["slipway.app"], "blog-api");
        assert_eq!(server["slipway.instance"], "test");
    }

    #[test]
    fn debug_output_hides_the_password() {
        let addon = AddonInstance::new(AddonKind::Redis, app(), "cache", "net", BTreeMap::new());
        let debug = format!("{addon:?}");
        assert!(!debug.contains(&addon.password), "{debug}");
        assert!(debug.contains("<redacted>"));
    }

    #[test]
    fn serde_round_trips_with_lowercase_kinds() {
        let addon = AddonInstance::new(AddonKind::Postgres, app(), "db", "net", BTreeMap::new());
        let json = serde_json::to_value(&addon).expect("serializable");
        assert_eq!(json["kind"], "postgres");
        assert_eq!(json["app"], "blog-api");
        let back: AddonInstance = serde_json::from_value(json).expect("deserializable");
        assert_eq!(back, addon);
    }

    #[test]
    fn kinds_parse_and_name_their_config_var() {
        assert_eq!(
            "postgres".parse::<AddonKind>().ok(),
            Some(AddonKind::Postgres)
        );
        assert_eq!("redis".parse::<AddonKind>().ok(), Some(AddonKind::Redis));
        let error = "mysql".parse::<AddonKind>().expect_err("unknown kind");
        assert_eq!(
            error.to_string(),
            "add-on kind `mysql` is unknown: use postgres or redis"
        );
        assert_eq!(AddonKind::Postgres.default_var(), "DATABASE_URL");
        assert_eq!(AddonKind::Redis.default_var(), "REDIS_URL");
        assert_eq!(AddonKind::Redis.to_string(), "redis");
    }

    #[test]
    fn names_are_checked_and_must_fit_a_dns_label() {
        for good in ["a", "postgres-1", "cache", "a23456789012345678901234567890"] {
            assert!(AddonInstance::check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1db",
            "Db",
            "db_1",
            "a/b",
            "a234567890123456789012345678901",
        ] {
            assert!(
                matches!(
                    AddonInstance::check_name(bad),
                    Err(AddonError::InvalidName(_))
                ),
                "{bad}"
            );
        }
        let long_app: AppName = "a23456789012345678901234567890".parse().expect("valid");
        let addon = AddonInstance::new(
            AddonKind::Redis,
            long_app,
            "cache-for-the-sessions",
            "net",
            BTreeMap::new(),
        );
        let error = addon.check().expect_err("too long for a DNS label");
        assert_eq!(
            error.to_string(),
            "add-on name `cache-for-the-sessions` is too long for app \
             `a23456789012345678901234567890`: use at most 18 characters"
        );
    }
}
