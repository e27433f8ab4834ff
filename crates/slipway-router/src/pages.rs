//! The small HTML pages the router answers with when it cannot relay an app's response. They
//! name the problem and the request id, never an internal address.

use bytes::Bytes;

use crate::error::ProxyError;

pub(crate) fn error_page(err: &ProxyError, request_id: &str) -> Bytes {
    let message = match err {
        ProxyError::MissingHost => "The request does not name a host.".to_owned(),
        ProxyError::InvalidHost { host } => {
            format!("<code>{}</code> is not a valid host name.", escape(host))
        }
        ProxyError::UnknownHost { host } => {
            format!("No app is configured for <code>{}</code>.", escape(host))
        }
        ProxyError::BodyTooLarge { limit } => {
            format!("The request body is larger than the {limit}-byte limit.")
        }
        ProxyError::ClientAborted { .. } => {
            "The request body was not received completely.".to_owned()
        }
        ProxyError::Maintenance { .. } => {
            "This app is down for maintenance. Please try again shortly.".to_owned()
        }
        ProxyError::NoBackends { .. } => "No web processes are running for this app.".to_owned(),
        ProxyError::Connect { .. } | ProxyError::Unanswered { .. } => {
            "The app could not be reached.".to_owned()
        }
        ProxyError::Upstream { .. } | ProxyError::UnexpectedUpgrade { .. } => {
            "The app did not send a valid response.".to_owned()
        }
        ProxyError::Timeout { .. } => "The app did not respond in time.".to_owned(),
    };
    let status = err.status();
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    );
    Bytes::from(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{message}</p><p><small>Request ID: <code>{}</code></small></p>\
         </body></html>\n",
        escape(request_id)
    ))
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_host_page_escapes_the_host() {
        let page = error_page(
            &ProxyError::UnknownHost {
                host: "<script>.example.com".to_owned(),
            },
            "abc",
        );
        let page = std::str::from_utf8(&page).expect("utf-8");
        assert!(page.contains("<title>404 Not Found</title>"));
        assert!(page.contains("No app is configured for <code>&lt;script&gt;.example.com</code>"));
        assert!(!page.contains("<script>"));
    }

    #[test]
    fn maintenance_page_says_so() {
        let page = error_page(
            &ProxyError::Maintenance {
                app: "demo".parse().expect("app name"),
            },
            "abc",
        );
        let page = std::str::from_utf8(&page).expect("utf-8");
        assert!(page.contains("<title>503 Service Unavailable</title>"));
        assert!(page.contains("down for maintenance"));
    }
}
