//! Header rules: which host a request is for, the request id, the `X-Forwarded-*` family, and
//! the hop-by-hop headers that describe one connection and must not cross the proxy.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Request, Version};

use crate::error::ProxyError;

pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The authority a request is addressed to (`Example.com:8080`) and the lowercase host name
/// without port or trailing dot that the route table is keyed by.
pub(crate) struct Target {
    pub(crate) authority: HeaderValue,
    pub(crate) host: String,
}

/// HTTP/2 carries the host in `:authority`, HTTP/1.1 in `Host`; an absolute-form request line
/// overrides `Host` (RFC 9112 §3.2.2).
pub(crate) fn target<B>(req: &Request<B>) -> Result<Target, ProxyError> {
    let authority = match req.uri().authority() {
        Some(authority) => ascii_value(authority.as_str().to_owned()),
        None => req
            .headers()
            .get(header::HOST)
            .cloned()
            .ok_or(ProxyError::MissingHost)?,
    };
    // The usual case, a lowercase name without port or trailing dot, needs no parsing: such
    // bytes always make a valid authority, and its host is the whole of it.
    let plain = authority.as_bytes();
    if plain.last().is_some_and(|last| *last != b'.')
        && plain
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
    {
        let host = String::from_utf8(plain.to_vec()).expect("checked to be ASCII");
        return Ok(Target { authority, host });
    }
    let invalid = || ProxyError::InvalidHost {
        host: String::from_utf8_lossy(authority.as_bytes()).into_owned(),
    };
    let parsed = Authority::try_from(authority.as_bytes()).map_err(|_| invalid())?;
    let host = parsed.host().trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return Err(invalid());
    }
    Ok(Target { authority, host })
}

/// Keeps the client's id when it looks like one (20–200 characters of `[A-Za-z0-9+/=-]`, the
/// same rule as Heroku's) so a request can be traced across services; otherwise makes a new one.
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(&X_REQUEST_ID)
        .filter(|value| is_valid_request_id(value.as_bytes()))
        .cloned()
        .unwrap_or_else(new_request_id)
}

/// A UUIDv7: the time in milliseconds, then 74 random bits. `Uuid::now_v7` asks the kernel
/// for its random bits on every call (a `getrandom` system call, 1.5 per request on average,
/// as many as the request's own socket reads); an id only has to be unique, not secret, so
/// they come from a per-thread generator seeded once by the standard library's own random
/// hash keys.
fn new_request_id() -> HeaderValue {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let random = ID_RANDOM.with(|state| {
        let (high, low) = (splitmix64(state), splitmix64(state));
        (u128::from(high) << 64 | u128::from(low)).to_le_bytes()
    });
    let mut bits = [0; 10];
    bits.copy_from_slice(&random[..10]);
    let id =
        uuid::Builder::from_unix_timestamp_millis(u64::try_from(millis).unwrap_or(u64::MAX), &bits)
            .into_uuid();
    let mut text = uuid::Uuid::encode_buffer();
    let id = id.hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(id).expect("a UUID is a valid header value")
}

thread_local! {
    static ID_RANDOM: Cell<u64> = Cell::new(RandomState::new().build_hasher().finish());
}

/// One step of SplitMix64: a full-period generator whose outputs pass statistical tests,
/// plenty for ids that must not collide.
fn splitmix64(state: &Cell<u64>) -> u64 {
    let next = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
    state.set(next);
    let mut z = next;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn is_valid_request_id(id: &[u8]) -> bool {
    (20..=200).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-'))
}

/// The client's `X-Forwarded-For` chain with the connecting address (`client`, as text)
/// appended.
pub(crate) fn forwarded_for(headers: &HeaderMap, client: &HeaderValue) -> HeaderValue {
    let mut chain = String::new();
    for value in headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
    {
        chain.push_str(value);
        chain.push_str(", ");
    }
    if chain.is_empty() {
        return client.clone();
    }
    chain.push_str(client.to_str().unwrap_or_default());
    ascii_value(chain)
}

/// A request asking to switch protocols (WebSocket): `Connection: upgrade` plus `Upgrade`.
/// Only HTTP/1.1 can do this; HTTP/2 forbids both headers.
pub(crate) fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_tokens(req.headers()).any(|token| token.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// Removes the headers that belong to one connection (RFC 9110 §7.6.1) and those the
/// `Connection` header names. When `upgrade` is set the switch itself must reach the other side,
/// so `Connection: upgrade` and `Upgrade` are kept.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none, or only `Connection: keep-alive` (most apps' responses): one
    // pass over the names finds which are there, and only those are looked up and removed.
    let mut present = [false; HOP_BY_HOP.len()];
    let mut proxy = false;
    for name in headers.keys() {
        let name = name.as_str();
        match hop_by_hop_index(name) {
            Some(index) => present[index] = true,
            None => proxy |= name.starts_with("proxy-"),
        }
    }
    if !proxy && !present.contains(&true) {
        return;
    }
    // `Connection: keep-alive` or `close`, as most messages say, names no other header: the
    // tokens are only collected when one of them could.
    let named: Vec<HeaderName> =
        if present[0] && !connection_tokens(headers).all(names_no_other_header) {
            connection_tokens(headers)
                .filter(|token| !names_no_other_header(token))
                .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
                .collect()
        } else {
            Vec::new()
        };
    let upgrade_to = if upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    for name in named {
        headers.remove(name);
    }
    for (name, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            headers.remove(name);
        }
    }
    if proxy {
        let proxy_headers: Vec<HeaderName> = headers
            .keys()
            .filter(|name| name.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for name in proxy_headers {
            headers.remove(name);
        }
    }
    if let Some(protocol) = upgrade_to {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
}

/// `Connection` tokens that are options rather than header names, or name a header that is
/// dropped anyway (`keep-alive`, `upgrade`).
fn names_no_other_header(token: &str) -> bool {
    token.eq_ignore_ascii_case("keep-alive")
        || token.eq_ignore_ascii_case("close")
        || token.eq_ignore_ascii_case("upgrade")
}

/// The headers dropped whatever `Connection` says, `Connection` first. Any header `Connection`
/// names is only there if `Connection` is.
static HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The position of `name` in [`HOP_BY_HOP`]: a `match` on the text compiles to a switch on
/// its length, where comparing with each [`HeaderName`] in turn made stripping a third dearer.
fn hop_by_hop_index(name: &str) -> Option<usize> {
    match name {
        "connection" => Some(0),
        "keep-alive" => Some(1),
        "te" => Some(2),
        "trailer" => Some(3),
        "transfer-encoding" => Some(4),
        "upgrade" => Some(5),
        _ => None,
    }
}

/// Whether [`strip_hop_by_hop`] drops `name` whatever `Connection` says.
#[cfg(feature = "fuzzing")]
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name.as_str().starts_with("proxy-")
}

/// What the app is told about the original request.
pub(crate) struct Forwarding<'a> {
    pub(crate) authority: &'a HeaderValue,
    pub(crate) forwarded_for: &'a HeaderValue,
    pub(crate) https: bool,
    pub(crate) port: &'a HeaderValue,
    pub(crate) request_id: &'a HeaderValue,
    pub(crate) received_at: SystemTime,
    pub(crate) version: Version,
}

impl Forwarding<'_> {
    /// Whether the client's `name` header gives way to one of these: all of them but `Via`,
    /// which is a chain and gets the router's hop after the client's.
    pub(crate) fn replaces(name: &HeaderName) -> bool {
        name == header::HOST
            || matches!(
                name.as_str(),
                "x-forwarded-for"
                    | "x-forwarded-proto"
                    | "x-forwarded-port"
                    | "x-request-id"
                    | "x-request-start"
            )
    }

    /// Writes the forwarding headers as HTTP/1.1 header lines, to follow the client's headers
    /// less those [`Forwarding::replaces`]. Written straight into the request head, they cost
    /// a few copies where inserting them into the header map cost about 2,500 instructions.
    pub(crate) fn write_lines(&self, buf: &mut Vec<u8>) {
        let millis = u64::try_from(
            self.received_at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        )
        .unwrap_or(u64::MAX);
        let proto: &[u8] = if self.https { b"https" } else { b"http" };
        let mut start = [0; 22];
        for (name, value) in [
            ("host", self.authority.as_bytes()),
            ("x-forwarded-for", self.forwarded_for.as_bytes()),
            ("x-forwarded-proto", proto),
            ("x-forwarded-port", self.port.as_bytes()),
            ("x-request-id", self.request_id.as_bytes()),
            ("x-request-start", request_start(millis, &mut start)),
            ("via", via(self.version).as_bytes()),
        ] {
            buf.extend_from_slice(name.as_bytes());
            buf.extend_from_slice(b": ");
            buf.extend_from_slice(value);
            buf.extend_from_slice(b"\r\n");
        }
    }
}

/// `t=` and the milliseconds, written into `text` by hand: `format!` on the `u128` that
/// `as_millis` gives cost about 1,200 instructions per request.
fn request_start(millis: u64, text: &mut [u8; 22]) -> &[u8] {
    let mut start = text.len();
    let mut rest = millis;
    loop {
        start -= 1;
        text[start] = b'0' + u8::try_from(rest % 10).expect("a digit");
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    start -= 2;
    text[start..start + 2].copy_from_slice(b"t=");
    &text[start..]
}

/// `Via` names the protocol the router received (RFC 9110 §7.6.3).
fn via(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9 slipway",
        Version::HTTP_10 => "1.0 slipway",
        Version::HTTP_2 => "2 slipway",
        Version::HTTP_3 => "3 slipway",
        _ => "1.1 slipway",
    }
}

/// For values built only from visible ASCII (ids, numbers, IP addresses and header values that
/// already passed `to_str`), which are always valid header values.
fn ascii_value(value: String) -> HeaderValue {
    HeaderValue::try_from(value).expect("visible ASCII is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_rule() {
        assert!(is_valid_request_id(b"abcdefghij0123456789"));
        assert!(is_valid_request_id(b"A+/=-A+/=-A+/=-A+/=-"));
        assert!(is_valid_request_id(&[b'a'; 200]));
        assert!(!is_valid_request_id(b"abcdefghij012345678"), "19 chars");
        assert!(!is_valid_request_id(&[b'a'; 201]));
        assert!(!is_valid_request_id(b"abcdefghij0123456789_"), "underscore");
        assert!(!is_valid_request_id(b"abcdefghij 0123456789"), "space");
    }

    #[test]
    fn request_id_is_kept_or_generated() {
        let mut headers = HeaderMap::new();
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("short"));
        let generated = request_id(&headers);
        assert_ne!(generated, "short");
        assert!(is_valid_request_id(generated.as_bytes()));

        let other = request_id(&headers);
        assert_ne!(generated, other, "ids are unique");
        let parsed = uuid::Uuid::parse_str(generated.to_str().expect("ascii")).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 7);

        let kept = "0123456789abcdefghijKLMN+/=-";
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static(kept));
        assert_eq!(request_id(&headers), kept);
    }

    #[test]
    fn target_is_lowercase_without_port() {
        let req = Request::builder()
            .uri("/")
            .header(header::HOST, "Demo.Example.COM.:8080")
            .body(())
            .expect("request");
        let parsed = target(&req).expect("target");
        assert_eq!(parsed.host, "demo.example.com");
        assert_eq!(parsed.authority, "Demo.Example.COM.:8080");

        let absolute = Request::builder()
            .uri("http://Other.example.com/x")
            .header(header::HOST, "ignored.example.com")
            .body(())
            .expect("request");
        assert_eq!(target(&absolute).expect("target").host, "other.example.com");

        let missing = Request::builder().uri("/").body(()).expect("request");
        assert!(matches!(target(&missing), Err(ProxyError::MissingHost)));
    }

    #[test]
    fn forwarded_for_appends_the_client() {
        let mut headers = HeaderMap::new();
        let client = HeaderValue::from_static("10.0.0.1");
        assert_eq!(forwarded_for(&headers, &client), "10.0.0.1", "no chain yet");
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static("2.2.2.2"));
        assert_eq!(
            forwarded_for(&headers, &client),
            "1.1.1.1, 2.2.2.2, 10.0.0.1"
        );
    }

    #[test]
    fn hop_by_hop_headers_are_stripped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("proxy-authorization", HeaderValue::from_static("basic x"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers, false);
        let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn request_start_is_milliseconds() {
        let mut text = [0; 22];
        assert_eq!(request_start(0, &mut text), b"t=0");
        assert_eq!(
            request_start(1_763_800_000_123, &mut text),
            b"t=1763800000123"
        );
        assert_eq!(
            request_start(u64::MAX, &mut text),
            format!("t={}", u64::MAX).as_bytes()
        );
    }

    #[test]
    fn hop_by_hop_index_matches_the_list() {
        for (index, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name.as_str()), Some(index), "{name}");
        }
        assert_eq!(hop_by_hop_index("content-length"), None);
    }

    #[test]
    fn upgrade_keeps_the_switch() {
        let req = Request::builder()
            .uri("/ws")
            .header(header::CONNECTION, "keep-alive, Upgrade")
            .header(header::UPGRADE, "websocket")
            .header("proxy-connection", "keep-alive")
            .body(())
            .expect("request");
        assert!(is_upgrade_request(&req));
        let mut headers = req.headers().clone();
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(headers[header::CONNECTION], "upgrade");
        assert_eq!(headers[header::UPGRADE], "websocket");
        assert!(!headers.contains_key("proxy-connection"));
    }
}
