//! The add-on server images, built like the stack image (debootstrap, apt in the chroot,
//! `docker import`) so an installation without a registry can run Postgres and Redis add-ons.
//! Their entrypoints take the same environment and arguments as the official `postgres` and
//! `redis` images, so the provisioner drives either.

use std::collections::BTreeMap;
use std::fmt;

use slipway_engine::{ContainerEngine, ImageConfig};
use tokio::sync::mpsc::Sender;

use crate::stack::{PATH, Recipe, StackError, StackOptions, Step, build_image};

/// The PostgreSQL major version Debian trixie ships (`postgresql-17`).
const POSTGRES_MAJOR: &str = "17";

/// The uid and gid of the server user in both images: the official images use 999 too, so a
/// data volume moves between them without a chown.
const SERVER_UID: u32 = 999;

const POSTGRES_ENTRYPOINT: &str = include_str!("postgres-entrypoint.sh");
const REDIS_ENTRYPOINT: &str = include_str!("redis-entrypoint.sh");
const ENTRYPOINT_PATH: &str = "/usr/local/bin/docker-entrypoint.sh";

/// Which add-on server image to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddonImage {
    Postgres,
    Redis,
}

impl AddonImage {
    /// The reference `slipway stack:build` gives the image unless told otherwise.
    pub fn default_reference(self) -> &'static str {
        match self {
            Self::Postgres => "slipway/postgres:17",
            Self::Redis => "slipway/redis:8",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Redis => "redis",
        }
    }

    fn recipe(self, suite: &str) -> Recipe {
        let labels = BTreeMap::from([
            ("slipway.stack".to_owned(), suite.to_owned()),
            ("slipway.addon-image".to_owned(), self.as_str().to_owned()),
        ]);
        match self {
            Self::Postgres => Recipe {
                name: "postgres",
                packages: &["postgresql-17", "openssl", "ca-certificates"],
                before: Some(Step {
                    name: "creating user postgres",
                    message: "Creating user postgres (uid 999)",
                    script: "groupadd --system --gid 999 postgres \
                        && useradd --system --uid 999 --gid 999 --home-dir /var/lib/postgresql \
                           --no-create-home --shell /bin/bash postgres",
                }),
                files: &[(
                    "usr/local/bin/docker-entrypoint.sh",
                    POSTGRES_ENTRYPOINT,
                    0o755,
                )],
                // The package's postinst creates a `main` cluster; the entrypoint runs initdb
                // on the add-on's own volume instead.
                after: Step {
                    name: "preparing the postgres data directory",
                    message: "Preparing /var/lib/postgresql/data",
                    script: "rm -rf /etc/postgresql/17/main /var/lib/postgresql/17 \
                        && install -d -o postgres -g postgres -m 0755 /var/lib/postgresql \
                        && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data \
                        && install -d -o postgres -g postgres -m 2775 /run/postgresql \
                        && apt-get clean",
                },
                config: ImageConfig {
                    user: Some(SERVER_UID.to_string()),
                    working_dir: Some("/var/lib/postgresql".to_owned()),
                    env: BTreeMap::from([
                        (
                            "PATH".to_owned(),
                            format!("/usr/lib/postgresql/{POSTGRES_MAJOR}/bin:{PATH}"),
                        ),
                        ("LANG".to_owned(), "C.UTF-8".to_owned()),
                        ("PGDATA".to_owned(), "/var/lib/postgresql/data".to_owned()),
                    ]),
                    entrypoint: vec![ENTRYPOINT_PATH.to_owned()],
                    cmd: vec!["postgres".to_owned()],
                    labels,
                },
            },
            Self::Redis => Recipe {
                name: "redis",
                packages: &["redis-server", "openssl", "ca-certificates"],
                before: Some(Step {
                    name: "creating user redis",
                    message: "Creating user redis (uid 999)",
                    script: "groupadd --system --gid 999 redis \
                        && useradd --system --uid 999 --gid 999 --home-dir /var/lib/redis \
                           --no-create-home --shell /usr/sbin/nologin redis",
                }),
                files: &[(
                    "usr/local/bin/docker-entrypoint.sh",
                    REDIS_ENTRYPOINT,
                    0o755,
                )],
                after: Step {
                    name: "preparing the redis data directory",
                    message: "Preparing /data",
                    script: "install -d -o redis -g redis -m 0750 /data && apt-get clean",
                },
                config: ImageConfig {
                    user: Some(SERVER_UID.to_string()),
                    working_dir: Some("/data".to_owned()),
                    env: BTreeMap::from([
                        ("PATH".to_owned(), PATH.to_owned()),
                        ("LANG".to_owned(), "C.UTF-8".to_owned()),
                    ]),
                    entrypoint: vec![ENTRYPOINT_PATH.to_owned()],
                    cmd: vec!["redis-server".to_owned()],
                    labels,
                },
            },
        }
    }
}

impl fmt::Display for AddonImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Debootstraps `options.suite`, installs the add-on server with its entrypoint and imports
/// it as `options.reference`, streaming progress lines to `output`. Needs root, like
/// [`crate::build_stack`].
pub async fn build_addon_image(
    engine: &dyn ContainerEngine,
    image: AddonImage,
    options: &StackOptions,
    output: &Sender<String>,
) -> Result<(), StackError> {
    build_image(engine, options, &image.recipe(&options.suite), output).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_run_as_the_server_user_through_their_entrypoint() {
        for image in [AddonImage::Postgres, AddonImage::Redis] {
            let recipe = image.recipe("trixie");
            assert_eq!(recipe.config.user.as_deref(), Some("999"), "{image}");
            assert_eq!(recipe.config.entrypoint, [ENTRYPOINT_PATH], "{image}");
            assert!(
                recipe
                    .files
                    .iter()
                    .any(|(path, _, mode)| format!("/{path}") == ENTRYPOINT_PATH && *mode == 0o755),
                "{image}"
            );
            let before = recipe.before.expect("a user with a fixed id");
            assert!(before.script.contains("--uid 999"), "{image}");
        }
        let postgres = AddonImage::Postgres.recipe("trixie");
        assert_eq!(postgres.config.cmd, ["postgres"]);
        assert!(
            postgres.config.env["PATH"].starts_with("/usr/lib/postgresql/17/bin:"),
            "initdb and postgres are found without Debian's wrappers"
        );
        assert_eq!(
            AddonImage::Redis.recipe("trixie").config.cmd,
            ["redis-server"]
        );
    }
}
