//! `static.json`: how the `static` buildpack's server serves a site. The format follows
//! Heroku's static buildpack (`root`, `clean_urls`, `routes`, `headers`, `redirects`,
//! `error_page`). The builder checks it before the build starts, so a typo fails the push
//! naming the field, and hands the server a normalised copy.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Component, Path};

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// Where the `static` buildpack finds the normalised config in the build container.
pub(crate) const SITE_CONFIG_PATH: &str = "buildpacks/static/site.json";

/// A checked `static.json`, as the server reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaticSite {
    /// Folder served, relative to the app (`.` when not set).
    pub root: String,
    /// `/about` serves `about.html`.
    pub clean_urls: bool,
    /// `(pattern, file)`: a request matching no file but `pattern` is answered with `file`
    /// (relative to `root`), first match wins. `/**` → `index.html` makes a single-page app.
    pub routes: Vec<(String, String)>,
    /// `(pattern, headers)`: extra response headers for paths matching `pattern`.
    pub headers: Vec<(String, Vec<(String, String)>)>,
    /// `(path, url, status)`.
    pub redirects: Vec<(String, String, u16)>,
    /// File (relative to `root`) answering a 404.
    pub error_page: Option<String>,
}

/// Without a `static.json`: the app's folder as it is.
impl Default for StaticSite {
    fn default() -> Self {
        Self {
            root: ".".to_owned(),
            clean_urls: false,
            routes: Vec::new(),
            headers: Vec::new(),
            redirects: Vec::new(),
            error_page: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    root: Option<String>,
    #[serde(default)]
    clean_urls: bool,
    #[serde(default)]
    routes: Ordered<String>,
    #[serde(default)]
    headers: Ordered<Ordered<String>>,
    #[serde(default)]
    redirects: Ordered<RawRedirect>,
    error_page: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedirect {
    url: String,
    #[serde(default = "default_redirect_status")]
    status: u16,
}

fn default_redirect_status() -> u16 {
    301
}

/// A JSON object read in document order: the first matching route wins, so order matters.
struct Ordered<T>(Vec<(String, T)>);

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for OrderedVisitor<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        deserializer.deserialize_map(OrderedVisitor(PhantomData))
    }
}

impl StaticSite {
    /// Parses and checks a `static.json`; the error names the field at fault.
    pub fn parse(json: &str) -> Result<StaticSite, String> {
        let raw: RawSite = serde_json::from_str(json).map_err(|error| error.to_string())?;
        let root = match raw.root {
            Some(root) => relative("root", root.trim_end_matches('/'))?,
            None => ".".to_owned(),
        };
        let routes = raw
            .routes
            .0
            .into_iter()
            .map(|(pattern, file)| {
                Ok((
                    pattern_field("routes", pattern)?,
                    relative(&format!("routes file for `{file}`"), &file)?,
                ))
            })
            .collect::<Result<_, String>>()?;
        let headers = raw
            .headers
            .0
            .into_iter()
            .map(|(pattern, headers)| {
                let pattern = pattern_field("headers", pattern)?;
                let headers = headers
                    .0
                    .into_iter()
                    .map(|(name, value)| {
                        let token = !name.is_empty()
                            && name.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
                            });
                        if !token {
                            return Err(format!("headers: `{name}` is not a header name"));
                        }
                        if value.chars().any(char::is_control) {
                            return Err(format!(
                                "headers: the value of `{name}` has a control character"
                            ));
                        }
                        Ok((name, value))
                    })
                    .collect::<Result<_, String>>()?;
                Ok((pattern, headers))
            })
            .collect::<Result<_, String>>()?;
        let redirects = raw
            .redirects
            .0
            .into_iter()
            .map(|(path, redirect)| {
                let path = pattern_field("redirects", path)?;
                if ![301, 302, 303, 307, 308].contains(&redirect.status) {
                    return Err(format!(
                        "redirects: status {} of `{path}` is not a redirect (301, 302, 303, 307, 308)",
                        redirect.status
                    ));
                }
                if redirect.url.is_empty() || redirect.url.chars().any(char::is_control) {
                    return Err(format!("redirects: the url of `{path}` is empty or has a control character"));
                }
                Ok((path, redirect.url, redirect.status))
            })
            .collect::<Result<_, String>>()?;
        let error_page = raw
            .error_page
            .map(|page| relative("error_page", &page))
            .transpose()?;
        Ok(StaticSite {
            root,
            clean_urls: raw.clean_urls,
            routes,
            headers,
            redirects,
            error_page,
        })
    }

    /// The normalised config the server reads.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// A path inside the app: relative, without `..`.
fn relative(field: &str, path: &str) -> Result<String, String> {
    let inside = !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if inside {
        Ok(path.to_owned())
    } else {
        Err(format!(
            "{field}: `{path}` must be a relative path inside the app"
        ))
    }
}

/// A URL path pattern: starts with `/`; `*` matches within a segment, `**` across segments.
fn pattern_field(field: &str, pattern: String) -> Result<String, String> {
    if pattern.starts_with('/') && !pattern.chars().any(char::is_whitespace) {
        Ok(pattern)
    } else {
        Err(format!(
            "{field}: `{pattern}` must be a URL path starting with `/`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_page_app_config_keeps_its_order() {
        let site = StaticSite::parse(
            r#"{
              "root": "dist/",
              "clean_urls": true,
              "routes": { "/api/**": "api.html", "/**": "index.html" },
              "headers": { "/assets/**": { "Cache-Control": "public, max-age=31536000", "X-Frame-Options": "DENY" } },
              "redirects": { "/old": { "url": "/new" }, "/gone": { "url": "https://example.com/", "status": 302 } },
              "error_page": "404.html"
            }"#,
        )
        .unwrap();
        assert_eq!(site.root, "dist");
        assert!(site.clean_urls);
        assert_eq!(
            site.routes,
            [
                ("/api/**".to_owned(), "api.html".to_owned()),
                ("/**".to_owned(), "index.html".to_owned())
            ]
        );
        assert_eq!(site.headers[0].0, "/assets/**");
        assert_eq!(
            site.headers[0].1,
            [
                (
                    "Cache-Control".to_owned(),
                    "public, max-age=31536000".to_owned()
                ),
                ("X-Frame-Options".to_owned(), "DENY".to_owned())
            ]
        );
        assert_eq!(
            site.redirects,
            [
                ("/old".to_owned(), "/new".to_owned(), 301),
                ("/gone".to_owned(), "https://example.com/".to_owned(), 302)
            ]
        );
        assert_eq!(site.error_page.as_deref(), Some("404.html"));
        let json: serde_json::Value = serde_json::from_str(&site.to_json()).unwrap();
        assert_eq!(json["routes"][1][1], "index.html");
        assert_eq!(json["redirects"][1][2], 302);
    }

    #[test]
    fn an_empty_config_serves_the_app_folder() {
        let site = StaticSite::parse("{}").unwrap();
        assert_eq!(site, StaticSite::default());
        assert_eq!(site.root, ".");
    }

    #[test]
    fn mistakes_name_the_field() {
        for (json, expected) in [
            (r#"{"root": "../etc"}"#, "root: `../etc`"),
            (r#"{"root": "/srv"}"#, "root: `/srv`"),
            (r#"{"routes": {"**": "index.html"}}"#, "routes: `**`"),
            (r#"{"routes": {"/**": "../x.html"}}"#, "`../x.html`"),
            (
                r#"{"headers": {"/*": {"Bad Name": "x"}}}"#,
                "`Bad Name` is not a header name",
            ),
            (
                r#"{"redirects": {"/a": {"url": "/b", "status": 200}}}"#,
                "status 200",
            ),
            (r#"{"clean_url": true}"#, "unknown field `clean_url`"),
            (r#"{"root": 3}"#, "invalid type"),
        ] {
            let error = StaticSite::parse(json).unwrap_err();
            assert!(error.contains(expected), "{json}: {error}");
        }
    }
}
