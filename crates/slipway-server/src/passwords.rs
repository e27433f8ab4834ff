//! Passwords: argon2id hashes, the minimum we accept, and the rate limits on login attempts.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// NIST SP 800-63B asks for at least 8; we ask for 12, and cap the length so hashing stays cheap.
pub const MIN_LENGTH: usize = 12;
pub const MAX_LENGTH: usize = 1024;

/// Attempts per minute before logins are refused: per source address, and per account.
const PER_ADDRESS_PER_MINUTE: u32 = 20;
const PER_ACCOUNT_PER_MINUTE: u32 = 10;

/// Why a password is refused, said so the user can pick a better one.
pub fn check_strength(password: &str, email: &str) -> Result<(), String> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(format!(
            "the password is too short: use at least {MIN_LENGTH} characters"
        ));
    }
    if length > MAX_LENGTH {
        return Err(format!(
            "the password is too long: use at most {MAX_LENGTH} characters"
        ));
    }
    let first = password.chars().next();
    if password.eq_ignore_ascii_case(email) || password.chars().all(|c| Some(c) == first) {
        return Err("the password is too easy to guess: pick another".to_owned());
    }
    Ok(())
}

/// An argon2id PHC string. CPU-heavy on purpose: call it from a blocking task.
pub fn hash(password: &str) -> anyhow::Result<String> {
    let hash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|error| anyhow::anyhow!("hashing a password failed: {error}"))?;
    Ok(hash.to_string())
}

/// Whether `password` matches `hash`. Unknown users are checked against a fixed hash so a
/// login takes as long whether or not the account exists. argon2 compares in constant time.
pub fn verify(password: &str, hash: Option<&str>) -> bool {
    let known = hash.is_some();
    let hash = hash.unwrap_or(DUMMY_HASH.as_str());
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let matched = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    matched && known
}

/// The hash of a random password nobody knows, made with the default parameters.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let unguessable = hex::encode(rand::random::<[u8; 32]>());
    hash(&unguessable).unwrap_or_default()
});

/// Login attempts allowed per source address and per account.
pub struct LoginLimits {
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    by_account: DefaultKeyedRateLimiter<String>,
}

impl Default for LoginLimits {
    fn default() -> Self {
        let quota =
            |per_minute| Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self {
            by_address: RateLimiter::keyed(quota(PER_ADDRESS_PER_MINUTE)),
            by_account: RateLimiter::keyed(quota(PER_ACCOUNT_PER_MINUTE)),
        }
    }
}

impl LoginLimits {
    /// Counts an attempt; `false` when the address or the account is over its limit.
    pub fn allow(&self, address: Option<IpAddr>, account: &str) -> bool {
        let address_ok = address.is_none_or(|ip| self.by_address.check_key(&ip).is_ok());
        let account_ok = self
            .by_account
            .check_key(&account.to_ascii_lowercase())
            .is_ok();
        address_ok && account_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hashed = hash("correct horse battery").unwrap();
        assert!(hashed.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", Some(&hashed)));
        assert!(!verify("correct horse batterY", Some(&hashed)));
        assert!(!verify("correct horse battery", None));
        assert!(!verify("anything", Some("not a phc string")));
    }

    #[test]
    fn weak_passwords_are_refused_with_the_reason() {
        assert!(
            check_strength("short", "a@b.c")
                .unwrap_err()
                .contains("at least 12")
        );
        assert!(
            check_strength("aaaaaaaaaaaaaa", "a@b.c")
                .unwrap_err()
                .contains("guess")
        );
        assert!(check_strength("Dev@Example.com", "dev@example.com").is_err());
        assert!(
            check_strength(&"x".repeat(2000), "a@b.c")
                .unwrap_err()
                .contains("too long")
        );
        assert!(check_strength("a sensible passphrase", "a@b.c").is_ok());
    }

    #[test]
    fn login_attempts_are_limited_per_account_and_per_address() {
        let limits = LoginLimits::default();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let allowed = (0..30)
            .filter(|_| limits.allow(Some(ip), "dev@example.com"))
            .count();
        assert_eq!(allowed, PER_ACCOUNT_PER_MINUTE as usize);
        let other: IpAddr = [10, 0, 0, 2].into();
        assert!(
            !limits.allow(Some(other), "DEV@example.com"),
            "per account, any address"
        );
        let spread = (0..30)
            .filter(|n| limits.allow(Some(other), &format!("user{n}@example.com")))
            .count();
        assert_eq!(spread, PER_ADDRESS_PER_MINUTE as usize - 1);
    }
}
