use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use slipway_builder::{BuildError, launch_command};
use slipway_engine::ContainerEngine;
use slipway_types::{ContainerSpec, ProcessType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Fixture;

const PORT: u16 = 5000;

fn python_app(requirements: &str) -> Vec<(&'static str, String)> {
    vec![
        ("requirements.txt", requirements.to_owned()),
        ("Procfile", "web: python3 -m http.server $PORT\n".to_owned()),
        ("index.html", "<h1>hello from slipway</h1>\n".to_owned()),
    ]
}

fn files<'a>(app: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    app.iter()
        .map(|(path, text)| (*path, text.as_str()))
        .collect()
}

/// GETs `/` over plain TCP, retrying while the server starts.
async fn get_root(address: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    for _ in 0..150 {
        if let Ok(Ok(mut stream)) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(address),
        )
        .await
        {
            stream
                .write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
                .await
                .expect("sending a request");
            let mut response = String::new();
            if tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
                .await
                .is_ok_and(|read| read.is_ok())
                && !response.is_empty()
            {
                return response;
            }
        }
        assert!(Instant::now() < deadline, "{address} never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{address} never answered");
}

#[tokio::test]
async fn python_app_builds_serves_http_and_reuses_the_cache() {
    Fixture::run("py", |fixture| async move {
        let app = python_app("six==1.17.0\n");

        let started = Instant::now();
        let (result, lines) = fixture.build("1.0.0", &files(&app)).await;
        let cold = started.elapsed();
        let result = result.unwrap();
        eprintln!("cold build: {cold:?}");
        assert_eq!(result.buildpack, "python");
        assert_eq!(
            result.procfile.command(&ProcessType::web()),
            Some("python3 -m http.server $PORT")
        );
        assert!(lines.contains(&"-----> Python app detected".to_owned()));
        assert!(lines.iter().any(|line| line.contains("Successfully installed six")));
        assert_eq!(fixture.build_containers().await, 0);

        // The web process, started the way every process of the image starts.
        fixture
            .engine
            .ensure_network(&fixture.network(), &BTreeMap::new())
            .await
            .unwrap();
        let id = fixture
            .start(ContainerSpec {
                name: format!("{}-web-1", fixture.app),
                image: fixture.image("1.0.0"),
                cmd: launch_command(result.procfile.command(&ProcessType::web()).unwrap()),
                env: BTreeMap::from([("PORT".to_owned(), PORT.to_string())]),
                network: Some(fixture.network()),
                ..ContainerSpec::default()
            })
            .await;
        let state = fixture.engine.inspect(&id).await.unwrap();
        let address = state.addresses[&fixture.network()];
        let response = get_root(SocketAddr::new(address, PORT)).await;
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
        assert!(response.contains("hello from slipway"), "{response}");

        // .profile.d puts the virtualenv first on PATH for every process.
        let (code, output) = fixture
            .run_to_end(ContainerSpec {
                name: format!("{}-run-1", fixture.app),
                image: fixture.image("1.0.0"),
                cmd: launch_command(
                    "python -c 'import os, sys, six; print(sys.prefix, six.__version__, os.getuid(), os.environ[\"HOME\"])'",
                ),
                ..ContainerSpec::default()
            })
            .await;
        assert_eq!(code, 0, "{output}");
        assert_eq!(output, "/app/.venv 1.17.0 1000 /app\n");

        // Config vars and build tooling stay out of the image.
        let (code, output) = fixture
            .run_to_end(ContainerSpec {
                name: format!("{}-run-2", fixture.app),
                image: fixture.image("1.0.0"),
                cmd: launch_command(
                    "sh -c 'find /env /buildpacks /tmp -mindepth 1; env | grep SLIPWAY_ || true'",
                ),
                ..ContainerSpec::default()
            })
            .await;
        assert_eq!(code, 0, "{output}");
        assert_eq!(output, "", "left in the image");

        let started = Instant::now();
        let (warm_result, warm_lines) = fixture.build("1.0.1", &files(&app)).await;
        let warm = started.elapsed();
        warm_result.unwrap();
        eprintln!("warm build: {warm:?}");
        assert!(
            warm_lines.contains(&"-----> Restoring the virtualenv from the build cache".to_owned()),
            "{warm_lines:#?}"
        );
        assert_eq!(fixture.build_containers().await, 0);
    })
    .await;
}

#[tokio::test]
async fn a_missing_package_fails_compile_and_leaves_no_container() {
    Fixture::run("pyfail", |fixture| async move {
        let app = python_app("slipway-no-such-package-0d41c9==1.0\n");
        let (result, lines) = fixture.build("1.0.0", &files(&app)).await;
        let error = result.unwrap_err();
        assert!(
            matches!(&error, BuildError::CompileFailed { buildpack, exit_code: 1 } if buildpack == "python"),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "`python` buildpack compile failed (exit 1): see the output above"
        );
        assert!(
            lines
                .iter()
                .any(|line| line.contains("slipway-no-such-package-0d41c9")),
            "{lines:#?}"
        );
        assert_eq!(fixture.build_containers().await, 0);
        assert!(
            !fixture
                .engine
                .image_exists(&fixture.image("1.0.0"))
                .await
                .unwrap()
        );
    })
    .await;
}

#[tokio::test]
async fn an_app_without_a_buildpack_is_refused() {
    Fixture::run("none", |fixture| async move {
        let (result, _) = fixture
            .build("1.0.0", &[("README.md", "# nothing to build\n")])
            .await;
        let error = result.unwrap_err();
        assert!(matches!(error, BuildError::NoBuildpack), "{error:?}");
        assert_eq!(fixture.build_containers().await, 0);
    })
    .await;
}

#[tokio::test]
async fn a_python_version_the_stack_lacks_is_a_clear_error() {
    Fixture::run("pyver", |fixture| async move {
        let mut app = python_app("six\n");
        app.push((".python-version", "3.9\n".to_owned()));
        let (result, lines) = fixture.build("1.0.0", &files(&app)).await;
        assert!(
            matches!(result, Err(BuildError::CompileFailed { .. })),
            "{result:?}"
        );
        let message = lines
            .iter()
            .find(|line| line.contains(".python-version asks for Python 3.9"))
            .unwrap_or_else(|| panic!("{lines:#?}"));
        assert!(message.contains("this stack has Python 3.13"), "{message}");
        assert_eq!(fixture.build_containers().await, 0);
    })
    .await;
}

const DJANGO_SETTINGS: &str = r#"from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.staticfiles"]
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
DATABASES = {}
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
"#;

const DJANGO_URLS: &str = r#"from django.http import HttpResponse
from django.urls import path

urlpatterns = [path("", lambda request: HttpResponse("hello from django"))]
"#;

const DJANGO_WSGI: &str = r#"import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = get_wsgi_application()
"#;

const DJANGO_MANAGE: &str = r#"import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"#;

#[tokio::test]
async fn django_gets_collectstatic_and_a_default_gunicorn_web_process() {
    Fixture::run("django", |fixture| async move {
        let (result, lines) = fixture
            .build(
                "1.0.0",
                &[
                    ("requirements.txt", "django>=5.2,<6\ngunicorn\n"),
                    ("manage.py", DJANGO_MANAGE),
                    ("mysite/__init__.py", ""),
                    ("mysite/settings.py", DJANGO_SETTINGS),
                    ("mysite/urls.py", DJANGO_URLS),
                    ("mysite/wsgi.py", DJANGO_WSGI),
                    ("static/site.css", "body { color: teal; }\n"),
                ],
            )
            .await;
        let result = result.unwrap();
        assert!(
            lines.contains(&"-----> Running python manage.py collectstatic --noinput".to_owned()),
            "{lines:#?}"
        );
        let web = result.procfile.command(&ProcessType::web()).unwrap();
        assert_eq!(web, "gunicorn mysite.wsgi --bind 0.0.0.0:$PORT");

        fixture
            .engine
            .ensure_network(&fixture.network(), &BTreeMap::new())
            .await
            .unwrap();
        let id = fixture
            .start(ContainerSpec {
                name: format!("{}-web-1", fixture.app),
                image: fixture.image("1.0.0"),
                cmd: launch_command(web),
                env: BTreeMap::from([("PORT".to_owned(), PORT.to_string())]),
                network: Some(fixture.network()),
                ..ContainerSpec::default()
            })
            .await;
        let address = fixture.engine.inspect(&id).await.unwrap().addresses[&fixture.network()];
        let response = get_root(SocketAddr::new(address, PORT)).await;
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
        assert!(response.ends_with("hello from django"), "{response}");

        let (code, output) = fixture
            .run_to_end(ContainerSpec {
                name: format!("{}-run-1", fixture.app),
                image: fixture.image("1.0.0"),
                cmd: launch_command("cat staticfiles/site.css"),
                ..ContainerSpec::default()
            })
            .await;
        assert_eq!((code, output.as_str()), (0, "body { color: teal; }\n"));
    })
    .await;
}

#[tokio::test]
async fn a_pipfile_without_a_lock_is_locked_and_installed() {
    Fixture::run("pipenv", |fixture| async move {
        let pipfile = "[[source]]\nurl = \"https://pypi.org/simple\"\nverify_ssl = true\nname = \"pypi\"\n\n[packages]\nsix = \"*\"\n";
        let (result, lines) = fixture
            .build(
                "1.0.0",
                &[
                    ("Pipfile", pipfile),
                    ("Procfile", "web: python3 -m http.server $PORT\n"),
                ],
            )
            .await;
        result.unwrap_or_else(|error| panic!("{error}: {lines:#?}"));
        let (code, output) = fixture
            .run_to_end(ContainerSpec {
                name: format!("{}-run-1", fixture.app),
                image: fixture.image("1.0.0"),
                cmd: launch_command("python -c 'import six, sys; print(sys.prefix)'"),
                ..ContainerSpec::default()
            })
            .await;
        assert_eq!((code, output.as_str()), (0, "/app/.venv\n"));
    })
    .await;
}

#[tokio::test]
async fn a_pyproject_without_requirements_is_installed_with_pip() {
    Fixture::run("pyproject", |fixture| async move {
        let pyproject = "[project]\nname = \"hello\"\nversion = \"0.1.0\"\ndependencies = [\"six\"]\n\n[build-system]\nrequires = [\"setuptools>=61\"]\nbuild-backend = \"setuptools.build_meta\"\n";
        let (result, lines) = fixture
            .build(
                "1.0.0",
                &[
                    ("pyproject.toml", pyproject),
                    ("hello.py", "GREETING = 'hello from pyproject'\n"),
                    ("Procfile", "web: python3 -m http.server $PORT\n"),
                ],
            )
            .await;
        result.unwrap_or_else(|error| panic!("{error}: {lines:#?}"));
        let (code, output) = fixture
            .run_to_end(ContainerSpec {
                name: format!("{}-run-1", fixture.app),
                image: fixture.image("1.0.0"),
                cmd: launch_command(
                    "python -c 'import hello, six; print(hello.GREETING)'",
                ),
                ..ContainerSpec::default()
            })
            .await;
        assert_eq!((code, output.as_str()), (0, "hello from pyproject\n"));
    })
    .await;
}

#[tokio::test]
async fn a_pyproject_with_a_uv_lock_is_synced_with_uv() {
    Fixture::run("uv", |fixture| async move {
        let pyproject = "[project]\nname = \"uv-fixture\"\nversion = \"0.1.0\"\nrequires-python = \">=3.13\"\ndependencies = [\"six==1.17.0\"]\n";
        let lock = r#"version = 1
revision = 5
requires-python = ">=3.13"

[[package]]
name = "six"
version = "1.17.0"
source = { registry = "https://pypi.org/simple" }
sdist = { url = "https://files.pythonhosted.org/packages/94/e7/b2c673351809dca68a0e064b6af791aa332cf192da575fd474ed7d6f16a2/six-1.17.0.tar.gz", hash = "sha256:ff70335d468e7eb6ec65b95b99d3a2836546063f63acc5171de367e834932a81", size = 34031, upload-time = "2024-12-04T17:35:28.174Z" }
wheels = [
    { url = "https://files.pythonhosted.org/packages/b7/ce/149a00dd41f10bc29e5921b496af8b574d8413afcd5e30dfa0ed46c2cc5e/six-1.17.0-py2.py3-none-any.whl", hash = "sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274", size = 11050, upload-time = "2024-12-04T17:35:26.475Z" },
]

[[package]]
name = "uv-fixture"
version = "0.1.0"
source = { virtual = "." }
dependencies = [
    { name = "six" },
]

[package.metadata]
requires-dist = [{ name = "six", specifier = "==1.17.0" }]
"#;
        let app = [
            ("pyproject.toml", pyproject),
            ("uv.lock", lock),
            ("Procfile", "web: python3 -m http.server $PORT\n"),
        ];
        let (result, lines) = fixture.build("1.0.0", &app).await;
        result.unwrap_or_else(|error| panic!("{error}: {lines:#?}"));
        assert!(
            lines.contains(&"-----> Installing dependencies with uv (uv.lock)".to_owned()),
            "{lines:#?}"
        );
        let (code, output) = fixture
            .run_to_end(ContainerSpec {
                name: format!("{}-run-1", fixture.app),
                image: fixture.image("1.0.0"),
                cmd: launch_command("python -c 'import six, sys; print(sys.prefix, six.__version__)'"),
                ..ContainerSpec::default()
            })
            .await;
        assert_eq!((code, output.as_str()), (0, "/app/.venv 1.17.0\n"));

        // Unchanged, the virtualenv comes back from the cache.
        let (result, lines) = fixture.build("1.0.1", &app).await;
        result.unwrap_or_else(|error| panic!("{error}: {lines:#?}"));
        assert!(
            lines.contains(&"-----> Restoring the virtualenv from the build cache".to_owned()),
            "{lines:#?}"
        );
    })
    .await;
}
