//! Relaying one request: answer ACME challenges and redirect to HTTPS on plain HTTP, route it by
//! host, pick a backend, rewrite the headers, send it with a deadline, retry a failed connection
//! once elsewhere when that is safe, and hand back the app's response or an error page.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Empty};
use hyper::body::{Body as _, Incoming};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt as _;

use crate::access_log::AccessLog;
use crate::body::{RequestBody, ResponseBody};
use crate::challenge;
use crate::error::{ErrorOrigin, ProxyError};
use crate::headers::{self, Forwarding, Target, X_REQUEST_ID};
use crate::pages;
use crate::pool::Sent;
use crate::ratelimit::{self, Refusal};
use crate::router::Router;
use crate::server::{Peer, Slot};
use crate::table::{InFlight, Site};
use crate::upstream::{AppBody, Upgraded};

/// An app's response on its way back, with what must outlive the response head.
struct Relayed {
    /// Its body holds the upstream connection, given back to its pool when the body ends.
    response: Response<AppBody>,
    in_flight: InFlight,
    client_upgrade: Option<(OnUpgrade, Option<Arc<Slot>>)>,
}

impl Router {
    /// Answers one client request; never fails, since every error becomes a page.
    pub(crate) async fn handle(
        &self,
        req: Request<Incoming>,
        client: &Peer,
    ) -> Response<ResponseBody> {
        let received_at = SystemTime::now();
        let request_id = headers::request_id(req.headers());
        let forwarded_for = headers::forwarded_for(req.headers(), &client.ip);
        let target = headers::target(&req);
        let log_host = match &target {
            Ok(target) => target.host.clone(),
            Err(ProxyError::InvalidHost { host }) => host.clone(),
            Err(_) => String::new(),
        };
        let mut log = AccessLog::new(
            req.method().clone(),
            req.uri().clone(),
            log_host,
            request_id.clone(),
            forwarded_for.clone(),
            self.config.access_log.clone(),
            Arc::clone(self.unknown_host_metrics()),
        );

        // One lookup, in one table, serves the rate limit and the forwarding.
        let site = target
            .as_ref()
            .ok()
            .and_then(|target| self.table.load().site(&target.host).cloned());
        let local = if client.https {
            None
        } else {
            self.answer_plain_http(&req, target.as_ref().ok())
        }
        .or_else(|| rate_limited(site.as_ref(), client));
        let mut response = match local {
            Some(Local::Challenge(key_authorization)) => challenge_response(key_authorization, log),
            Some(Local::Redirect(location)) => redirect_response(location, log),
            Some(Local::RateLimited(refusal)) => ratelimit::response(refusal, log),
            None => {
                let outcome = match target {
                    Ok(target) => {
                        let forwarding = Forwarding {
                            authority: &target.authority,
                            forwarded_for: &forwarded_for,
                            https: client.https,
                            port: &client.port,
                            request_id: &request_id,
                            received_at,
                            version: req.version(),
                        };
                        self.forward(req, &target, site, client, &forwarding, &mut log)
                            .await
                    }
                    Err(err) => Err(err),
                };
                match outcome {
                    Ok(relayed) => relay(relayed, log),
                    Err(err) => error_response(&err, &request_id, log),
                }
            }
        };
        response.headers_mut().insert(&X_REQUEST_ID, request_id);
        response
    }

    /// What plain HTTP answers without an app: ACME challenge fetches for any host, even an
    /// invalid one, then a redirect for hosts with a certificate when HTTPS is served.
    fn answer_plain_http<B>(&self, req: &Request<B>, target: Option<&Target>) -> Option<Local> {
        if let Some(token) = challenge::requested_token(req) {
            return Some(Local::Challenge(self.challenges.key_authorization(token)));
        }
        let port = self.config.https_port?;
        let target = target?;
        self.tls.resolver.table.load().find(&target.host)?;
        let path = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
        let location = if port == 443 {
            format!("https://{}{path}", target.host)
        } else {
            format!("https://{}:{port}{path}", target.host)
        };
        HeaderValue::try_from(location).ok().map(Local::Redirect)
    }

    /// `site`: the app the host is routed to, if any.
    async fn forward(
        &self,
        mut req: Request<Incoming>,
        target: &Target,
        site: Option<Arc<Site>>,
        peer: &Peer,
        forwarding: &Forwarding<'_>,
        log: &mut AccessLog,
    ) -> Result<Relayed, ProxyError> {
        let site = site.ok_or_else(|| ProxyError::UnknownHost {
            host: target.host.clone(),
        })?;
        log.site = Some(Arc::clone(&site));
        log.metrics = Arc::clone(site.metrics());
        if site.maintenance {
            return Err(ProxyError::Maintenance {
                app: site.app.clone(),
            });
        }
        // An announced body over the limit is refused before any app sees the request, and
        // before `Expect: 100-continue` is answered, so the client need not send it.
        let limit = self.config.max_body_bytes;
        if req.body().size_hint().lower() > limit {
            return Err(ProxyError::BodyTooLarge { limit });
        }

        let upgrade = headers::is_upgrade_request(&req);
        let client_upgrade = upgrade.then(|| {
            let slot = req.extensions_mut().remove::<Arc<Slot>>();
            (hyper::upgrade::on(&mut req), slot)
        });
        let (parts, body) = req.into_parts();
        let uri = upstream_uri(&parts.uri);
        let mut headers = parts.headers;
        headers::strip_hop_by_hop(&mut headers, upgrade);
        // The router's HTTP server answers `Expect: 100-continue` itself, when the body is
        // first read on its way upstream; the app gets the body without being asked.
        headers.remove(header::EXPECT);

        // A retry needs the whole request again; the router only keeps it when it is
        // headers alone and sending it twice is harmless.
        let replayable = !upgrade && is_idempotent(&parts.method) && body.is_end_stream();
        let retriable = replayable && site.backend_count() > 1;
        let mut body = (!replayable)
            .then(|| RequestBody::new(body, limit, site.metrics().request_bytes.clone()));
        let mut deadline =
            pin!(peer.request_timer(tokio::time::Instant::now() + self.config.request_timeout));
        let mut failed = None;
        loop {
            let picked = site
                .pick(failed, &headers)
                .ok_or_else(|| ProxyError::NoBackends {
                    app: site.app.clone(),
                })?;
            let addr = picked.backend.addr;
            log.dyno = Some(picked.backend.dyno.clone());

            let mut upstream = Request::new(match body.take() {
                Some(body) => Either::Left(body),
                None => Either::Right(Empty::new()),
            });
            *upstream.method_mut() = parts.method.clone();
            *upstream.uri_mut() = uri.clone();
            *upstream.version_mut() = Version::HTTP_11;
            // Copied only while a retry could still need them.
            *upstream.headers_mut() = if retriable && failed.is_none() {
                headers.clone()
            } else {
                std::mem::take(&mut headers)
            };
            let (mut in_flight, client) = (picked.in_flight, picked.client);
            let set_cookie = picked.set_cookie;

            let sent_at = Instant::now();
            log.sent_at = Some(sent_at);
            let sent = tokio::select! {
                biased;
                sent = client.send(upstream, Some(forwarding)) => Ok(sent),
                () = deadline.as_mut() => Err(()),
            };
            let sent = match sent {
                Ok(Ok(sent)) => sent,
                Ok(Err(failure)) => {
                    let err = ProxyError::from_send(addr, failure);
                    if matches!(
                        err,
                        ProxyError::Connect { .. } | ProxyError::Unanswered { .. }
                    ) {
                        site.connect_failed(addr);
                    }
                    if retriable && failed.is_none() && err.retry_safe() {
                        tracing::warn!(
                            app = %site.app,
                            error = %err.chain(),
                            "retrying on another backend"
                        );
                        failed = Some(addr);
                        continue;
                    }
                    return Err(err);
                }
                Err(()) => {
                    return Err(ProxyError::Timeout {
                        addr,
                        timeout: self.config.request_timeout,
                    });
                }
            };
            let Sent {
                mut response,
                connect,
            } = sent;
            log.connect = Some(connect);
            in_flight.answered(response.status());
            if let Some(cookie) = set_cookie {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            if response.status() == StatusCode::SWITCHING_PROTOCOLS && client_upgrade.is_none() {
                return Err(ProxyError::UnexpectedUpgrade { addr });
            }
            return Ok(Relayed {
                response,
                in_flight,
                client_upgrade,
            });
        }
    }
}

/// A refusal when the host's app has a rate limit and the client's bucket is empty.
fn rate_limited(site: Option<&Arc<Site>>, client: &Peer) -> Option<Local> {
    let site = site?;
    let limiter = site.limiter.as_ref()?;
    let retry_after = limiter.check(ratelimit::peer_ip(&client.ip)?).err()?;
    Some(Local::RateLimited(Refusal {
        site: Arc::clone(site),
        retry_after,
    }))
}

/// A request the router answers itself on plain HTTP.
enum Local {
    /// An ACME challenge fetch, with the key authorization when the token is pending.
    Challenge(Option<String>),
    /// `Location` of the HTTPS URL for the same request.
    Redirect(HeaderValue),
    /// 429: the client is over the app's rate limit.
    RateLimited(Refusal),
}

/// The key authorization, or 404 when no such challenge is pending: a stale token must fail
/// validation rather than reach an app that knows nothing about it.
fn challenge_response(
    key_authorization: Option<String>,
    mut log: AccessLog,
) -> Response<ResponseBody> {
    let (status, body) = match key_authorization {
        Some(key_authorization) => (StatusCode::OK, key_authorization),
        None => (
            StatusCode::NOT_FOUND,
            "no such challenge token\n".to_owned(),
        ),
    };
    log.status = status.as_u16();
    let mut response = Response::new(ResponseBody::page(Bytes::from(body), log));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 308 rather than 301 so a redirected POST stays a POST with its body.
fn redirect_response(location: HeaderValue, mut log: AccessLog) -> Response<ResponseBody> {
    let status = StatusCode::PERMANENT_REDIRECT;
    log.status = status.as_u16();
    let mut response = Response::new(ResponseBody::page(Bytes::new(), log));
    *response.status_mut() = status;
    response.headers_mut().insert(header::LOCATION, location);
    response
}

/// Methods whose repetition has the same effect as one request (RFC 9110 §9.2.2).
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// The request target in origin form (`/path?query`), as an HTTP/1.1 request to the app's
/// own server is written; `Host` carries the authority. An HTTP/1.1 request's target usually
/// is already in that form and is kept as it is.
fn upstream_uri(original: &Uri) -> Uri {
    if original.scheme().is_none() && original.authority().is_none() {
        return original.clone();
    }
    Uri::from(
        original
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    )
}

fn relay(relayed: Relayed, mut log: AccessLog) -> Response<ResponseBody> {
    let Relayed {
        mut response,
        in_flight,
        client_upgrade,
    } = relayed;
    log.status = response.status().as_u16();
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    // A switched connection belongs to the tunnel: it never goes back to the pool.
    let upgraded = switching
        .then(|| response.body_mut().take_upgrade())
        .flatten();
    let in_flight = match (client_upgrade, upgraded) {
        (Some((client_upgrade, slot)), Some(upgraded)) => {
            tokio::spawn(tunnel(client_upgrade, upgraded, in_flight, slot));
            None
        }
        _ => Some(in_flight),
    };
    let (mut parts, body) = response.into_parts();
    if !body.hop_by_hop_removed() {
        headers::strip_hop_by_hop(&mut parts.headers, switching);
    }
    Response::from_parts(parts, ResponseBody::upstream(body, log, in_flight))
}

/// Copies bytes both ways once both sides have switched protocols. The backend counts as busy,
/// and the client connection as open, until the tunnel closes.
/// Bytes the app sent right after its 101 head go to the client first.
async fn tunnel(
    client: OnUpgrade,
    upstream: Upgraded,
    in_flight: InFlight,
    slot: Option<Arc<Slot>>,
) {
    let _held = (in_flight, slot);
    let client = match client.await {
        Ok(client) => client,
        Err(err) => {
            tracing::debug!(error = %err, "protocol switch did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let Upgraded {
        mut stream,
        read_ahead,
    } = upstream;
    if let Err(err) = client.write_all(&read_ahead).await {
        tracing::debug!(error = %err, "upgraded connection closed with an error");
        return;
    }
    if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut stream).await {
        tracing::debug!(error = %err, "upgraded connection closed with an error");
    }
}

fn error_response(
    err: &ProxyError,
    request_id: &HeaderValue,
    mut log: AccessLog,
) -> Response<ResponseBody> {
    match err.origin() {
        ErrorOrigin::Client | ErrorOrigin::Operator => {
            tracing::debug!(error = %err.chain(), "request refused");
        }
        ErrorOrigin::Upstream => {
            let app = log.site.as_ref().map_or("", |site| site.app.as_str());
            tracing::warn!(app, error = %err.chain(), "request failed");
        }
    }
    let status = err.status();
    log.status = status.as_u16();
    log.error = Some((err.code(), err.description()));
    let page = pages::error_page(err, &String::from_utf8_lossy(request_id.as_bytes()));
    let mut response = Response::new(ResponseBody::page(page, log));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if matches!(err, ProxyError::Maintenance { .. }) {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(MAINTENANCE_RETRY_AFTER_SECS),
        );
    }
    response
}

/// What the maintenance page tells clients and crawlers: come back in a minute, the page is
/// temporary.
const MAINTENANCE_RETRY_AFTER_SECS: u32 = 60;
