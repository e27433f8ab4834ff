//! ACME HTTP-01 answers. The CA fetches `http://<domain>/.well-known/acme-challenge/<token>`
//! before the domain has a certificate and before its DNS may even point at an app, so the
//! router answers these itself for any host, ahead of routing and of the HTTPS redirect.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use http::{Method, Request};

const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Tokens the control plane is currently proving, each with its key authorization.
#[derive(Default)]
pub(crate) struct Challenges {
    tokens: RwLock<HashMap<String, String>>,
}

impl Challenges {
    pub(crate) fn set(&self, token: String, key_authorization: String) {
        self.tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token, key_authorization);
    }

    pub(crate) fn remove(&self, token: &str) {
        self.tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
    }

    pub(crate) fn key_authorization(&self, token: &str) -> Option<String> {
        self.tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }
}

/// The token a request asks for, when it is a challenge fetch (`GET` or `HEAD`, no sub-path).
pub(crate) fn requested_token<B>(req: &Request<B>) -> Option<&str> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return None;
    }
    req.uri()
        .path()
        .strip_prefix(CHALLENGE_PREFIX)
        .filter(|token| !token.is_empty() && !token.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).expect("request")
    }

    #[test]
    fn only_challenge_fetches_carry_a_token() {
        assert_eq!(
            requested_token(&get("/.well-known/acme-challenge/abc_-1?x=1")),
            Some("abc_-1")
        );
        assert_eq!(requested_token(&get("/.well-known/acme-challenge/")), None);
        assert_eq!(
            requested_token(&get("/.well-known/acme-challenge/a/b")),
            None
        );
        assert_eq!(requested_token(&get("/other")), None);
        let post = Request::post("/.well-known/acme-challenge/abc")
            .body(())
            .expect("request");
        assert_eq!(requested_token(&post), None);
    }
}
