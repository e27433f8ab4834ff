use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use slipway_engine::{ContainerEngine, ImageConfig};
use slipway_types::{ContainerSpec, Mount, MountSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{self, Scratch};

#[tokio::test]
async fn ensure_network_is_idempotent_and_containers_get_an_address_on_it() {
    let scratch = Scratch::new("network").await;
    let image = scratch.busybox_image(&ImageConfig::default()).await;
    let network = scratch.name("net");
    scratch.track_network(&network);
    let labels = BTreeMap::from([("slipway.app".to_owned(), "network".to_owned())]);
    scratch
        .engine
        .ensure_network(&network, &labels)
        .await
        .expect("creates");
    scratch
        .engine
        .ensure_network(&network, &labels)
        .await
        .expect("ensuring again is fine");

    let spec = ContainerSpec {
        network: Some(network.clone()),
        ..support::command(scratch.name("c"), &image, &["sleep", "1000"])
    };
    let id = scratch.run(&spec).await;
    let state = scratch.engine.inspect(&id).await.expect("inspects");
    assert!(state.running);
    assert_eq!(
        state.addresses.keys().collect::<Vec<_>>(),
        [&network],
        "attached to its network only"
    );

    scratch.engine.remove_container(&id).await.expect("removes");
    scratch
        .engine
        .remove_network(&network)
        .await
        .expect("removes the network");
    scratch
        .engine
        .remove_network(&network)
        .await
        .expect("removing a missing network is fine");
}

#[tokio::test]
async fn a_container_serves_tcp_at_its_network_address() {
    let scratch = Scratch::new("tcp").await;
    let image = scratch.busybox_image(&ImageConfig::default()).await;
    let network = scratch.name("net");
    scratch.track_network(&network);
    scratch
        .engine
        .ensure_network(&network, &BTreeMap::new())
        .await
        .expect("creates the network");
    let spec = ContainerSpec {
        network: Some(network.clone()),
        ..support::command(
            scratch.name("httpd"),
            &image,
            &["httpd", "-f", "-p", "5000", "-h", "/www"],
        )
    };
    let id = scratch.create(&spec).await;
    let site = support::tar_of(&[("www/index.html", "served by busybox\n")], 0);
    scratch
        .engine
        .upload(&id, "/", site)
        .await
        .expect("uploads the site");
    scratch.engine.start(&id).await.expect("starts");

    let state = scratch.engine.inspect(&id).await.expect("inspects");
    let address = SocketAddr::new(state.addresses[&network], 5000);
    let response = get_index(address).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("served by busybox\n"), "{response}");
}

/// Fetches `/index.html`, retrying the connection while the server starts.
async fn get_index(address: SocketAddr) -> String {
    const ATTEMPTS: u32 = 50;
    const PAUSE: Duration = Duration::from_millis(200);
    for _ in 0..ATTEMPTS {
        let connect = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(address));
        let Ok(Ok(mut stream)) = connect.await else {
            tokio::time::sleep(PAUSE).await;
            continue;
        };
        stream
            .write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
            .await
            .expect("sends the request");
        let mut response = String::new();
        tokio::time::timeout(
            Duration::from_secs(10),
            stream.read_to_string(&mut response),
        )
        .await
        .expect("the response ends within 10 s")
        .expect("reads the response");
        return response;
    }
    panic!("nothing accepted connections at {address} after {ATTEMPTS} attempts");
}

#[tokio::test]
async fn volumes_persist_across_containers_and_binds_are_read_only_on_request() {
    let scratch = Scratch::new("mounts").await;
    let image = scratch.busybox_image(&ImageConfig::default()).await;
    let volume = scratch.name("vol");
    scratch.track_volume(&volume);
    let labels = BTreeMap::from([("slipway.app".to_owned(), "mounts".to_owned())]);
    scratch
        .engine
        .ensure_volume(&volume, &labels)
        .await
        .expect("creates");
    scratch
        .engine
        .ensure_volume(&volume, &labels)
        .await
        .expect("ensuring again is fine");
    std::fs::write(scratch.dir().join("bound.txt"), "from the host\n").expect("writes");

    let writer = ContainerSpec {
        mounts: vec![Mount {
            source: MountSource::Volume(volume.clone()),
            target: "/vol".to_owned(),
            read_only: false,
        }],
        ..support::shell(scratch.name("writer"), &image, "echo kept > /vol/file")
    };
    let id = scratch.run(&writer).await;
    assert_eq!(support::wait(&scratch.engine, &id).await, 0);

    let reader = ContainerSpec {
        mounts: vec![
            Mount {
                source: MountSource::Volume(volume.clone()),
                target: "/vol".to_owned(),
                read_only: true,
            },
            Mount {
                source: MountSource::Bind(scratch.dir().to_owned()),
                target: "/host".to_owned(),
                read_only: true,
            },
        ],
        ..support::shell(
            scratch.name("reader"),
            &image,
            "cat /vol/file /host/bound.txt; touch /host/new 2>/dev/null || echo read-only",
        )
    };
    let reader_id = scratch.run(&reader).await;
    let (stdout, stderr) = support::output(&scratch.engine, &reader_id).await;
    assert_eq!(
        stdout, "kept\nfrom the host\nread-only\n",
        "stderr: {stderr}"
    );

    for container in [&id, &reader_id] {
        scratch
            .engine
            .remove_container(container)
            .await
            .expect("removes");
    }
    scratch
        .engine
        .remove_volume(&volume)
        .await
        .expect("removes the volume");
    scratch
        .engine
        .remove_volume(&volume)
        .await
        .expect("removing a missing volume is fine");
}
