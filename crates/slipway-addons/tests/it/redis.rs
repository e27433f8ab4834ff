//! A Redis add-on: AUTH from the host, its settings, AOF across restarts and a recreated
//! container.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use slipway_addons::{AddonInstance, AddonKind};
use slipway_engine::{ContainerEngine, EngineError};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::{Fixture, volume_exists};

const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A minimal RESP client, independent of the crate's own.
struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    async fn connect(ip: IpAddr) -> Self {
        let stream =
            tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(SocketAddr::new(ip, 6379)))
                .await
                .expect("connect in time")
                .expect("connect");
        Self {
            stream: BufReader::new(stream),
        }
    }

    async fn authenticated(addon: &AddonInstance, ip: IpAddr) -> Self {
        let mut client = Self::connect(ip).await;
        assert_eq!(
            client.call(&["AUTH", "default", &addon.password]).await,
            "+OK"
        );
        client
    }

    /// Sends a command and returns the reply: `+…`, `-…`, `:…`, the bulk string's contents,
    /// or the elements of an array of bulk strings joined with spaces.
    async fn call(&mut self, words: &[&str]) -> String {
        let mut request = format!("*{}\r\n", words.len());
        for word in words {
            request.push_str(&format!("${}\r\n{word}\r\n", word.len()));
        }
        tokio::time::timeout(IO_TIMEOUT, async {
            self.stream
                .get_mut()
                .write_all(request.as_bytes())
                .await
                .expect("write");
            self.reply().await
        })
        .await
        .expect("a reply in time")
    }

    async fn reply(&mut self) -> String {
        let line = self.line().await;
        if let Some(length) = line.strip_prefix('$') {
            let length: i64 = length.parse().expect("bulk length");
            if length < 0 {
                return "(nil)".to_owned();
            }
            let mut data = vec![0; usize::try_from(length).expect("length") + 2];
            self.stream.read_exact(&mut data).await.expect("bulk");
            data.truncate(data.len() - 2);
            return String::from_utf8(data).expect("utf-8");
        }
        if let Some(count) = line.strip_prefix('*') {
            let count: usize = count.parse().expect("array length");
            let mut items = Vec::new();
            for _ in 0..count {
                items.push(Box::pin(self.reply()).await);
            }
            return items.join(" ");
        }
        line
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        self.stream.read_line(&mut line).await.expect("read");
        line.trim_end().to_owned()
    }
}

#[tokio::test]
async fn redis_requires_its_password_and_keeps_data_across_restarts() {
    Fixture::run(|fx| async move {
        let app = fx.app("redis");
        let addon = fx.addon(AddonKind::Redis, &app, "cache");
        let started = Instant::now();
        fx.provisioner.provision(&addon).await.expect("provision");
        eprintln!("provisioned redis in {:?}", started.elapsed());

        let ip = fx.address(&addon).await;
        let mut anonymous = Client::connect(ip).await;
        assert!(
            anonymous
                .call(&["GET", "greeting"])
                .await
                .starts_with("-NOAUTH")
        );
        let wrong = anonymous
            .call(&["AUTH", "default", "not-the-password"])
            .await;
        assert!(wrong.starts_with("-WRONGPASS"), "{wrong}");
        drop(anonymous);

        let mut client = Client::authenticated(&addon, ip).await;
        assert_eq!(client.call(&["SET", "greeting", "hello"]).await, "+OK");
        assert_eq!(client.call(&["GET", "greeting"]).await, "hello");
        assert_eq!(
            client.call(&["CONFIG", "GET", "maxmemory-policy"]).await,
            "maxmemory-policy allkeys-lru"
        );
        assert_eq!(
            client.call(&["CONFIG", "GET", "appendonly"]).await,
            "appendonly yes"
        );
        assert_eq!(
            client.call(&["CONFIG", "GET", "maxmemory"]).await,
            "maxmemory 268435456"
        );
        drop(client);

        let status = fx.provisioner.status(&addon).await.expect("status");
        assert!(status.running);
        assert!(status.version.is_some());
        assert!(status.size_bytes.is_some());
        assert_eq!(status.connections, Some(0));

        fx.engine
            .stop(&addon.container_name, Duration::from_secs(30))
            .await
            .expect("stop");
        assert!(!fx.provisioner.status(&addon).await.expect("status").running);
        fx.provisioner
            .ensure_running(&addon)
            .await
            .expect("restart a stopped add-on");
        let mut client = Client::authenticated(&addon, fx.address(&addon).await).await;
        assert_eq!(
            client.call(&["GET", "greeting"]).await,
            "hello",
            "kept by the AOF"
        );
        drop(client);

        fx.engine
            .remove_container(&addon.container_name)
            .await
            .expect("remove the container");
        fx.provisioner
            .ensure_running(&addon)
            .await
            .expect("recreate a removed add-on");
        let mut client = Client::authenticated(&addon, fx.address(&addon).await).await;
        assert_eq!(
            client.call(&["GET", "greeting"]).await,
            "hello",
            "same volume"
        );
        drop(client);

        fx.provisioner.destroy(&addon).await.expect("destroy");
        assert!(matches!(
            fx.engine.inspect(&addon.container_name).await,
            Err(EngineError::NotFound { .. })
        ));
        assert!(!volume_exists(&addon.volume).await);
    })
    .await;
}

#[tokio::test]
async fn a_second_provision_of_the_same_addon_is_refused() {
    Fixture::run(|fx| async move {
        let app = fx.app("redis2");
        let addon = fx.addon(AddonKind::Redis, &app, "cache");
        fx.provisioner.provision(&addon).await.expect("provision");
        let error = fx
            .provisioner
            .provision(&addon)
            .await
            .expect_err("already there");
        assert_eq!(
            error.to_string(),
            format!(
                "add-on `{app}/cache` already has a container `{}`",
                addon.container_name
            )
        );
        let mut client = Client::authenticated(&addon, fx.address(&addon).await).await;
        assert_eq!(
            client.call(&["PING"]).await,
            "+PONG",
            "the first one still serves"
        );
    })
    .await;
}
