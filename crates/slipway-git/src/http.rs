//! Smart-HTTP pushes, served by `git http-backend` run as a CGI program.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::Stdio;

use axum::body::Body;
use axum::extract::ConnectInfo;
use futures_util::StreamExt;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use slipway_types::AppName;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio_util::io::ReaderStream;

use crate::command::{LOCATION_VARS, describe, git, run};
use crate::{GitError, Repos};

/// Shown to anyone who tries to clone or fetch: the repositories are a deploy target, and the
/// source of truth stays with the developer.
const PUSH_ONLY: &str = "this remote only accepts pushes\n";

/// git http-backend writes a handful of short headers; anything longer is not its output.
const MAX_CGI_HEAD: usize = 64 * 1024;

impl Repos {
    /// Serves one smart-HTTP request for `/git/<app>.git/<rest>`, `rest` being what follows
    /// `<app>.git/`. Only pushes are served (`GET info/refs?service=git-receive-pack` and
    /// `POST git-receive-pack`); everything else, clone and fetch included, is refused with 403.
    /// The caller has authenticated `remote_user` and checked that the app exists.
    ///
    /// The response body is streamed from git as it runs: the build happens inside the push and
    /// its output reaches the pusher over minutes.
    pub async fn http_backend(
        &self,
        app: &AppName,
        rest: &str,
        remote_user: &str,
        request: Request<Body>,
    ) -> Response<Body> {
        if !is_receive_pack(request.method(), rest, request.uri().query()) {
            return plain(StatusCode::FORBIDDEN, PUSH_ONLY);
        }
        match self.run_http_backend(app, rest, remote_user, request).await {
            Ok(response) => response,
            Err(error) => {
                tracing::error!(app = %app, error = %error, "git http-backend could not serve a push");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n")
            }
        }
    }

    async fn run_http_backend(
        &self,
        app: &AppName,
        rest: &str,
        remote_user: &str,
        request: Request<Body>,
    ) -> Result<Response<Body>, GitError> {
        let backend = self.http_backend.get_or_try_init(find_http_backend).await?;
        let (parts, body) = request.into_parts();
        let header = |name: &HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let remote_addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());

        let mut command = Command::new(backend);
        for var in LOCATION_VARS {
            command.env_remove(var);
        }
        command
            .env("GIT_PROJECT_ROOT", &self.root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("PATH_INFO", format!("/{app}.git/{rest}"))
            .env("REQUEST_METHOD", parts.method.as_str())
            .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
            .env("REMOTE_USER", remote_user)
            .env("SLIPWAY_HOOK_SOCKET", &self.hook_socket)
            .env("SLIPWAY_APP", app.as_str());
        for (var, value) in [
            ("CONTENT_TYPE", header(&CONTENT_TYPE)),
            ("CONTENT_LENGTH", header(&CONTENT_LENGTH)),
            // git gzips request bodies of medium size; http-backend inflates them.
            ("HTTP_CONTENT_ENCODING", header(&CONTENT_ENCODING)),
            (
                "HTTP_GIT_PROTOCOL",
                header(&HeaderName::from_static("git-protocol")),
            ),
            ("REMOTE_ADDR", remote_addr.as_deref()),
        ] {
            match value {
                Some(value) => command.env(var, value),
                None => command.env_remove(var),
            };
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|source| GitError::Spawn {
            command: describe(&command),
            source,
        })?;

        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        tokio::spawn(feed_request_body(body, stdin));
        let log_app = app.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!(app = %log_app, "git http-backend: {line}");
            }
        });
        let wait_app = app.clone();
        tokio::spawn(async move {
            match child.wait().await {
                Ok(status) if status.success() => {}
                Ok(status) => tracing::warn!(app = %wait_app, %status, "git http-backend failed"),
                Err(error) => {
                    tracing::warn!(app = %wait_app, %error, "could not wait for git http-backend")
                }
            }
        });

        let mut stdout = BufReader::new(stdout);
        let head = read_cgi_head(&mut stdout).await?;
        let (status, headers) = parse_cgi_head(&head)?;
        let mut response = Response::new(Body::from_stream(ReaderStream::new(stdout)));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

/// The two requests a push makes: the ref advertisement and the pack upload.
fn is_receive_pack(method: &Method, rest: &str, query: Option<&str>) -> bool {
    match (method, rest) {
        (&Method::GET, "info/refs") => query
            .unwrap_or("")
            .split('&')
            .any(|pair| pair == "service=git-receive-pack"),
        (&Method::POST, "git-receive-pack") => true,
        _ => false,
    }
}

async fn find_http_backend() -> Result<PathBuf, GitError> {
    let mut command = git(None);
    command.arg("--exec-path");
    let mut exec_path = run(command).await?;
    while exec_path.last().is_some_and(u8::is_ascii_whitespace) {
        exec_path.pop();
    }
    Ok(PathBuf::from(OsString::from_vec(exec_path)).join("git-http-backend"))
}

/// Copies the request body into git's stdin, then closes it: when the length is unknown
/// (chunked uploads of large pushes) http-backend reads until end of input.
async fn feed_request_body(body: Body, mut stdin: ChildStdin) {
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let written = match chunk {
            Ok(chunk) => stdin.write_all(&chunk).await,
            Err(error) => {
                tracing::debug!(%error, "push request body ended early");
                return;
            }
        };
        if let Err(error) = written {
            tracing::debug!(%error, "git http-backend stopped reading the push request");
            return;
        }
    }
}

/// Reads the CGI header block, up to and including the blank line that ends it.
async fn read_cgi_head(stdout: &mut BufReader<ChildStdout>) -> Result<String, GitError> {
    let mut head = Vec::new();
    loop {
        let start = head.len();
        let read = stdout
            .read_until(b'\n', &mut head)
            .await
            .map_err(|source| GitError::Io {
                action: "read the output of",
                path: "git-http-backend".into(),
                source,
            })?;
        let line = &head[start..];
        if read == 0 || head.len() > MAX_CGI_HEAD {
            return Err(GitError::InvalidCgiHeader(
                String::from_utf8_lossy(&head).into_owned(),
            ));
        }
        if line == b"\n" || line == b"\r\n" {
            break;
        }
    }
    String::from_utf8(head).map_err(|error| {
        GitError::InvalidCgiHeader(String::from_utf8_lossy(error.as_bytes()).into_owned())
    })
}

/// Turns CGI headers into a status (from `Status:`, else 200) and response headers.
fn parse_cgi_head(head: &str) -> Result<(StatusCode, HeaderMap), GitError> {
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    for line in head.lines().take_while(|line| !line.is_empty()) {
        let invalid = || GitError::InvalidCgiHeader(line.to_owned());
        let (name, value) = line.split_once(':').ok_or_else(invalid)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next().unwrap_or_default();
            status = StatusCode::from_bytes(code.as_bytes()).map_err(|_| invalid())?;
        } else {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
            let value = HeaderValue::from_str(value).map_err(|_| invalid())?;
            headers.append(name, value);
        }
    }
    Ok((status, headers))
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// axum handlers must return `Send` futures.
    #[test]
    fn http_backend_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let repos = Repos::new("/r".into(), "/slipway".into(), "/s".into());
        let app: AppName = "app".parse().expect("app name");
        let future = repos.http_backend(&app, "info/refs", "user", Request::new(Body::empty()));
        assert_send(&future);
    }

    #[test]
    fn parses_status_and_headers() {
        let head = "Status: 404 Not Found\r\nContent-Type: text/plain\r\nCache-Control: no-cache\r\nVary: a\r\nVary: b\r\n\r\n";
        let (status, headers) = parse_cgi_head(head).expect("valid head");
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers[CONTENT_TYPE], "text/plain");
        assert_eq!(headers["cache-control"], "no-cache");
        assert_eq!(
            headers.get_all("vary").iter().collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(!headers.contains_key("status"));
    }

    #[test]
    fn status_defaults_to_ok_and_lf_endings_work() {
        let head = "Expires: Fri, 01 Jan 1980 00:00:00 GMT\nContent-Type: application/x-git-receive-pack-result\n\n";
        let (status, headers) = parse_cgi_head(head).expect("valid head");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers.len(), 2);
        assert_eq!(
            headers[CONTENT_TYPE],
            "application/x-git-receive-pack-result"
        );
    }

    #[test]
    fn rejects_malformed_headers() {
        for head in [
            "no colon here\n\n",
            "Status: abc\n\n",
            "Status: 99 Too Low\n\n",
            "Bad Name: x\n\n",
        ] {
            assert!(
                matches!(parse_cgi_head(head), Err(GitError::InvalidCgiHeader(_))),
                "{head:?} should be rejected"
            );
        }
    }

    #[test]
    fn serves_only_receive_pack() {
        let allowed = [
            (Method::GET, "info/refs", Some("service=git-receive-pack")),
            (
                Method::GET,
                "info/refs",
                Some("x=1&service=git-receive-pack"),
            ),
            (Method::POST, "git-receive-pack", None),
        ];
        for (method, rest, query) in allowed {
            assert!(
                is_receive_pack(&method, rest, query),
                "{method} {rest} {query:?}"
            );
        }
        let refused = [
            (Method::GET, "info/refs", Some("service=git-upload-pack")),
            (Method::GET, "info/refs", None),
            (Method::GET, "info/refs", Some("service=git-receive-pack-x")),
            (Method::POST, "git-upload-pack", None),
            (Method::GET, "git-receive-pack", None),
            (Method::POST, "info/refs", Some("service=git-receive-pack")),
            (Method::GET, "HEAD", None),
            (Method::GET, "objects/info/packs", None),
        ];
        for (method, rest, query) in refused {
            assert!(
                !is_receive_pack(&method, rest, query),
                "{method} {rest} {query:?}"
            );
        }
    }
}
