//! `slipway server --runtime swarm --registry 127.0.0.1:5000`: a release's image is pushed
//! to the registry `deploy/test.sh` starts (Debian's docker-registry, anonymous, plain HTTP)
//! and its services name it there, pinned by digest, so any node of the swarm can pull it.

use std::time::Duration;

use crate::support::{AppCleanup, Env, fixture_repo, unique_app};
use crate::swarm::{self, docker};

const REGISTRY: &str = "127.0.0.1:5000";

fn registry_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

/// Removes the registry-named images the leader tagged, pass or fail.
struct RegistryImagesCleanup(String);

impl Drop for RegistryImagesCleanup {
    fn drop(&mut self) {
        let filter = format!("reference={REGISTRY}/slipway/{}", self.0);
        let out = docker(&["images", "-q", "--filter", &filter]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            docker(&["rmi", "-f", id]);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn swarm_services_pull_the_release_image_from_the_registry_by_digest() {
    let _swarm = swarm::ONE_AT_A_TIME.lock().await;
    swarm::require_swarm();
    let client = registry_client();
    let answer = client
        .get(format!("http://{REGISTRY}/v2/"))
        .send()
        .await
        .map(|response| response.status().as_u16());
    assert!(
        matches!(answer, Ok(200)),
        "no registry answers at {REGISTRY} ({answer:?}): deploy/test.sh starts one"
    );
    let env = Env::new();
    let app = unique_app("sreg");
    // Dropped in reverse: the server stops first, then services, images and network go.
    let _cleanup = AppCleanup(app.clone());
    let _images = RegistryImagesCleanup(app.clone());
    let _services = swarm::ServicesCleanup(app.clone());
    let _server = env.start_server_with(&["--runtime", "swarm", "--registry", REGISTRY]);
    env.login();
    env.slipway_ok(&env.home(), &["apps:create", &app]);
    let repo = env.root.path().join(format!("repo-{app}"));
    fixture_repo(&env, "static-server", &repo);
    env.slipway_ok(&repo, &["git:remote", "-a", &app]);

    env.push_ok(&repo);
    let (status, body) = env.get_app(&app).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("index.txt"), "the app's listing: {body}");

    let web = format!("slipway-{app}-web");
    let inspected = docker(&[
        "service",
        "inspect",
        &web,
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
    ]);
    let image = String::from_utf8_lossy(&inspected.stdout).trim().to_owned();
    let (name, digest) = image
        .split_once('@')
        .unwrap_or_else(|| panic!("the service's image `{image}` is pinned by digest"));
    assert_eq!(name, format!("{REGISTRY}/slipway/{app}:1.0.0"));
    assert!(digest.starts_with("sha256:"), "{image}");

    // The registry has that very manifest under the release's tag.
    let manifest = client
        .head(format!(
            "http://{REGISTRY}/v2/slipway/{app}/manifests/1.0.0"
        ))
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .expect("asks the registry for the manifest");
    assert_eq!(manifest.status().as_u16(), 200);
    assert_eq!(
        manifest
            .headers()
            .get("docker-content-digest")
            .and_then(|value| value.to_str().ok()),
        Some(digest)
    );

    // Removing it from the registry leaves only what this run added there.
    let removed = client
        .delete(format!(
            "http://{REGISTRY}/v2/slipway/{app}/manifests/{digest}"
        ))
        .send()
        .await
        .expect("deletes the manifest");
    let status = removed.status().as_u16();
    assert_eq!(status, 202, "{}", removed.text().await.unwrap_or_default());
}
