//! Splitting an app's requests between its current release and a canary: one draw from a
//! shared pseudo-random sequence per request, or the client's `slipway-canary` cookie when the
//! split is sticky.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::{self, HeaderValue};

/// The cookie that keeps a client on one side of a sticky split; its value is the release the
/// client was sent to.
pub(crate) const COOKIE: &str = "slipway-canary";

/// How long a sticky client stays on its side: a day covers a working session, and a canary
/// rarely runs longer.
const COOKIE_MAX_AGE_SECS: u32 = 86_400;

/// The increment of SplitMix64's Weyl sequence.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Sends `percent` of the draws to the canary. The sequence is SplitMix64: one atomic add and
/// a few multiplications per request, no lock, and well spread even across requests that
/// arrive in lockstep (a counter modulo 100 would hand a client that sends every tenth
/// request the same side every time).
pub(crate) struct Split {
    percent: u64,
    state: AtomicU64,
}

impl Split {
    pub(crate) fn new(percent: u8) -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos().into());
        Self {
            percent: u64::from(percent.min(100)),
            state: AtomicU64::new(seed),
        }
    }

    /// Whether this request goes to the canary.
    pub(crate) fn to_canary(&self) -> bool {
        let mut z = self
            .state
            .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
            .wrapping_add(GOLDEN_GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        z % 100 < self.percent
    }
}

/// The release named by the request's `slipway-canary` cookie, if it sent one.
pub(crate) fn cookie_release(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then_some(value)
        })
}

/// `Set-Cookie` pinning the client to `release`; `None` for a release name that cannot be a
/// cookie value (release names are versions, so this does not happen).
pub(crate) fn set_cookie(release: &str) -> Option<HeaderValue> {
    let valid = !release.is_empty()
        && release
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\'));
    if !valid {
        return None;
    }
    HeaderValue::try_from(format!(
        "{COOKIE}={release}; Path=/; Max-Age={COOKIE_MAX_AGE_SECS}; HttpOnly; SameSite=Lax"
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_percentage() {
        for percent in [1, 10, 20, 50, 90] {
            let split = Split::new(percent);
            let draws = 100_000;
            let canary = (0..draws).filter(|_| split.to_canary()).count();
            let expected = draws * usize::from(percent) / 100;
            let tolerance = draws / 100;
            assert!(
                canary.abs_diff(expected) <= tolerance,
                "{percent}%: {canary} of {draws} draws went to the canary"
            );
        }
    }

    #[test]
    fn every_tenth_draw_is_not_always_the_same_side() {
        let split = Split::new(10);
        let tenth: Vec<bool> = (0..10_000).map(|_| split.to_canary()).step_by(10).collect();
        let canary = tenth.iter().filter(|side| **side).count();
        assert!((50..=150).contains(&canary), "{canary} of 1000");
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; theme=dark"));
        assert_eq!(cookie_release(&headers), None);
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("session=x;slipway-canary=1.2.0; z=2"),
        );
        assert_eq!(cookie_release(&headers), Some("1.2.0"));
    }

    #[test]
    fn set_cookie_names_the_release_and_refuses_odd_values() {
        let cookie = set_cookie("1.2.0").expect("a version is a cookie value");
        assert_eq!(
            cookie.to_str().expect("ascii"),
            "slipway-canary=1.2.0; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax"
        );
        assert_eq!(set_cookie("a;b"), None);
        assert_eq!(set_cookie(""), None);
    }
}
