//! Dockerfile builds: `docker build` with the repository as its context (less what its
//! `.dockerignore` lists), then one short container that makes the image run the way every
//! Slipway process starts (as user `app`, through `launch_command`), committed as the app's
//! image. The image's first EXPOSEd port is where its web process is served.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use futures_util::StreamExt;
use slipway_engine::{ImageBuild, ImageConfig};
use slipway_types::{ContainerSpec, ProcessType, Procfile, labels};
use tokio::sync::mpsc::Sender;

use crate::build::{
    BuildContainer, BuildError, BuildRequest, BuildResult, Builder, image_labels, launch_command,
    say, type_list,
};
use crate::dockerignore::DockerIgnore;

/// Env var naming the folder `launch_command` starts processes in: the Dockerfile's
/// `WORKDIR`, where its files are, rather than the buildpack apps' `/app`.
pub(crate) const APP_DIR_VAR: &str = "SLIPWAY_APP_DIR";

/// Runs as root in the built image before it is committed. Every process runs as `app`
/// through bash, so the image needs both; a user of the base image may lack `app`.
const FINISH_SCRIPT: &str = r#"
if [ ! -x /bin/bash ]; then
  echo "the image has no /bin/bash: Slipway starts every process with it, build FROM slipway/stack:trixie or an image with bash"
  exit 3
fi
if ! grep -q '^app:' /etc/passwd; then
  echo 'app:x:1000:1000:Slipway app:/app:/bin/bash' >> /etc/passwd
  grep -q '^app:' /etc/group || echo 'app:x:1000:' >> /etc/group
fi
mkdir -p /app && chown 1000:1000 /app
"#;

/// The files of the source that shape a Dockerfile build.
pub(crate) struct DockerContext<'a> {
    pub dockerfile: &'a str,
    pub dockerignore: Option<&'a str>,
}

/// A `FROM` of a Dockerfile that names an image (not a build stage, not `scratch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// 1-based line of the `FROM` instruction.
    pub line: usize,
    pub image: String,
}

/// The images a Dockerfile builds `FROM`, with `ARG` defaults declared before the first
/// `FROM` substituted. Images still holding a `$` after that are left out: only Docker can
/// tell what they become.
pub fn base_images(dockerfile: &str) -> Vec<BaseImage> {
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: BTreeSet<String> = BTreeSet::new();
    let mut seen_from = false;
    let mut images = Vec::new();
    for (line, instruction) in instructions(dockerfile) {
        let mut words = instruction.split_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        match keyword.to_ascii_uppercase().as_str() {
            "ARG" if !seen_from => {
                for arg in words {
                    let (name, default) = arg.split_once('=').unwrap_or((arg, ""));
                    args.insert(name.to_owned(), default.trim_matches('"').to_owned());
                }
            }
            "FROM" => {
                seen_from = true;
                let rest: Vec<&str> = words.filter(|word| !word.starts_with("--")).collect();
                let Some(first) = rest.first() else {
                    continue;
                };
                let image = substitute(first, &args);
                // Only stages named by an earlier FROM can be built from.
                let is_stage = stages.contains(&image.to_ascii_lowercase());
                if let [_, as_keyword, stage] = rest[..]
                    && as_keyword.eq_ignore_ascii_case("as")
                {
                    stages.insert(stage.to_ascii_lowercase());
                }
                if image.eq_ignore_ascii_case("scratch") || image.contains('$') || is_stage {
                    continue;
                }
                images.push(BaseImage { line, image });
            }
            _ => {}
        }
    }
    images
}

/// The Dockerfile's instructions with their first line number: comments dropped and
/// backslash continuations joined.
fn instructions(dockerfile: &str) -> Vec<(usize, String)> {
    let mut instructions = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, raw) in dockerfile.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_none()) {
            continue;
        }
        let (text, continued) = match line.strip_suffix('\\') {
            Some(text) => (text, true),
            None => (line, false),
        };
        let entry = current.get_or_insert_with(|| (index + 1, String::new()));
        entry.1.push_str(text);
        entry.1.push(' ');
        if !continued {
            instructions.extend(current.take());
        }
    }
    instructions.extend(current);
    instructions
}

/// The image's EXPOSEd TCP ports (`8080/tcp` as Docker lists them), those its Dockerfile
/// names first in the order it names them, then any inherited from the base image by number.
/// The first one is where the web process listens.
pub(crate) fn tcp_ports(dockerfile: &str, exposed: &[String]) -> Vec<u16> {
    let tcp = |spec: &str| -> Option<u16> {
        let (port, protocol) = spec.split_once('/').unwrap_or((spec, "tcp"));
        if !protocol.eq_ignore_ascii_case("tcp") {
            return None;
        }
        // A range (`8000-8010`) exposes each port; its first stands for it.
        port.split('-')
            .next()?
            .parse()
            .ok()
            .filter(|port| *port != 0)
    };
    let mut image: Vec<u16> = exposed.iter().filter_map(|spec| tcp(spec)).collect();
    image.sort_unstable();
    let mut ports: Vec<u16> = Vec::new();
    for (_, instruction) in instructions(dockerfile) {
        let mut words = instruction.split_whitespace();
        if !words
            .next()
            .is_some_and(|word| word.eq_ignore_ascii_case("EXPOSE"))
        {
            continue;
        }
        for port in words.filter_map(tcp) {
            if image.contains(&port) && !ports.contains(&port) {
                ports.push(port);
            }
        }
    }
    for port in image {
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// Replaces `$NAME` and `${NAME}` with the ARG defaults known; unknown ones stay.
fn substitute(word: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = word.to_owned();
    for (name, value) in args {
        if value.is_empty() {
            continue;
        }
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    out
}

/// An argv as one bash command line, each word quoted when it needs it.
pub(crate) fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|word| {
            let plain = !word.is_empty()
                && word.chars().all(|c| {
                    c.is_ascii_alphanumeric()
                        || matches!(c, '-' | '_' | '.' | '/' | ':' | '=' | ',' | '@' | '+')
                });
            if plain {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Builder {
    /// Builds the app with its Dockerfile: every `FROM` must be a local image (there is no
    /// registry), the Procfile wins over the image's own command, and the result runs like a
    /// buildpack image.
    pub(crate) async fn build_dockerfile(
        &self,
        request: &BuildRequest,
        files: DockerContext<'_>,
        procfile: Option<Procfile>,
        output: &Sender<String>,
    ) -> Result<BuildResult, BuildError> {
        let engine = &*self.engine;
        let dockerfile = files.dockerfile;
        say(output, "-----> Dockerfile app detected".to_owned()).await;
        for base in base_images(dockerfile) {
            if !engine.image_exists(&base.image).await? {
                return Err(BuildError::BaseImageMissing {
                    line: base.line,
                    image: base.image,
                });
            }
        }
        let context = match files.dockerignore {
            Some(rules) => {
                let rules = DockerIgnore::parse(rules).map_err(BuildError::DockerIgnore)?;
                let source = request.source_tar.clone();
                let (context, left_out) =
                    tokio::task::spawn_blocking(move || rules.filter(&source))
                        .await
                        .map_err(|join| BuildError::Source(std::io::Error::other(join)))?
                        .map_err(BuildError::Source)?;
                say(
                    output,
                    format!("-----> Leaving out {left_out} files .dockerignore lists"),
                )
                .await;
                Bytes::from(context)
            }
            None => request.source_tar.clone(),
        };
        let intermediate = format!("{}-dockerfile", request.image);
        let mut build_labels = request.labels.clone();
        build_labels.insert(labels::APP.to_owned(), request.app.to_string());
        let build = ImageBuild {
            reference: intermediate.clone(),
            context,
            dockerfile: "Dockerfile".to_owned(),
            build_args: BTreeMap::new(),
            labels: build_labels,
            memory_bytes: Some(self.config.memory_bytes),
            nano_cpus: Some(self.config.nano_cpus),
        };
        let mut stream = engine.build_image(build);
        let mut partial = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => {
                    if !partial.is_empty() {
                        say(output, format!("       {partial}")).await;
                    }
                    return Err(BuildError::DockerfileFailed(error.to_string()));
                }
            };
            partial.push_str(&chunk);
            while let Some(end) = partial.find('\n') {
                let line: String = partial.drain(..=end).collect();
                let line = line.trim_end();
                if !line.is_empty() {
                    say(output, format!("       {line}")).await;
                }
            }
        }
        if !partial.trim().is_empty() {
            say(output, format!("       {}", partial.trim_end())).await;
        }
        let result = self
            .finish_dockerfile_image(request, dockerfile, &intermediate, procfile, output)
            .await;
        if let Err(error) = engine.remove_image(&intermediate).await {
            tracing::warn!(image = %intermediate, %error, "could not untag the Dockerfile build");
        }
        result
    }

    async fn finish_dockerfile_image(
        &self,
        request: &BuildRequest,
        dockerfile: &str,
        intermediate: &str,
        procfile: Option<Procfile>,
        output: &Sender<String>,
    ) -> Result<BuildResult, BuildError> {
        let engine = &*self.engine;
        let details = engine.inspect_image(intermediate).await?.ok_or_else(|| {
            BuildError::DockerfileFailed(format!(
                "image `{intermediate}` is missing after its build"
            ))
        })?;
        let app_dir = details
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".to_owned());

        say(output, "-----> Discovering process types".to_owned()).await;
        let image_command: Vec<String> = details
            .config
            .entrypoint
            .iter()
            .chain(&details.config.cmd)
            .cloned()
            .collect();
        let procfile = match procfile {
            Some(procfile) => {
                say(
                    output,
                    format!("       Procfile declares types -> {}", type_list(&procfile)),
                )
                .await;
                procfile
            }
            None if !image_command.is_empty() => {
                say(
                    output,
                    "       Default types for Dockerfile -> web (its ENTRYPOINT and CMD)"
                        .to_owned(),
                )
                .await;
                Procfile::from_map(BTreeMap::from([(
                    ProcessType::web(),
                    shell_words(&image_command),
                )]))
            }
            None => return Err(BuildError::NoProcesses),
        };
        if procfile.is_empty() {
            return Err(BuildError::NoProcesses);
        }
        let ports = tcp_ports(dockerfile, &details.exposed_ports);
        let port = ports.first().copied();
        if let Some(port) = port
            && procfile.command(&ProcessType::web()).is_some()
        {
            let message = if ports.len() == 1 {
                format!(
                    "       The image EXPOSEs port {port}: the web process gets PORT={port} and is routed there"
                )
            } else {
                let listed: Vec<String> = ports.iter().map(u16::to_string).collect();
                format!(
                    "       The image EXPOSEs ports {}: the web process gets the first, PORT={port}, and only it is routed",
                    listed.join(", ")
                )
            };
            say(output, message).await;
        }

        let mut container_labels = request.labels.clone();
        container_labels.insert(labels::APP.to_owned(), request.app.to_string());
        container_labels.insert(labels::ROLE.to_owned(), "build".to_owned());
        let spec = ContainerSpec {
            name: format!("{}-finish", self.container_name(request)),
            image: intermediate.to_owned(),
            entrypoint: vec!["/bin/sh".to_owned(), "-c".to_owned()],
            cmd: vec![FINISH_SCRIPT.to_owned()],
            labels: container_labels,
            user: Some("root".to_owned()),
            working_dir: Some("/".to_owned()),
            memory_bytes: Some(self.config.memory_bytes),
            ..ContainerSpec::default()
        };
        let id = engine.create_container(&spec).await?;
        let container = BuildContainer::new(&self.engine, &id);
        let finished = async {
            engine.start(&id).await?;
            let mut text = String::new();
            let mut chunks = engine.output(&id, None);
            while let Some(chunk) = chunks.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk?.bytes));
            }
            let code = engine.wait(&id).await?;
            if code != 0 {
                return Err(BuildError::DockerfileFailed(text.trim().to_owned()));
            }
            say(output, format!("-----> Committing {}", request.image)).await;
            let image_config = ImageConfig {
                user: Some("app".to_owned()),
                working_dir: Some(app_dir.clone()),
                env: BTreeMap::from([(APP_DIR_VAR.to_owned(), app_dir.clone())]),
                entrypoint: Vec::new(),
                cmd: procfile
                    .command(&ProcessType::web())
                    .map(launch_command)
                    .unwrap_or_else(|| vec!["/bin/bash".to_owned()]),
                labels: image_labels(&request.labels),
            };
            engine.commit(&id, &request.image, &image_config).await?;
            Ok(())
        }
        .await;
        container.remove().await;
        finished?;
        Ok(BuildResult {
            image: request.image.clone(),
            buildpack: "dockerfile".to_owned(),
            procfile,
            config_defaults: BTreeMap::new(),
            addons: Vec::new(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(dockerfile: &str) -> Vec<(usize, String)> {
        base_images(dockerfile)
            .into_iter()
            .map(|base| (base.line, base.image))
            .collect()
    }

    #[test]
    fn from_lines_name_the_base_images() {
        assert_eq!(
            images("# syntax\nFROM slipway/stack:trixie\nRUN true\n"),
            [(2, "slipway/stack:trixie".to_owned())]
        );
        assert_eq!(
            images(
                "from --platform=linux/amd64 python:3.13 AS build\nRUN x\nFROM scratch\nCOPY --from=build /a /a\n"
            ),
            [(1, "python:3.13".to_owned())]
        );
    }

    #[test]
    fn build_stages_scratch_and_unknown_args_are_not_images() {
        let dockerfile = "ARG BASE=slipway/stack:trixie\nARG TAG\nFROM ${BASE} AS deps\nRUN \\\n  make\nFROM deps AS app\nFROM node:$TAG\nFROM scratch\n";
        assert_eq!(images(dockerfile), [(3, "slipway/stack:trixie".to_owned())]);
    }

    #[test]
    fn an_image_named_like_a_later_stage_is_still_an_image() {
        assert_eq!(
            images("FROM base AS base\nFROM base\n"),
            [(1, "base".to_owned())]
        );
    }

    #[test]
    fn the_dockerfile_order_of_exposed_ports_wins_then_inherited_ones_by_number() {
        let exposed: Vec<String> = ["443/tcp", "53/udp", "8080/tcp", "9000/tcp"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            tcp_ports(
                "FROM base\nEXPOSE 9000 53/udp\nEXPOSE 8080/tcp 9000\n",
                &exposed
            ),
            [9000, 8080, 443]
        );
        assert_eq!(tcp_ports("FROM base\n", &exposed), [443, 8080, 9000]);
        assert_eq!(
            tcp_ports("FROM base\nexpose 8000-8002\n", &["8000/tcp".to_owned()]),
            [8000]
        );
        assert!(tcp_ports("FROM base\nEXPOSE 53/udp\n", &["53/udp".to_owned()]).is_empty());
    }

    #[test]
    fn commands_become_quoted_bash_words() {
        let argv: Vec<String> = ["python3", "-m", "http.server", "8000", "it's", "$HOME", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            shell_words(&argv),
            r#"python3 -m http.server 8000 'it'\''s' '$HOME' ''"#
        );
    }
}
