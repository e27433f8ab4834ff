//! A follower has the leader carry out changes: it forwards the request to the leader's API
//! (the URL in the lease) and streams the leader's answer back, so clients may send anything
//! to any server. Only the leader deploys, and the git repositories that pushes build from are
//! the leader's, so every git request goes there too.
//!
//! The follower neither authenticates nor audits what it forwards: the leader does both, once,
//! as for a request sent to it. A forwarded request carries [`FORWARDED_BY`]; a server that
//! receives one and does not lead refuses it instead of forwarding it again, so a request
//! never loops between servers that each believe another leads.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, Request};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Set on every forwarded request, naming the server that forwarded it (its API URL).
pub const FORWARDED_BY: HeaderName = HeaderName::from_static("x-slipway-forwarded-by");

/// How long a follower waits for the leader to accept a connection. Only the connection is
/// bounded: an answer may stream for as long as a build and its deploy take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Headers that describe one connection, not the request (RFC 9110 section 7.6.1): never passed
/// on, in either direction, nor are those a `Connection` header names.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Whether a follower must leave `path` to the leader: every change (all but reads, and
/// logging in and out, which only write the shared store and must work while no server leads)
/// and every git request. A push's ref advertisement (`info/refs?service=git-receive-pack`,
/// a GET) must come from the repository the pack then goes to, or the client sends a pack
/// that assumes objects the receiving repository lacks; fetches go there too because a
/// follower's copy holds only what was pushed while it led.
pub fn for_the_leader(method: &Method, path: &str) -> bool {
    if path.starts_with("/git/") {
        return true;
    }
    let reads = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let session = matches!(path, "/v1/login" | "/v1/logout" | "/login" | "/logout");
    !reads && !session
}

/// Whether another server forwarded this request.
pub fn is_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED_BY)
}

/// The refusal a follower answers when the leader cannot carry out a change: `message` says
/// what is wrong, on one line.
pub fn not_leader(message: &str) -> Response {
    ApiError::with_code(StatusCode::SERVICE_UNAVAILABLE, "not_leader", message).into_response()
}

/// The HTTP client a follower forwards with.
#[derive(Debug)]
pub struct Forwarder {
    client: reqwest::Client,
    /// This server's API URL, sent as [`FORWARDED_BY`].
    by: HeaderValue,
}

impl Forwarder {
    /// `own_url` is this server's API URL, for the leader's log.
    pub fn new(own_url: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // The answer goes back as the leader gave it: a redirect is the client's to follow.
            .redirect(reqwest::redirect::Policy::none())
            // A request body streams once and a change must not happen twice.
            .retry(reqwest::retry::never())
            // No `Accept: */*` of reqwest's own: the client's headers only.
            .default_headers(HeaderMap::new())
            .no_proxy()
            .build()?;
        Ok(Self {
            client,
            by: HeaderValue::from_str(own_url)?,
        })
    }

    /// Sends `request` to the leader at `leader` (its API URL) and answers with the leader's
    /// status, headers and streamed body. When the leader does not accept the connection the
    /// answer is `503 not_leader`; when it fails after taking the request, `502
    /// leader_failed`, since the change may or may not have been made.
    pub async fn forward(&self, leader: &str, request: Request) -> Response {
        let client_ip = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        let (parts, body) = request.into_parts();
        let target = parts.uri.path_and_query().map_or("/", |path| path.as_str());
        let url = format!("{}{target}", leader.trim_end_matches('/'));
        let headers = request_headers(&parts.headers, client_ip, &self.by);
        let mut leader_request = self.client.request(parts.method, &url).headers(headers);
        // A request without a body (a git ref advertisement) is sent without one, not as an
        // empty chunked stream.
        if !body.is_end_stream() {
            leader_request =
                leader_request.body(reqwest::Body::wrap_stream(body.into_data_stream()));
        }
        let sent = leader_request.send().await;
        match sent {
            Ok(answer) => {
                let status = answer.status();
                let headers = response_headers(answer.headers());
                let mut response = Body::from_stream(answer.bytes_stream()).into_response();
                *response.status_mut() = status;
                *response.headers_mut() = headers;
                response
            }
            Err(error) if error.is_connect() => not_leader(&format!(
                "this server is a follower and the leader at {leader} does not answer ({}): \
                 retry in a few seconds; if it is down, another server takes over when its lease \
                 expires",
                root_cause(&error)
            )),
            Err(error) => {
                tracing::warn!(%leader, error = %root_cause(&error), "forwarding a change to the leader failed");
                ApiError::with_code(
                    StatusCode::BAD_GATEWAY,
                    "leader_failed",
                    format!(
                        "the leader at {leader} failed before answering ({}): the change may or \
                         may not have been made, check before sending it again",
                        root_cause(&error)
                    ),
                )
                .into_response()
            }
        }
    }
}

/// The innermost error, which says what went wrong (`Connection refused`) where the outer
/// ones only say what was being done.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// The names a `Connection` header lists: hop-by-hop for this connection only.
fn connection_options(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// `headers` without the hop-by-hop ones.
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let options = connection_options(headers);
    let mut kept = headers.clone();
    for name in HOP_BY_HOP.iter().chain(&options) {
        kept.remove(name);
    }
    kept
}

/// The headers the leader gets: the client's end-to-end headers (`Host` and `Authorization`
/// included, so the leader sees the request as the client sent it), the client's address
/// appended to `X-Forwarded-For` and `Forwarded`, and [`FORWARDED_BY`].
fn request_headers(headers: &HeaderMap, client: Option<IpAddr>, by: &HeaderValue) -> HeaderMap {
    let mut forwarded = end_to_end(headers);
    if let Some(ip) = client {
        let address = ip.to_string();
        let chain = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .chain(std::iter::once(address.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(value) = HeaderValue::from_str(&chain) {
            forwarded.insert(&X_FORWARDED_FOR, value);
        }
        // RFC 7239: an IPv6 address is bracketed and the whole node quoted.
        let node = match ip {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("\"[{ip}]\""),
        };
        if let Ok(value) = HeaderValue::from_str(&format!("for={node}")) {
            forwarded.append(header::FORWARDED, value);
        }
    }
    forwarded.insert(FORWARDED_BY, by.clone());
    forwarded
}

/// The headers the client gets: the leader's, but for the hop-by-hop ones.
fn response_headers(headers: &HeaderMap) -> HeaderMap {
    end_to_end(headers)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures_util::StreamExt;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn values<'a>(map: &'a HeaderMap, name: &str) -> Vec<&'a str> {
        map.get_all(name)
            .iter()
            .map(|value| value.to_str().unwrap())
            .collect()
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_and_the_rest_kept() {
        let client = headers(&[
            ("host", "follower:7070"),
            ("authorization", "Bearer t0ken"),
            ("content-type", "application/json"),
            ("content-length", "12"),
            ("connection", "keep-alive, x-private-hop"),
            ("keep-alive", "timeout=5"),
            ("x-private-hop", "secret"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic cHJveHk="),
        ]);
        let by = HeaderValue::from_static("http://follower:7070");
        let sent = request_headers(&client, None, &by);
        for gone in [
            "connection",
            "keep-alive",
            "x-private-hop",
            "te",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
        ] {
            assert!(!sent.contains_key(gone), "{gone} was passed on: {sent:?}");
        }
        assert_eq!(values(&sent, "host"), ["follower:7070"]);
        assert_eq!(values(&sent, "authorization"), ["Bearer t0ken"]);
        assert_eq!(values(&sent, "content-type"), ["application/json"]);
        assert_eq!(values(&sent, "content-length"), ["12"]);
        assert_eq!(
            values(&sent, "x-slipway-forwarded-by"),
            ["http://follower:7070"]
        );
        assert!(
            !sent.contains_key("x-forwarded-for"),
            "no client address known"
        );

        let leader = headers(&[
            ("content-type", "application/x-git-receive-pack-result"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
            ("www-authenticate", "Basic realm=\"slipway\""),
        ]);
        let answered = response_headers(&leader);
        assert!(!answered.contains_key("transfer-encoding"));
        assert!(!answered.contains_key("connection"));
        assert_eq!(
            values(&answered, "content-type"),
            ["application/x-git-receive-pack-result"]
        );
        assert_eq!(
            values(&answered, "www-authenticate"),
            ["Basic realm=\"slipway\""]
        );
    }

    #[test]
    fn the_client_address_is_appended_to_the_forwarding_chain() {
        let by = HeaderValue::from_static("http://follower:7070");
        let first = request_headers(&HeaderMap::new(), Some([10, 0, 0, 7].into()), &by);
        assert_eq!(values(&first, "x-forwarded-for"), ["10.0.0.7"]);
        assert_eq!(values(&first, "forwarded"), ["for=10.0.0.7"]);

        let proxied = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2, 3.3.3.3"),
            ("forwarded", "for=1.1.1.1"),
        ]);
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let sent = request_headers(&proxied, Some(ip), &by);
        assert_eq!(
            values(&sent, "x-forwarded-for"),
            ["1.1.1.1, 2.2.2.2, 3.3.3.3, 2001:db8::1"]
        );
        assert_eq!(
            values(&sent, "forwarded"),
            ["for=1.1.1.1", "for=\"[2001:db8::1]\""]
        );
    }

    #[test]
    fn changes_and_git_go_to_the_leader_reads_and_sessions_stay() {
        let leader = [
            (Method::PATCH, "/v1/apps/demo/config"),
            (Method::POST, "/v1/apps"),
            (Method::DELETE, "/v1/apps/login"),
            (Method::POST, "/apps/demo/config"),
            (Method::GET, "/git/demo.git/info/refs"),
            (Method::POST, "/git/demo.git/git-receive-pack"),
            (Method::POST, "/git/demo.git/git-upload-pack"),
        ];
        for (method, path) in leader {
            assert!(for_the_leader(&method, path), "{method} {path}");
        }
        let here = [
            (Method::GET, "/v1/apps/demo"),
            (Method::HEAD, "/v1/apps"),
            (Method::GET, "/v1/apps/demo/logs"),
            (Method::POST, "/v1/login"),
            (Method::POST, "/v1/logout"),
            (Method::POST, "/login"),
            (Method::POST, "/logout"),
        ];
        for (method, path) in here {
            assert!(!for_the_leader(&method, path), "{method} {path}");
        }
    }

    /// A stand-in leader: answers `201` with what it received in headers and, as its body, the
    /// request body followed by what `more` sends, chunk by chunk as it arrives.
    async fn leader(more: tokio::sync::mpsc::Receiver<&'static str>) -> String {
        use axum::routing::patch;
        let more = Arc::new(std::sync::Mutex::new(Some(more)));
        let app = axum::Router::new().route(
            "/v1/apps/{app}/config",
            patch(move |request: Request| echo(request, more.clone())),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    async fn echo(
        request: Request,
        more: Arc<std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<&'static str>>>>,
    ) -> Response {
        // In a block of its own: the borrow of the request must not live across an await.
        let echo = {
            let seen = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .cloned()
                    .unwrap_or(HeaderValue::from_static("-"))
            };
            let query = request.uri().query().unwrap_or("-");
            [
                ("x-seen-query", HeaderValue::from_str(query).unwrap()),
                ("x-seen-authorization", seen("authorization")),
                ("x-seen-forwarded-by", seen("x-slipway-forwarded-by")),
                ("x-seen-forwarded-for", seen("x-forwarded-for")),
            ]
        };
        let received = axum::body::to_bytes(request.into_body(), 1024)
            .await
            .unwrap();
        let more = more.lock().unwrap().take().expect("one request");
        let rest = futures_util::stream::unfold(more, async |mut more| {
            let chunk = more.recv().await?;
            Some((
                Ok::<_, std::io::Error>(axum::body::Bytes::from(chunk)),
                more,
            ))
        });
        let body = futures_util::stream::once(async move { Ok(received) }).chain(rest);
        (StatusCode::CREATED, echo, Body::from_stream(body)).into_response()
    }

    fn change(body: &'static str) -> Request {
        let mut request = Request::builder()
            .method(Method::PATCH)
            .uri("/v1/apps/demo/config?dry=1")
            .header("authorization", "Bearer t0ken")
            .header("connection", "keep-alive")
            .body(Body::from(body))
            .unwrap();
        let client: SocketAddr = "10.0.0.7:50000".parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(client));
        request
    }

    #[tokio::test]
    async fn the_leader_gets_the_request_and_its_answer_streams_back() {
        let (more, waiting) = tokio::sync::mpsc::channel(1);
        let url = leader(waiting).await;
        let forwarder = Forwarder::new("http://follower:7070").unwrap();
        let answer = forwarder.forward(&url, change("COLOR=blue;")).await;

        assert_eq!(answer.status(), StatusCode::CREATED);
        let header = |name: &str| answer.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("x-seen-query"), "dry=1");
        assert_eq!(header("x-seen-authorization"), "Bearer t0ken");
        assert_eq!(header("x-seen-forwarded-by"), "http://follower:7070");
        assert_eq!(header("x-seen-forwarded-for"), "10.0.0.7");
        // The answer arrives while the leader is still writing it: the body is not buffered.
        let mut body = answer.into_body().into_data_stream();
        let mut next = async || {
            tokio::time::timeout(Duration::from_secs(10), body.next())
                .await
                .expect("a chunk while the leader is still answering")
        };
        assert_eq!(next().await.unwrap().unwrap(), "COLOR=blue;");
        more.send("-----> deployed").await.unwrap();
        assert_eq!(next().await.unwrap().unwrap(), "-----> deployed");
        drop(more);
        assert!(next().await.is_none(), "the body ends with the leader's");
    }

    #[tokio::test]
    async fn a_leader_that_does_not_answer_is_a_one_line_503() {
        let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", gone.local_addr().unwrap());
        drop(gone);
        let forwarder = Forwarder::new("http://follower:7070").unwrap();
        let answer = forwarder.forward(&url, change("COLOR=blue")).await;

        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(answer.into_body(), 4096)
            .await
            .unwrap();
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(error["error"]["code"], "not_leader");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("the leader at {url} does not answer"))
                && message.to_lowercase().contains("connection refused")
                && !message.contains('\n'),
            "{message}"
        );
    }

    #[test]
    fn a_forwarded_request_is_recognised() {
        let by = HeaderValue::from_static("http://follower:7070");
        assert!(is_forwarded(&request_headers(&HeaderMap::new(), None, &by)));
        assert!(!is_forwarded(&HeaderMap::new()));
    }
}
