//! Add-on credentials at rest: AES-256-GCM under a key derived from the master key, bound to
//! the add-on they belong to, so the store (and its backups) never hold them in the clear.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hmac;

/// The first byte of everything sealed: which key derivation and layout it uses.
const VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("sealing the credentials of add-on `{0}` failed")]
    Seal(String),
    /// Wrong master key, a tampered row, or a row moved to another add-on.
    #[error("the stored credentials of add-on `{0}` cannot be decrypted with this master key")]
    Open(String),
}

pub struct Sealer {
    key: RandomizedNonceKey,
}

impl Sealer {
    /// Derives the key from the master key, so the master key itself never encrypts.
    pub fn from_master_key(master_key: &[u8]) -> Self {
        let derive = hmac::Key::new(hmac::HMAC_SHA256, master_key);
        let derived = hmac::sign(&derive, b"slipway add-on credentials v1");
        let key = RandomizedNonceKey::new(&AES_256_GCM, derived.as_ref())
            .expect("an HMAC-SHA256 tag is a valid AES-256 key");
        Self { key }
    }

    /// `VERSION ‖ nonce ‖ ciphertext ‖ tag`. `owner` (the app id and the add-on's name) is
    /// authenticated with it: a sealed value copied to another add-on does not open.
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = br#"{"password":"hunter2-but-longer"}"#;

    #[test]
    fn sealed_values_open_with_the_same_key_and_owner_only() {
        let sealer = Sealer::from_master_key(&[7; 32]);
        let sealed = sealer.seal("app/postgres-1", SECRET).unwrap();
        assert!(
            !sealed.windows(7).any(|w| w == b"hunter2"),
            "the secret is in the clear"
        );
        assert_eq!(sealer.open("app/postgres-1", &sealed).unwrap(), SECRET);

        let error = sealer.open("app/postgres-2", &sealed).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the stored credentials of add-on `app/postgres-2` cannot be decrypted with this master key"
        );
        let other_key = Sealer::from_master_key(&[8; 32]);
        assert!(other_key.open("app/postgres-1", &sealed).is_err());
    }

    #[test]
    fn each_seal_takes_a_fresh_nonce_and_tampering_is_detected() {
        let sealer = Sealer::from_master_key(&[7; 32]);
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
