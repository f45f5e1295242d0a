//! Stream signatures at rest: XChaCha20-Poly1305 with a random nonce per record, bound to
//! the agent's address (a row's ciphertext cannot be moved to another agent). Stored as
//! `enc:v1:<base64(nonce || ciphertext)>`; rows without the prefix are plaintext.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use zeroize::Zeroizing;

use crate::crypto::private::check_private_file;
use crate::error::{Error, Result};

pub const PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 24;

/// The key; never printed (no `Debug` of its bytes).
pub struct SecretKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

pub fn is_encrypted(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

impl SecretKey {
    /// Reads a key file: 64 hex characters, mode 0600. Errors never quote the file.
    pub fn load(path: &Path) -> Result<SecretKey> {
        check_private_file(path, "secret key file")?;
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            Error::usage(format!(
                "cannot read secret key file {}: {e}",
                path.display()
            ))
        })?);
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), &mut *key).map_err(|_| {
            Error::usage(format!(
                "secret key file {} does not hold 64 hex characters: create one with `keygen`",
                path.display()
            ))
        })?;
        // The cipher keeps its own copy of the key and wipes it on drop (chacha20's zeroize).
        let cipher = XChaCha20Poly1305::new((&*key).into());
        Ok(SecretKey { cipher })
    }

    /// Writes a new random key file (mode 0600); refuses to overwrite one.
    pub fn generate(path: &Path) -> Result<()> {
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut *key);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::usage(format!("cannot create key file {}: {e}", path.display())))?;
        let text = Zeroizing::new(hex::encode(key.as_slice()));
        writeln!(file, "{}", text.as_str())
            .and_then(|_| file.sync_all())
            .map_err(|e| Error::runtime(format!("cannot write key file {}: {e}", path.display())))
    }

    pub fn encrypt(&self, address: &str, plaintext: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: address.as_bytes(),
                },
            )
            .expect("encryption of a short text cannot fail");
        let mut blob = nonce.to_vec();
        blob.extend(sealed);
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(blob)
        )
    }

    pub fn decrypt(&self, address: &str, stored: &str) -> Result<String> {
        let fail = || {
            Error::runtime(format!(
                "the stream signature of {address} does not decrypt with this key: wrong --secret-key-file?"
            ))
        };
        let blob = base64::engine::general_purpose::STANDARD
            .decode(stored.strip_prefix(PREFIX).ok_or_else(fail)?)
            .map_err(|_| fail())?;
        if blob.len() <= NONCE_LEN {
            return Err(fail());
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: address.as_bytes(),
                },
            )
            .map_err(|_| fail())?;
        String::from_utf8(plain).map_err(|_| fail())
    }
}

/// A stored signature as plaintext: decrypted when needed, refused clearly without a key.
pub fn reveal(key: Option<&SecretKey>, address: &str, stored: &str) -> Result<String> {
    match (is_encrypted(stored), key) {
        (false, _) => Ok(stored.to_string()),
        (true, Some(k)) => k.decrypt(address, stored),
        (true, None) => Err(Error::usage(
            "stream signatures are encrypted at rest: give --secret-key-file (or STREAM_AGENCY_SECRET_KEY_FILE)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_random_nonces_and_binding_to_the_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        SecretKey::generate(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            SecretKey::generate(&path).is_err(),
            "never overwrites a key"
        );
        let key = SecretKey::load(&path).unwrap();
        let a = key.encrypt("claw1a", "deadbeef");
        let b = key.encrypt("claw1a", "deadbeef");
        assert_ne!(a, b, "random nonce per record");
        assert!(!a.contains("deadbeef"));
        assert_eq!(key.decrypt("claw1a", &a).unwrap(), "deadbeef");
        assert!(key.decrypt("claw1b", &a).is_err(), "bound to its address");
        assert_eq!(reveal(None, "claw1a", "plain").unwrap(), "plain");
        assert!(reveal(None, "claw1a", &a)
            .unwrap_err()
            .to_string()
            .contains("--secret-key-file"));
        let other = dir.path().join("k2");
        SecretKey::generate(&other).unwrap();
        let err = SecretKey::load(&other)
            .unwrap()
            .decrypt("claw1a", &a)
            .unwrap_err()
            .to_string();
        assert!(err.contains("wrong --secret-key-file"));
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(SecretKey::load(&other)
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
    }
}
