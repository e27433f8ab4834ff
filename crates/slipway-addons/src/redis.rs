//! Redis add-ons. Settings go on `redis-server`'s command line, which the official image and
//! ours both accept; the provisioner talks RESP to the container's address from the host to
//! check it and read its status.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use slipway_engine::ContainerEngine;
use slipway_types::{ContainerSpec, Mount, MountSource};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::job::{self, Job};
use crate::{AddonError, AddonInstance, AddonStatus};

const DATA_DIR: &str = "/data";

/// Bounds one connection attempt and one reply.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest reply read: `INFO` is a few kilobytes.
const MAX_REPLY: usize = 1024 * 1024;

pub(crate) fn server_spec(addon: &AddonInstance, image: &str, maxmemory: u64) -> ContainerSpec {
    let cmd = [
        "redis-server",
        "--requirepass",
        &addon.password,
        "--maxmemory",
        &maxmemory.to_string(),
        "--maxmemory-policy",
        "allkeys-lru",
        "--appendonly",
        "yes",
        "--dir",
        DATA_DIR,
    ];
    ContainerSpec {
        name: addon.container_name.clone(),
        image: image.to_owned(),
        cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
        labels: addon.server_labels(),
        network: Some(addon.network.clone()),
        mounts: vec![Mount {
            source: MountSource::Volume(addon.volume.clone()),
            target: DATA_DIR.to_owned(),
            read_only: false,
        }],
        ..ContainerSpec::default()
    }
}

/// A job container with the add-on's image on the app network, running `script` with the
/// server's name and port as `$1` and `$2`; `redis-cli` takes the password from the
/// environment, so it stays off the command line.
fn job_spec(
    addon: &AddonInstance,
    image: &str,
    job: &str,
    script: &str,
    args: &[&str],
) -> ContainerSpec {
    let port = addon.kind.port().to_string();
    let mut cmd = vec![addon.container_name.as_str(), port.as_str()];
    cmd.extend_from_slice(args);
    ContainerSpec {
        name: format!(
            "{}-{job}-{:08x}",
            addon.container_name,
            rand::random::<u32>()
        ),
        image: image.to_owned(),
        entrypoint: vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            script.to_owned(),
            job.to_owned(),
        ],
        cmd: cmd.into_iter().map(str::to_owned).collect(),
        env: BTreeMap::from([("REDISCLI_AUTH".to_owned(), addon.password.clone())]),
        labels: addon.job_labels(),
        network: Some(addon.network.clone()),
        ..ContainerSpec::default()
    }
}

/// Under Swarm, where the host cannot reach the server: waits, inside a job on the app
/// network, until `PING` answers `PONG`. A refused password ends it at once; anything else
/// (no DNS name yet, connection refused, `LOADING`) is tried again until `timeout`.
pub(crate) async fn check_ready(
    engine: &Arc<dyn ContainerEngine>,
    addon: &AddonInstance,
    image: &str,
    timeout: Duration,
) -> Result<(), AddonError> {
    let attempts = job::readiness_attempts(timeout);
    let script = "i=0; while :; do out=$(redis-cli -h \"$1\" -p \"$2\" ping 2>&1); \
        case \"$out\" in PONG) exit 0 ;; *WRONGPASS*|*NOAUTH*) echo \"$out\" >&2; exit 2 ;; esac; \
        i=$((i + 1)); if [ \"$i\" -ge \"$3\" ]; then echo \"$out\" >&2; exit 1; fi; sleep 0.25; done";
    let spec = job_spec(addon, image, "check", script, &[&attempts]);
    Job::readiness_check(engine, addon, spec, timeout)
        .run_ok(None, None)
        .await
        .map(drop)
}

/// Under Swarm: `INFO` through `redis-cli` in a job on the app network.
pub(crate) async fn status_job(
    engine: &Arc<dyn ContainerEngine>,
    addon: &AddonInstance,
    image: &str,
    timeout: Duration,
) -> Result<AddonStatus, AddonError> {
    let outcome = Job {
        engine,
        addon,
        name: "status query",
        spec: job_spec(
            addon,
            image,
            "status",
            "redis-cli -h \"$1\" -p \"$2\" info",
            &[],
        ),
        timeout,
    }
    .run_ok(None, None)
    .await?;
    let info = String::from_utf8_lossy(&outcome.stdout);
    if !info.contains("redis_version:") {
        return Err(AddonError::Protocol {
            addon: addon.display_name(),
            message: format!(
                "status query printed `{}`",
                info.trim().lines().next().unwrap_or(outcome.stderr.trim())
            ),
        });
    }
    Ok(parse_info(&info))
}

/// One reply, as RESP 2 sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// Why a probe did not get an answer yet.
#[derive(Debug)]
pub(crate) enum ProbeError {
    /// Not listening yet, or still loading its data: try again.
    NotYet(String),
    /// It answered, but not as a Redis with this password would: trying again will not help.
    Refused(String),
}

/// A RESP connection to the add-on's address.
struct Connection {
    stream: BufReader<TcpStream>,
}

impl Connection {
    async fn open(ip: IpAddr, addon: &AddonInstance) -> Result<Self, ProbeError> {
        let address = SocketAddr::new(ip, addon.kind.port());
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| ProbeError::NotYet(format!("connecting to {address} timed out")))?
            .map_err(|error| ProbeError::NotYet(format!("connecting to {address}: {error}")))?;
        let mut connection = Self {
            stream: BufReader::new(stream),
        };
        match connection
            .command(&["AUTH", &addon.user, &addon.password])
            .await?
        {
            Reply::Simple(ok) if ok == "OK" => Ok(connection),
            Reply::Error(error) => Err(ProbeError::Refused(format!("AUTH: {error}"))),
            other => Err(ProbeError::Refused(format!("AUTH answered {other:?}"))),
        }
    }

    async fn command(&mut self, words: &[&str]) -> Result<Reply, ProbeError> {
        let mut request = format!("*{}\r\n", words.len()).into_bytes();
        for word in words {
            request.extend_from_slice(format!("${}\r\n", word.len()).as_bytes());
            request.extend_from_slice(word.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        let io = async {
            self.stream.get_mut().write_all(&request).await?;
            read_reply(&mut self.stream, 0).await
        };
        tokio::time::timeout(IO_TIMEOUT, io)
            .await
            .map_err(|_| ProbeError::NotYet(format!("no answer to {} in time", words[0])))?
            .map_err(|error| ProbeError::NotYet(format!("{}: {error}", words[0])))
    }
}

/// Reads one reply; nested arrays are bounded in depth.
async fn read_reply(stream: &mut BufReader<TcpStream>, depth: usize) -> std::io::Result<Reply> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut line = Vec::new();
    let read = (&mut *stream)
        .take(MAX_REPLY as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let text = String::from_utf8_lossy(&line)
        .trim_end_matches(['\r', '\n'])
        .to_owned();
    let (kind, rest) = text.split_at_checked(1).unwrap_or(("", ""));
    let length = || -> std::io::Result<Option<usize>> {
        let n: i64 = rest
            .parse()
            .map_err(|_| invalid(format!("bad length `{rest}`")))?;
        match usize::try_from(n) {
            Ok(n) if n <= MAX_REPLY => Ok(Some(n)),
            Ok(_) => Err(invalid(format!("reply of {n} bytes is too long"))),
            Err(_) => Ok(None),
        }
    };
    match kind {
        "+" => Ok(Reply::Simple(rest.to_owned())),
        "-" => Ok(Reply::Error(rest.to_owned())),
        ":" => rest
            .parse()
            .map(Reply::Integer)
            .map_err(|_| invalid(format!("bad integer `{rest}`"))),
        "$" => match length()? {
            None => Ok(Reply::Bulk(None)),
            Some(n) => {
                let mut data = vec![0; n + 2];
                stream.read_exact(&mut data).await?;
                data.truncate(n);
                Ok(Reply::Bulk(Some(data)))
            }
        },
        "*" if depth < 4 => match length()? {
            None => Ok(Reply::Array(None)),
            Some(n) => {
                let mut items = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    items.push(Box::pin(read_reply(stream, depth + 1)).await?);
                }
                Ok(Reply::Array(Some(items)))
            }
        },
        _ => Err(invalid(format!("unexpected reply `{text}`"))),
    }
}

/// Authenticates and pings: `NotYet` while the server is starting or loading its AOF.
pub(crate) async fn probe(ip: IpAddr, addon: &AddonInstance) -> Result<(), ProbeError> {
    let mut connection = Connection::open(ip, addon).await?;
    match connection.command(&["PING"]).await? {
        Reply::Simple(pong) if pong == "PONG" => Ok(()),
        Reply::Error(error) if error.starts_with("LOADING") => Err(ProbeError::NotYet(error)),
        other => Err(ProbeError::Refused(format!("PING answered {other:?}"))),
    }
}

pub(crate) async fn status(ip: IpAddr, addon: &AddonInstance) -> Result<AddonStatus, AddonError> {
    let protocol = |message: String| AddonError::Protocol {
        addon: addon.display_name(),
        message,
    };
    let mut connection = Connection::open(ip, addon)
        .await
        .map_err(|error| protocol(error.to_string()))?;
    let reply = connection
        .command(&["INFO"])
        .await
        .map_err(|error| protocol(error.to_string()))?;
    let Reply::Bulk(Some(info)) = reply else {
        return Err(protocol(format!("INFO answered {reply:?}")));
    };
    Ok(parse_info(&String::from_utf8_lossy(&info)))
}

/// Reads version, AOF size and clients from `INFO`; this connection is not counted.
fn parse_info(info: &str) -> AddonStatus {
    let fields: BTreeMap<&str, &str> = info
        .lines()
        .filter_map(|line| line.trim_end().split_once(':'))
        .collect();
    AddonStatus {
        running: true,
        version: fields.get("redis_version").map(|v| (*v).to_owned()),
        size_bytes: fields.get("aof_current_size").and_then(|v| v.parse().ok()),
        connections: fields
            .get("connected_clients")
            .and_then(|v| v.parse::<u32>().ok())
            .map(|n| n.saturating_sub(1)),
    }
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotYet(reason) | Self::Refused(reason) => f.write_str(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AddonKind;

    #[test]
    fn server_gets_password_memory_policy_and_aof_as_arguments() {
        let addon = AddonInstance::new(
            AddonKind::Redis,
            "blog".parse().expect("valid app"),
            "cache",
            "slipway-blog",
            BTreeMap::new(),
        );
        let spec = server_spec(&addon, "redis:8", 64 * 1024 * 1024);
        assert_eq!(
            spec.cmd,
            [
                "redis-server",
                "--requirepass",
                addon.password.as_str(),
                "--maxmemory",
                "67108864",
                "--maxmemory-policy",
                "allkeys-lru",
                "--appendonly",
                "yes",
                "--dir",
                "/data",
            ]
        );
        assert!(spec.env.is_empty());
        assert_eq!(spec.mounts[0].target, "/data");
        assert_eq!(
            spec.mounts[0].source,
            MountSource::Volume("slipway-blog-addon-cache-data".to_owned())
        );
    }

    #[test]
    fn info_gives_version_aof_size_and_other_clients() {
        let info = "# Server\r\nredis_version:8.0.2\r\nredis_mode:standalone\r\n\r\n\
            # Clients\r\nconnected_clients:3\r\n# Persistence\r\naof_enabled:1\r\n\
            aof_current_size:1234\r\n";
        assert_eq!(
            parse_info(info),
            AddonStatus {
                running: true,
                version: Some("8.0.2".to_owned()),
                size_bytes: Some(1234),
                connections: Some(2),
            }
        );
    }

    #[tokio::test]
    async fn replies_of_every_type_are_read() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            socket
                .write_all(
                    b"+OK\r\n-ERR no\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*2\r\n:1\r\n$1\r\nx\r\n",
                )
                .await
                .expect("write");
            socket
        });
        let stream = TcpStream::connect(address).await.expect("connect");
        let mut reader = BufReader::new(stream);
        let mut replies = Vec::new();
        for _ in 0..6 {
            replies.push(read_reply(&mut reader, 0).await.expect("reply"));
        }
        assert_eq!(
            replies,
            [
                Reply::Simple("OK".to_owned()),
                Reply::Error("ERR no".to_owned()),
                Reply::Integer(42),
                Reply::Bulk(Some(b"hello".to_vec())),
                Reply::Bulk(None),
                Reply::Array(Some(vec![
                    Reply::Integer(1),
                    Reply::Bulk(Some(b"x".to_vec()))
                ])),
            ]
        );
        drop(server.await);
    }
}
