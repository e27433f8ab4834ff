//! Signing in and out of the dashboard, the session cookie, CSRF tokens, and what a page
//! answers when the authorization layer refuses it.
//!
//! The session cookie holds an API token issued by the same code as `POST /v1/login` (a store
//! row backs it, so signing out revokes it at once). A form's CSRF token is an HMAC keyed by
//! that token: a page of ours can show it, another site cannot compute it, and it dies with the
//! session. The sign-in form, which has no session yet, uses a double-submit cookie instead.

use std::net::SocketAddr;

use askama::Template;
use aws_lc_rs::hmac;
use axum::Form;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, FromRequest, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use slipway_types::api::LoginRequest;

use super::{Layout, PageError, PageResult, Session, cookie, render, see_other};
use crate::app::AppState;
use crate::controllers::sessions;
use crate::error::ApiError;
use crate::extract::ApiJson;

pub const SESSION_COOKIE: &str = "slipway_session";
const LOGIN_CSRF_COOKIE: &str = "slipway_login_csrf";
/// The form field and the header (for scripts) that carry the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The largest form body read to find its CSRF token or keep it across a sign-in.
const MAX_FORM_BYTES: usize = 1 << 20;
/// As long as the token a password login issues.
const SESSION_MAX_AGE: i64 = 30 * 24 * 3600;

/// The session token a browser sent, if any.
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE)
}

/// The CSRF token of the session whose token is `session`.
pub fn csrf_token(session: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, session.as_bytes());
    hex::encode(hmac::sign(&key, b"slipway dashboard csrf v1"))
}

fn csrf_matches(session: &str, sent: &str) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, session.as_bytes());
    hex::decode(sent)
        .is_ok_and(|tag| hmac::verify(&key, b"slipway dashboard csrf v1", &tag).is_ok())
}

/// Checks the CSRF token of a form signed in by cookie (in the `x-csrf-token` header or the
/// `csrf` field) and hands the body back for the handler; a missing or wrong token is a 403
/// page.
pub async fn check_csrf(parts: &Parts, body: Body) -> Result<Body, Response> {
    let refuse = |message: &str| PageError::new(StatusCode::FORBIDDEN, message).into_response();
    let Some(session) = session_token(&parts.headers) else {
        return Err(refuse("this form carries no session: sign in again"));
    };
    let header = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok());
    if header.is_some_and(|sent| csrf_matches(session, sent)) {
        return Ok(body);
    }
    let bytes = to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| refuse("the form is too large"))?;
    let sent = form_fields(&parts.headers, bytes.clone())
        .await
        .into_iter()
        .find(|(key, _)| key == CSRF_FIELD)
        .map(|(_, value)| value);
    match sent {
        Some(sent) if csrf_matches(session, &sent) => Ok(Body::from(bytes)),
        Some(_) => Err(refuse(
            "the form's CSRF token is wrong: reload the page and submit it again",
        )),
        None => Err(refuse(
            "the form carries no CSRF token: submit it from the dashboard's own page",
        )),
    }
}

/// The fields of an urlencoded form body, in order; anything else has none.
async fn form_fields(headers: &HeaderMap, bytes: axum::body::Bytes) -> Vec<(String, String)> {
    let mut request = Request::new(Body::from(bytes));
    // A GET form is read from the query; this is the body of a POST.
    *request.method_mut() = Method::POST;
    if let Some(kind) = headers.get(header::CONTENT_TYPE) {
        request
            .headers_mut()
            .insert(header::CONTENT_TYPE, kind.clone());
    }
    Form::<Vec<(String, String)>>::from_request(request, &())
        .await
        .map(|Form(fields)| fields)
        .unwrap_or_default()
}

/// The page for a request the authorization layer refused. Not signed in: a read goes to the
/// sign-in page and comes back after; a form is kept, shown again after sign-in to submit
/// again. An app that is not the caller's (or not there) is a 403, whatever the JSON API says,
/// so a page never tells the two apart. Anything else: an error page with the refusal.
pub async fn refused(error: ApiError, parts: &Parts, body: Body) -> Response {
    let error = PageError::from(error);
    match error.status {
        StatusCode::UNAUTHORIZED if matches!(parts.method, Method::GET | Method::HEAD) => {
            let here = parts.uri.path_and_query().map_or("/", |path| path.as_str());
            let mut response = see_other(&format!("/login?next={}", encode(here)));
            if session_token(&parts.headers).is_some() {
                clear_session(response.headers_mut());
            }
            response
        }
        StatusCode::UNAUTHORIZED => {
            let bytes = to_bytes(body, MAX_FORM_BYTES).await.unwrap_or_default();
            let fields: Vec<(String, String)> = form_fields(&parts.headers, bytes)
                .await
                .into_iter()
                .filter(|(key, _)| key != CSRF_FIELD)
                .collect();
            let resume = Resume {
                action: parts.uri.path().to_owned(),
                fields: serde_json::to_string(&fields).unwrap_or_default(),
            };
            let page = LoginPage {
                layout: Layout::anonymous("Sign in"),
                csrf: login_csrf(&parts.headers),
                next: parts.uri.path().to_owned(),
                email: String::new(),
                error: Some(
                    "your session has expired: sign in again, and your change will be shown to submit again"
                        .to_owned(),
                ),
                resume: Some(resume),
            };
            let mut response = render(StatusCode::UNAUTHORIZED, &page);
            set_login_csrf(response.headers_mut(), &page.csrf);
            clear_session(response.headers_mut());
            response
        }
        StatusCode::NOT_FOUND => PageError::new(
            StatusCode::FORBIDDEN,
            "this app is not yours or not there: your apps are listed on the Apps page",
        )
        .into_response(),
        _ => error.into_response(),
    }
}

/// A form refused for want of a session, kept to be submitted again after sign-in.
pub struct Resume {
    /// Where the form was posted.
    pub action: String,
    /// Its fields but the CSRF token, as JSON pairs.
    pub fields: String,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    csrf: String,
    next: String,
    email: String,
    error: Option<String>,
    resume: Option<Resume>,
}

#[derive(Template)]
#[template(path = "resume.html")]
struct ResumePage {
    layout: Layout,
    action: String,
    fields: Vec<(String, String)>,
}

#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn login_form(headers: HeaderMap, Query(query): Query<NextQuery>) -> Response {
    let page = LoginPage {
        layout: Layout::anonymous("Sign in"),
        csrf: login_csrf(&headers),
        next: safe_next(query.next.as_deref()).to_owned(),
        email: String::new(),
        error: None,
        resume: None,
    };
    let mut response = render(StatusCode::OK, &page);
    set_login_csrf(response.headers_mut(), &page.csrf);
    response
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    resume_action: String,
    #[serde(default)]
    resume_fields: String,
}

/// Signs in through `POST /v1/login`'s own code (same checks, limits and audit), then sets
/// the session cookie.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> PageResult {
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE);
    if form.csrf.is_empty() || expected != Some(form.csrf.as_str()) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "the sign-in form's CSRF token is missing or wrong: reload the sign-in page and try again",
        ));
    }
    let resume = (!form.resume_action.is_empty()).then(|| Resume {
        action: safe_next(Some(&form.resume_action)).to_owned(),
        fields: form.resume_fields.clone(),
    });
    let request = LoginRequest {
        email: form.email.clone(),
        password: form.password,
    };
    let issued = match sessions::login(State(state), ConnectInfo(peer), ApiJson(request)).await {
        Ok((_, axum::Json(issued))) => issued,
        Err(error) => {
            let error = PageError::from(error);
            let page = LoginPage {
                layout: Layout::anonymous("Sign in"),
                csrf: form.csrf,
                next: safe_next(Some(&form.next)).to_owned(),
                email: form.email,
                error: Some(error.message),
                resume,
            };
            return Ok(render(error.status, &page));
        }
    };
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto == "https");
    let mut response = match resume {
        Some(resume) => {
            let fields = serde_json::from_str(&resume.fields).unwrap_or_default();
            let page = ResumePage {
                layout: Layout {
                    csrf: csrf_token(&issued.token),
                    ..Layout::anonymous("Submit again")
                },
                action: resume.action,
                fields,
            };
            render(StatusCode::OK, &page)
        }
        None => see_other(safe_next(Some(&form.next))),
    };
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={SESSION_MAX_AGE}{}",
        issued.token,
        if secure { "; Secure" } else { "" }
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Revokes the session's token through `POST /v1/logout`'s own code and forgets the cookie.
pub async fn logout(State(state): State<AppState>, session: Session) -> PageResult {
    sessions::logout(State(state), session.caller).await?;
    let mut response = see_other("/login");
    clear_session(response.headers_mut());
    Ok(response)
}

fn clear_session(headers: &mut HeaderMap) {
    headers.append(
        header::SET_COOKIE,
        HeaderValue::from_static("slipway_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
}

/// The sign-in form's double-submit token: the browser's, else a new one.
fn login_csrf(headers: &HeaderMap) -> String {
    cookie(headers, LOGIN_CSRF_COOKIE)
        .filter(|value| value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit()))
        .map_or_else(|| hex::encode(rand::random::<[u8; 16]>()), str::to_owned)
}

fn set_login_csrf(headers: &mut HeaderMap, token: &str) {
    let cookie = format!("{LOGIN_CSRF_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.append(header::SET_COOKIE, value);
    }
}

/// Where to go after signing in: a path on this server, never another site.
fn safe_next(next: Option<&str>) -> &str {
    next.filter(|next| {
        next.starts_with('/')
            && !next.starts_with("//")
            && !next.contains('\\')
            && !next.chars().any(char::is_control)
    })
    .unwrap_or("/")
}

/// Percent-encodes a query parameter's value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csrf_token_belongs_to_one_session() {
        let token = csrf_token("session-a");
        assert!(csrf_matches("session-a", &token));
        assert!(!csrf_matches("session-b", &token));
        assert!(!csrf_matches("session-a", ""));
        assert!(!csrf_matches("session-a", "not hex"));
    }

    #[test]
    fn sign_in_only_sends_people_back_to_this_server() {
        assert_eq!(safe_next(Some("/apps/web?tab=1")), "/apps/web?tab=1");
        for bad in ["//evil.test/", "https://evil.test/", "/\\evil", "", "apps"] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn next_is_encoded_as_one_query_value() {
        assert_eq!(
            encode("/apps/x/logs?source=app&p=a b"),
            "/apps/x/logs%3Fsource%3Dapp%26p%3Da%20b"
        );
    }
}
