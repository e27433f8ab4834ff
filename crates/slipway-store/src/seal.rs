//! Secrets at rest: AES-256-GCM under a key derived from the master key, each value bound to
//! what it belongs to (its owner), so the store (and its backups) never hold config vars or
//! add-on credentials in the clear.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::StoreError;

/// How a sealed value starts in a text column; a value without it was written unsealed.
const TEXT_PREFIX: &str = "sealed:";

/// The first byte of everything sealed: which key derivation and layout it uses.
const VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("sealing `{0}` failed")]
    Seal(String),
    /// Wrong master key, a tampered row, or a row moved to another owner.
    #[error("`{0}` cannot be decrypted with this master key")]
    Open(String),
}

pub struct Sealer {
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// Derives the key from the master key and a label naming what it seals, so the master
    /// key itself never encrypts and each purpose has its own key.
    pub fn from_master_key(master_key: &[u8], label: &[u8]) -> Self {
        let derive = hmac::Key::new(hmac::HMAC_SHA256, master_key);
        let derived = hmac::sign(&derive, label);
        let key = RandomizedNonceKey::new(&AES_256_GCM, derived.as_ref())
            .expect("an HMAC-SHA256 tag is a valid AES-256 key");
        Self { key }
    }

    /// `VERSION ‖ nonce ‖ ciphertext ‖ tag`. `owner` (what the value belongs to) is
    /// authenticated with it: a sealed value copied to another owner does not open.
    pub fn seal(&self, owner: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut in_out = plaintext.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(owner.as_bytes()), &mut in_out)
            .map_err(|_| SealError::Seal(owner.to_owned()))?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(nonce.as_ref());
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    pub fn open(&self, owner: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let failed = || SealError::Open(owner.to_owned());
        let Some((&VERSION, rest)) = sealed.split_first() else {
            return Err(failed());
        };
        if rest.len() < NONCE_LEN {
            return Err(failed());
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| failed())?;
        let mut in_out = ciphertext.to_vec();
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(owner.as_bytes()), &mut in_out)
            .map_err(|_| failed())?;
        Ok(plaintext.to_vec())
    }
}

/// A text column's value as stored: sealed when the store has a sealer, else as it is.
pub(crate) fn seal_text(
    sealer: Option<&Sealer>,
    owner: &str,
    plain: &str,
) -> crate::Result<String> {
    match sealer {
        Some(sealer) => {
            let sealed = sealer
                .seal(owner, plain.as_bytes())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok(format!("{TEXT_PREFIX}{}", STANDARD.encode(sealed)))
        }
        None => Ok(plain.to_owned()),
    }
}

/// A text column's value as written: opened when sealed. Unsealed values (written before the
/// store had a sealer) read as they are.
pub(crate) fn open_text(
    sealer: Option<&Sealer>,
    owner: &str,
    stored: &str,
) -> crate::Result<String> {
    let Some(encoded) = stored.strip_prefix(TEXT_PREFIX) else {
        return Ok(stored.to_owned());
    };
    let unreadable = || {
        StoreError::Corrupt(format!(
            "`{owner}` cannot be decrypted with this master key"
        ))
    };
    let sealer = sealer.ok_or_else(unreadable)?;
    let sealed = STANDARD.decode(encoded).map_err(|_| unreadable())?;
    let plain = sealer.open(owner, &sealed).map_err(|_| unreadable())?;
    String::from_utf8(plain).map_err(|_| unreadable())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = br#"{"password":"hunter2-but-longer"}"#;

    #[test]
    fn sealed_values_open_with_the_same_key_and_owner_only() {
        let sealer = Sealer::from_master_key(&[7; 32], b"test");
        let sealed = sealer.seal("app/postgres-1", SECRET).unwrap();
        assert!(
            !sealed.windows(7).any(|w| w == b"hunter2"),
            "the secret is in the clear"
        );
        assert_eq!(sealer.open("app/postgres-1", &sealed).unwrap(), SECRET);

        let error = sealer.open("app/postgres-2", &sealed).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`app/postgres-2` cannot be decrypted with this master key"
        );
        let other_label = Sealer::from_master_key(&[7; 32], b"another purpose");
        assert!(other_label.open("app/postgres-1", &sealed).is_err());
        let other_key = Sealer::from_master_key(&[8; 32], b"test");
        assert!(other_key.open("app/postgres-1", &sealed).is_err());
    }

    #[test]
    fn text_values_round_trip_and_unsealed_ones_read_as_they_are() {
        let sealer = Sealer::from_master_key(&[7; 32], b"test");
        let stored = seal_text(Some(&sealer), "config/a/KEY", "hunter2").unwrap();
        assert!(stored.starts_with(TEXT_PREFIX) && !stored.contains("hunter2"));
        assert_eq!(
            open_text(Some(&sealer), "config/a/KEY", &stored).unwrap(),
            "hunter2"
        );
        assert!(open_text(Some(&sealer), "config/a/OTHER", &stored).is_err());
        assert!(open_text(None, "config/a/KEY", &stored).is_err());
        assert_eq!(
            open_text(Some(&sealer), "config/a/KEY", "plain").unwrap(),
            "plain"
        );
        assert_eq!(seal_text(None, "config/a/KEY", "plain").unwrap(), "plain");
    }

    #[test]
    fn each_seal_takes_a_fresh_nonce_and_tampering_is_detected() {
        let sealer = Sealer::from_master_key(&[7; 32], b"test");
        let first = sealer.seal("a/b", SECRET).unwrap();
        let second = sealer.seal("a/b", SECRET).unwrap();
        assert_ne!(first, second);

        let mut tampered = first.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(sealer.open("a/b", &tampered).is_err());
        assert!(sealer.open("a/b", &first[..10]).is_err());
        assert!(sealer.open("a/b", &[]).is_err());
        let mut future = first;
        future[0] = 2;
        assert!(sealer.open("a/b", &future).is_err());
    }
}
