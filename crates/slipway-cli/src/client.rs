//! A typed client for the REST API: one method per route, the JSON bodies of
//! `slipway_types::api`, and errors that say what went wrong in the user's terms.

mod addons;
mod alerts;
mod buildpacks;
mod canary;
mod domains;
mod drains;
mod keys;
mod logs;
mod metrics;
mod nodes;
mod pipelines;
mod runs;
mod sse;
mod users;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use slipway_types::api::{
    AppInfo, BuildInfo, BuildOutput, ConfigChanged, ConfigPatch, CreateApp, ErrorBody,
    FormationPatch, FormationView, ReleaseInfo, RestartRequest, RollbackRequest, WhoAmI,
};

use crate::token::Token;

pub use logs::LogsQuery;
pub use runs::{RunOutput, RunReader, RunTerminal, RunWriter};

/// Most calls answer at once; this only bounds a hung server.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// A config change answers when the new release is live or has failed, which includes the
/// release phase and a rolling restart.
const CONFIG_TIMEOUT: Duration = Duration::from_secs(600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest piece of an unexpected (non-JSON) error body quoted back to the user.
const BODY_QUOTE_LIMIT: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("server url `{url}` is invalid: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot reach the slipway server at {url}: is `slipway server` running?")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the slipway server at {url} did not answer {method} {path} within {seconds} s")]
    Timeout {
        url: String,
        method: Method,
        path: String,
        seconds: u64,
    },
    /// The server refused the call and said why; `message` is meant for the user.
    #[error("{message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// A failure status without the API's error body, e.g. from a proxy in front of the server.
    #[error("the server answered {status} to {method} {path}: {body}")]
    UnexpectedStatus {
        status: StatusCode,
        method: Method,
        path: String,
        body: String,
    },
    #[error("cannot read the server's answer to {method} {path}: {source}")]
    Decode {
        method: Method,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{method} {path} failed: {source}")]
    Request {
        method: Method,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot set up the HTTP client: {0}")]
    Setup(#[source] reqwest::Error),
    /// The WebSocket of an attached run failed to open or broke. `reason` is the WebSocket
    /// library's message, which already holds its causes.
    #[error("the connection to the slipway server at {url} for {path} failed: {reason}")]
    WebSocket {
        url: String,
        path: String,
        reason: String,
    },
    /// The server sent an attached run something the protocol does not allow.
    #[error("the slipway server sent an unexpected frame for {path}: {reason}")]
    Protocol { path: String, reason: String },
}

/// Talks to one Slipway server as one user. Cheap to clone: clones share connections.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    /// The base URL as the user wrote it, without a trailing slash, for messages.
    display_url: String,
    token: Option<Token>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.display_url)
            .field("token", &self.token)
            .finish()
    }
}

impl ClientError {
    /// The server refused the token itself (missing, invalid, expired or revoked).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ClientError::Api { status, .. } if *status == StatusCode::UNAUTHORIZED)
    }
}

impl Client {
    /// `base_url` is the server's API address (`http://127.0.0.1:7070`); it may carry a path
    /// prefix when the server sits behind a proxy. Without a token every call but `healthz`
    /// is refused by the server.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Client, ClientError> {
        let display_url = base_url.trim_end_matches('/').to_owned();
        let invalid = |reason: String| ClientError::InvalidUrl {
            url: base_url.to_owned(),
            reason,
        };
        let mut base = Url::parse(&display_url).map_err(|err| invalid(err.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("use an http:// or https:// address".to_owned()));
        }
        if base.cannot_be_a_base() || base.host_str().is_none() {
            return Err(invalid("it has no host".to_owned()));
        }
        base.set_query(None);
        base.set_fragment(None);
        let http = reqwest::Client::builder()
            .user_agent(concat!("slipway-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(DEFAULT_TIMEOUT)
            .build()
            .map_err(ClientError::Setup)?;
        Ok(Client {
            http,
            base,
            display_url,
            token: token.map(Token::from),
        })
    }

    /// The server address without a trailing slash, as given to `new`.
    pub fn base_url(&self) -> &str {
        &self.display_url
    }

    /// `GET /healthz`: the server's liveness answer (`ok`); needs no token.
    pub async fn healthz(&self) -> Result<String, ClientError> {
        let body = self
            .send(Method::GET, &["healthz"], None::<&()>, DEFAULT_TIMEOUT)
            .await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.call(Method::GET, &["v1", "whoami"]).await
    }

    pub async fn list_apps(&self) -> Result<Vec<AppInfo>, ClientError> {
        self.call(Method::GET, &["v1", "apps"]).await
    }

    /// The name is sent as given: the server says what is wrong with it.
    pub async fn create_app(&self, name: &str) -> Result<AppInfo, ClientError> {
        let body = CreateApp {
            name: name.to_owned(),
        };
        self.call_with(Method::POST, &["v1", "apps"], &body, DEFAULT_TIMEOUT)
            .await
    }

    pub async fn get_app(&self, app: &str) -> Result<AppInfo, ClientError> {
        self.call(Method::GET, &["v1", "apps", app]).await
    }

    pub async fn destroy_app(&self, app: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &["v1", "apps", app],
            None::<&()>,
            DEFAULT_TIMEOUT,
        )
        .await?;
        Ok(())
    }

    pub async fn get_config(&self, app: &str) -> Result<BTreeMap<String, String>, ClientError> {
        self.call(Method::GET, &["v1", "apps", app, "config"]).await
    }

    /// Sets (`Some`) and unsets (`None`) config vars. Answers once the release it cuts is
    /// live or has failed, so this call can take minutes.
    pub async fn patch_config(
        &self,
        app: &str,
        patch: &ConfigPatch,
    ) -> Result<ConfigChanged, ClientError> {
        self.call_with(
            Method::PATCH,
            &["v1", "apps", app, "config"],
            patch,
            CONFIG_TIMEOUT,
        )
        .await
    }

    /// Newest first.
    pub async fn list_releases(&self, app: &str) -> Result<Vec<ReleaseInfo>, ClientError> {
        self.call(Method::GET, &["v1", "apps", app, "releases"])
            .await
    }

    pub async fn get_release(&self, app: &str, version: &str) -> Result<ReleaseInfo, ClientError> {
        self.call(Method::GET, &["v1", "apps", app, "releases", version])
            .await
    }

    /// Newest first.
    pub async fn list_builds(&self, app: &str) -> Result<Vec<BuildInfo>, ClientError> {
        self.call(Method::GET, &["v1", "apps", app, "builds"]).await
    }

    /// `id` is a build id or `latest`.
    pub async fn build_output(&self, app: &str, id: &str) -> Result<BuildOutput, ClientError> {
        self.call(Method::GET, &["v1", "apps", app, "builds", id])
            .await
    }

    /// Rolls back to `version`, or to the release before the current one. Answers once the
    /// new release is live or has failed.
    pub async fn rollback(
        &self,
        app: &str,
        version: Option<&str>,
    ) -> Result<ReleaseInfo, ClientError> {
        let request = RollbackRequest {
            version: version.map(str::to_owned),
        };
        self.call_with(
            Method::POST,
            &["v1", "apps", app, "releases", "rollback"],
            &request,
            CONFIG_TIMEOUT,
        )
        .await
    }

    pub async fn formation(&self, app: &str) -> Result<FormationView, ClientError> {
        self.call(Method::GET, &["v1", "apps", app, "formation"])
            .await
    }

    /// Scales and resizes; answers once the processes match.
    pub async fn update_formation(
        &self,
        app: &str,
        patch: &FormationPatch,
    ) -> Result<FormationView, ClientError> {
        self.call_with(
            Method::PATCH,
            &["v1", "apps", app, "formation"],
            patch,
            CONFIG_TIMEOUT,
        )
        .await
    }

    /// Replaces the processes (of one type, or all) one at a time.
    pub async fn restart(
        &self,
        app: &str,
        process: Option<&str>,
    ) -> Result<FormationView, ClientError> {
        let request = RestartRequest {
            process: process.map(str::to_owned),
        };
        self.call_with(
            Method::POST,
            &["v1", "apps", app, "formation", "restart"],
            &request,
            CONFIG_TIMEOUT,
        )
        .await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
    ) -> Result<T, ClientError> {
        self.decode(method, segments, None::<&()>, DEFAULT_TIMEOUT)
            .await
    }

    async fn call_with<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: &impl Serialize,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        self.decode(method, segments, Some(body), timeout).await
    }

    async fn decode<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&impl Serialize>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let bytes = self.send(method.clone(), segments, body, timeout).await?;
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
            method,
            path: self.url(segments).path().to_owned(),
            source,
        })
    }

    /// Sends one request and returns the body of a successful answer; a failure status
    /// becomes `Api` when the server sent its error body.
    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&impl Serialize>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        self.send_to(method, self.url(segments), body, timeout)
            .await
    }

    /// A GET-style call with query parameters, decoded.
    async fn call_query<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let mut url = self.url(segments);
        url.query_pairs_mut().extend_pairs(query);
        let path = url.path().to_owned();
        let bytes = self
            .send_to(method.clone(), url, None::<&()>, DEFAULT_TIMEOUT)
            .await?;
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
            method,
            path,
            source,
        })
    }

    async fn send_to(
        &self,
        method: Method,
        url: Url,
        body: Option<&impl Serialize>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        let path = url.path().to_owned();
        let mut request = self.http.request(method.clone(), url).timeout(timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let failed = |source: reqwest::Error| self.transport_error(&method, &path, timeout, source);
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(failed)?.to_vec();
        if status.is_success() {
            return Ok(bytes);
        }
        Err(refusal(status, method, path, &bytes))
    }

    fn transport_error(
        &self,
        method: &Method,
        path: &str,
        timeout: Duration,
        source: reqwest::Error,
    ) -> ClientError {
        if source.is_connect() {
            ClientError::Unreachable {
                url: self.display_url.clone(),
                source,
            }
        } else if source.is_timeout() {
            ClientError::Timeout {
                url: self.display_url.clone(),
                method: method.clone(),
                path: path.to_owned(),
                seconds: timeout.as_secs(),
            }
        } else {
            ClientError::Request {
                method: method.clone(),
                path: path.to_owned(),
                source,
            }
        }
    }

    /// Appends percent-encoded path segments, so an odd app name cannot reach another route.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("Client::new only accepts URLs that can be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }
}

/// A failure status as an error: `Api` when the server sent its error body.
fn refusal(status: StatusCode, method: Method, path: String, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(ErrorBody { error }) => ClientError::Api {
            status,
            code: error.code,
            message: error.message,
        },
        Err(_) => ClientError::UnexpectedStatus {
            status,
            method,
            path,
            body: quote_body(bytes),
        },
    }
}

fn quote_body(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    match text.char_indices().nth(BODY_QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_a_path_prefix_and_encode_segments() {
        let client = Client::new("http://example.test/slipway/", None).unwrap();
        assert_eq!(client.base_url(), "http://example.test/slipway");
        assert_eq!(
            client.url(&["v1", "apps", "a/b"]).as_str(),
            "http://example.test/slipway/v1/apps/a%2Fb"
        );
        let client = Client::new("http://127.0.0.1:7070", None).unwrap();
        assert_eq!(
            client.url(&["healthz"]).as_str(),
            "http://127.0.0.1:7070/healthz"
        );
    }

    #[test]
    fn rejects_urls_that_are_not_http() {
        for url in ["127.0.0.1:7070", "ftp://example.test", "not a url"] {
            let err = Client::new(url, None).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("server url `{url}` is invalid")),
                "{err}"
            );
        }
    }

    #[test]
    fn debug_output_hides_the_token() {
        let client = Client::new("http://127.0.0.1:7070", Some("s3cret".to_owned())).unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn long_error_bodies_are_cut() {
        let quoted = quote_body("x".repeat(500).as_bytes());
        assert_eq!(quoted.chars().count(), BODY_QUOTE_LIMIT + 1);
        assert_eq!(quote_body(b"  "), "(empty body)");
    }
}
