//! The web dashboard: server-rendered pages (askama templates, compiled in) over the same
//! controllers the JSON API runs, so a page can do exactly what the API lets its user do.
//! Every page and form is a route in `router.rs` marked `.page()`: the authorization layer
//! signs it in by the session cookie, applies the route's rule, checks the CSRF token of
//! every form and answers refusals with HTML (see [`refused`]).

pub mod addons;
pub mod admin;
pub mod apps;
pub mod assets;
pub mod config;
pub mod domains;
pub mod graphs;
pub mod logs;
pub mod pipelines;
pub mod releases;
pub mod scaling;
pub mod session;

use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

pub use session::{check_csrf, refused, session_token};

/// What every page shows around its content: who is signed in, and the CSRF token its forms
/// carry.
pub struct Layout {
    pub title: String,
    /// `None` on pages shown before sign-in.
    pub email: Option<String>,
    pub admin: bool,
    pub csrf: String,
}

impl Layout {
    /// The layout of a page shown to nobody in particular (sign-in, refusals).
    pub fn anonymous(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            email: None,
            admin: false,
            csrf: String::new(),
        }
    }
}

/// The signed-in user of a page and the CSRF token of their session.
pub struct Session {
    pub caller: Caller,
    pub csrf: String,
}

impl Session {
    pub fn layout(&self, title: impl Into<String>) -> Layout {
        Layout {
            title: title.into(),
            email: Some(self.caller.user.email.clone()),
            admin: self.caller.is_admin(),
            csrf: self.csrf.clone(),
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let csrf = session_token(&parts.headers)
            .map(session::csrf_token)
            .unwrap_or_default();
        Ok(Self { caller, csrf })
    }
}

/// An error shown as a page: the API's message with its status.
pub struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        let message = error.message().to_owned();
        let status = error.into_response().status();
        Self { status, message }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    status: u16,
    reason: &'a str,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let reason = self.status.canonical_reason().unwrap_or("Error");
        let page = ErrorPage {
            layout: Layout::anonymous(format!("{} {reason}", self.status.as_u16())),
            status: self.status.as_u16(),
            reason,
            message: &self.message,
        };
        render(self.status, &page)
    }
}

pub type PageResult = Result<Response, PageError>;

/// A rendered template with its status; a template that fails to render (it cannot, short
/// of a bug in a value's `Display`) is a logged 500.
pub fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => ApiError::internal(error).into_response(),
    }
}

pub fn ok(template: &impl Template) -> PageResult {
    Ok(render(StatusCode::OK, template))
}

/// `303 See Other` to `location`, the answer to a form that worked.
pub fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// The status and message of a refused form, shown inline beside it.
pub fn inline(error: ApiError) -> (StatusCode, String) {
    let error = PageError::from(error);
    (error.status, error.message)
}

/// `2026-11-22 03:04 UTC`: short, and the same for every viewer.
pub fn when(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

/// An RFC 3339 time for `<time datetime>`.
pub fn machine_time(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// The tabs of an app's pages, in order: (path under `/apps/{app}`, label).
pub const APP_TABS: [(&str, &str); 8] = [
    ("", "Overview"),
    ("/releases", "Releases"),
    ("/config", "Config vars"),
    ("/scaling", "Scaling"),
    ("/domains", "Domains"),
    ("/addons", "Add-ons"),
    ("/logs", "Logs"),
    ("/builds", "Builds"),
];

/// What an app page needs for its header and tabs.
pub struct AppNav {
    pub name: String,
    /// The path of the tab shown, from [`APP_TABS`].
    pub tab: &'static str,
}

impl AppNav {
    pub fn new(name: &str, tab: &'static str) -> Self {
        Self {
            name: name.to_owned(),
            tab,
        }
    }

    pub fn tabs(&self) -> &'static [(&'static str, &'static str)] {
        &APP_TABS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name_across_headers() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1; slipway_session_x=no".parse().unwrap());
        headers.append(header::COOKIE, "slipway_session=tok; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, "slipway_session"), Some("tok"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
