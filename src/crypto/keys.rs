//! Addresses, wallet PEM files and MultiversX message signing, natively (no `clawpy`).
//!
//! An address is the bech32 (BIP-173) encoding of a 32-byte ed25519 public key with the
//! human-readable part `claw`. Secret keys live only in [`Wallet`], which never prints them.

use std::fmt;
use std::path::Path;
use zeroize::Zeroizing;

use base64::Engine as _;
use bech32::primitives::decode::{
    CharError, CheckedHrpstring, CheckedHrpstringError, ChecksumError, UncheckedHrpstringError,
};
use bech32::{Bech32, Hrp};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha3::{Digest, Keccak256};

use crate::error::{Error, Result};

pub const HRP: &str = "claw";
/// `claw` + `1` + 52 data characters + 6 checksum characters.
pub const ADDRESS_LEN: usize = 62;
/// The fixed message whose signature authenticates an agent with the stream service.
pub const STREAM_MESSAGE: &str = "stream";

/// A 32-byte account (ed25519 public key) or contract address.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address([u8; 32]);

impl Address {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Address(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses a `claw1...` address; anything else is refused with the reason.
    pub fn parse(s: &str) -> Result<Address, String> {
        let (hrp, addr) = Address::parse_any_hrp(s)?;
        if hrp != HRP {
            return Err(format!(
                "wrong address prefix (HRP) '{hrp}': expected a '{HRP}1...' address"
            ));
        }
        Ok(addr)
    }

    /// Parses a bech32 address with any human-readable part (PEM labels may say `erd1...`).
    /// Returns the lowercase HRP and the address.
    pub fn parse_any_hrp(s: &str) -> Result<(String, Address), String> {
        if s.is_empty() {
            return Err("empty address".into());
        }
        if s.len() > 90 {
            return Err(format!(
                "wrong address length {}: a bech32 address has at most 90 characters, a claw address {ADDRESS_LEN}",
                s.len()
            ));
        }
        if !s.is_ascii() || s.chars().any(|c| c.is_ascii_control()) {
            return Err("address contains non-ASCII or control characters".into());
        }
        let has_lower = s.chars().any(|c| c.is_ascii_lowercase());
        let has_upper = s.chars().any(|c| c.is_ascii_uppercase());
        if has_lower && has_upper {
            return Err(
                "mixed-case address: bech32 must be all lowercase (or all uppercase)".into(),
            );
        }
        let lower = s.to_ascii_lowercase();
        let Some(sep) = lower.rfind('1') else {
            return Err("not a bech32 address: no '1' separator".into());
        };
        let hrp = &lower[..sep];
        let expected_len = hrp.len() + 1 + 52 + 6;
        if lower.len() != expected_len {
            return Err(format!(
                "wrong address length {}: a 32-byte '{hrp}' address has {expected_len} characters",
                lower.len()
            ));
        }
        let checked = CheckedHrpstring::new::<Bech32>(&lower).map_err(describe_bech32_error)?;
        let bytes: Vec<u8> = checked.byte_iter().collect();
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "address does not hold 32 bytes".to_string())?;
        Ok((hrp.to_string(), Address(bytes)))
    }

    pub fn to_bech32_with(&self, hrp: &str) -> String {
        let hrp = Hrp::parse(hrp).expect("valid HRP");
        bech32::encode_lower::<Bech32>(hrp, &self.0).expect("32 bytes always encode")
    }

    pub fn to_bech32(&self) -> String {
        self.to_bech32_with(HRP)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

fn describe_bech32_error(e: CheckedHrpstringError) -> String {
    match e {
        CheckedHrpstringError::Checksum(ChecksumError::InvalidResidue) => {
            "bad bech32 checksum: the address is mistyped or truncated".into()
        }
        CheckedHrpstringError::Checksum(other) => format!("bad bech32 checksum ({other})"),
        CheckedHrpstringError::Parse(UncheckedHrpstringError::Char(CharError::InvalidChar(c))) => {
            format!(
                "invalid bech32 character {c:?} (bech32 excludes 1, b, i, o after the separator)"
            )
        }
        CheckedHrpstringError::Parse(UncheckedHrpstringError::Char(CharError::MixedCase)) => {
            "mixed-case address".into()
        }
        other => format!("not a bech32 address ({other})"),
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_bech32())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

/// keccak256(0x17 || "Elrond Signed Message:\n" || decimal length || message).
pub fn message_digest(message: &[u8]) -> [u8; 32] {
    let mut h = Keccak256::new();
    h.update(b"\x17Elrond Signed Message:\n");
    h.update(message.len().to_string().as_bytes());
    h.update(message);
    h.finalize().into()
}

/// Verifies a message signature offline: the address is the public key.
pub fn verify_message(address: &Address, message: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(address.as_bytes()) else {
        return false;
    };
    let sig = ed25519_dalek::Signature::from_bytes(signature);
    key.verify_strict(&message_digest(message), &sig).is_ok()
}

/// Parses a 64-byte signature written as hex (optional `0x`). The error never echoes it.
/// Why a stream signature does not enroll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotEnrollable {
    /// Not 64 bytes of hex (optional `0x`): what is wrong with it.
    Malformed(String),
    /// Well formed, but not the address's signature of `stream`.
    NotTheirs,
}

/// The enrollment rule, one place for `enroll`, `import-mvp` and the intake: the signature
/// (hex, optional `0x`) verifies offline as `address`'s signature of [`STREAM_MESSAGE`].
pub fn stream_signature(address: &Address, hex: &str) -> Result<[u8; 64], NotEnrollable> {
    let sig = parse_signature_hex(hex).map_err(NotEnrollable::Malformed)?;
    if !verify_message(address, STREAM_MESSAGE.as_bytes(), &sig) {
        return Err(NotEnrollable::NotTheirs);
    }
    Ok(sig)
}

pub fn parse_signature_hex(s: &str) -> Result<[u8; 64], String> {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("signature is not hex (expected 128 hex characters, optional 0x)".into());
    }
    if s.len() != 128 {
        return Err(format!(
            "signature has {} hex characters, expected 128 (64 bytes)",
            s.len()
        ));
    }
    let mut out = [0u8; 64];
    hex::decode_to_slice(s, &mut out).map_err(|_| "signature is not valid hex".to_string())?;
    Ok(out)
}

/// A stream signature (or other secret text): a reusable bearer secret. `Debug` never
/// shows it, it is not `Clone`, and its buffer is wiped when it is dropped; only the
/// request body and the database ever hold its text.
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(text: String) -> Secret {
        Secret(Zeroizing::new(text))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// An ed25519 key pair loaded from a wallet PEM. Debug output never shows the secret.
pub struct Wallet {
    key: SigningKey,
    address: Address,
}

impl fmt::Debug for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wallet({})", self.address)
    }
}

impl Wallet {
    pub fn from_seed(seed: &[u8; 32]) -> Wallet {
        let key = SigningKey::from_bytes(seed);
        let address = Address(key.verifying_key().to_bytes());
        Wallet { key, address }
    }

    pub fn address(&self) -> Address {
        self.address
    }

    pub fn sign(&self, bytes: &[u8]) -> [u8; 64] {
        self.key.sign(bytes).to_bytes()
    }

    pub fn sign_message(&self, message: &[u8]) -> [u8; 64] {
        self.sign(&message_digest(message))
    }

    /// Reads the first key of a wallet PEM file.
    pub fn from_pem_file(path: &Path) -> Result<Wallet> {
        let shown = path.display();
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::usage(format!("cannot read PEM file {shown}: {e}")))?;
        if meta.is_dir() {
            return Err(Error::usage(format!(
                "PEM file {shown} is a directory: give the wallet's .pem file"
            )));
        }
        if meta.len() > 64 * 1024 {
            return Err(Error::usage(format!(
                "PEM file {shown} is too large to be a wallet ({} bytes)",
                meta.len()
            )));
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| Error::usage(format!("cannot read PEM file {shown}: {e}")))?,
        );
        let mut wallets =
            parse_pem(&text).map_err(|e| Error::usage(format!("PEM file {shown}: {e}")))?;
        Ok(wallets.swap_remove(0))
    }
}

/// Parses every key of a wallet PEM; the first is the default. Errors never quote key bytes.
pub fn parse_pem(text: &str) -> Result<Vec<Wallet>, String> {
    let mut wallets = Vec::new();
    let mut lines = text.lines().map(str::trim).enumerate();
    while let Some((n, line)) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let Some(label) = line
            .strip_prefix("-----BEGIN PRIVATE KEY for ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            return Err(format!(
                "line {}: expected '-----BEGIN PRIVATE KEY for <address>-----'",
                n + 1
            ));
        };
        let mut body = Zeroizing::new(String::new());
        let mut ended = false;
        for (m, line) in lines.by_ref() {
            if let Some(end) = line
                .strip_prefix("-----END PRIVATE KEY for ")
                .and_then(|l| l.strip_suffix("-----"))
            {
                if end != label {
                    return Err(format!(
                        "line {}: END label does not match BEGIN label",
                        m + 1
                    ));
                }
                ended = true;
                break;
            }
            body.push_str(line);
        }
        if !ended {
            return Err(format!("key {}: missing END line", wallets.len() + 1));
        }
        let (_, label_address) =
            Address::parse_any_hrp(label).map_err(|e| format!("label address is invalid: {e}"))?;
        let hex_text = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(body.as_bytes())
                .map_err(|_| "key body is not valid base64".to_string())?,
        );
        if hex_text.len() != 128 {
            return Err(format!(
                "key body decodes to {} characters, expected 128 hex characters",
                hex_text.len()
            ));
        }
        let mut raw = Zeroizing::new([0u8; 64]);
        hex::decode_to_slice(&*hex_text, &mut *raw)
            .map_err(|_| "key body is not hex inside the base64".to_string())?;
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(raw[..32].try_into().expect("32 bytes"));
        let wallet = Wallet::from_seed(&seed);
        if wallet.address.as_bytes()[..] != hex_text_public_half(&hex_text)? {
            return Err("the public key in the file does not match its secret key".into());
        }
        if wallet.address != label_address {
            return Err("the label's address does not match the key in the file".into());
        }
        wallets.push(wallet);
    }
    if wallets.is_empty() {
        return Err("no '-----BEGIN PRIVATE KEY for ...-----' block found".into());
    }
    Ok(wallets)
}

fn hex_text_public_half(hex_text: &[u8]) -> Result<[u8; 32], String> {
    let mut public = [0u8; 32];
    hex::decode_to_slice(&hex_text[64..], &mut public)
        .map_err(|_| "public half is not hex".to_string())?;
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::{vectors, wallet_path};

    #[test]
    fn addresses_round_trip_for_every_vector_wallet() {
        let v = vectors();
        for (name, w) in v["wallets"].as_object().unwrap() {
            let public = hex::decode(w["public_key_hex"].as_str().unwrap()).unwrap();
            let addr = Address::parse(w["address_claw"].as_str().unwrap()).unwrap();
            assert_eq!(&addr.as_bytes()[..], &public[..], "{name}");
            assert_eq!(addr.to_bech32(), w["address_claw"].as_str().unwrap());
            assert_eq!(
                addr.to_bech32_with("erd"),
                w["address_erd"].as_str().unwrap()
            );
            let (hrp, erd) = Address::parse_any_hrp(w["address_erd"].as_str().unwrap()).unwrap();
            assert_eq!((hrp.as_str(), erd), ("erd", addr));
        }
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        let good = "claw1qyu5wthldzr8wx5c9ucg8kjagg0jfs53s8nr3zpz3hypefsdd8ss0ekavn";
        let cases: Vec<(String, &str)> = vec![
            (good.replace("claw1qyu", "claw1Qyu"), "mixed-case"),
            (
                "erd1qyu5wthldzr8wx5c9ucg8kjagg0jfs53s8nr3zpz3hypefsdd8ssycr6th".into(),
                "HRP",
            ),
            (good[..good.len() - 1].to_string() + "m", "checksum"),
            (good[..40].to_string(), "length"),
            (format!("{good}q"), "length"),
            (
                "clawqyu5wthldzr8wx5c9ucg8kjagg0jfs53s8nr3zpz3hypef".into(),
                "separator",
            ),
            (good.replace("qyu5", "qyb5"), "character"),
            (String::new(), "empty"),
        ];
        for (input, expected) in cases {
            let err = Address::parse(&input).unwrap_err();
            assert!(err.contains(expected), "{input:?}: {err}");
        }
        assert_eq!(
            Address::parse(&good.to_ascii_uppercase())
                .unwrap()
                .to_bech32(),
            good
        );
    }

    #[test]
    fn message_signatures_match_the_vectors_byte_for_byte() {
        let v = vectors();
        let mut checked = 0;
        for w in v["wallets"].as_object().unwrap().values() {
            let seed: [u8; 32] = hex::decode(w["secret_key_hex"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            let wallet = Wallet::from_seed(&seed);
            for (msg, expect) in w["signed_messages"].as_object().unwrap() {
                let digest = message_digest(msg.as_bytes());
                assert_eq!(
                    hex::encode(digest),
                    expect["bytes_for_signing_keccak256_hex"].as_str().unwrap()
                );
                let sig = wallet.sign_message(msg.as_bytes());
                assert_eq!(hex::encode(sig), expect["signature_hex"].as_str().unwrap());
                assert!(verify_message(&wallet.address(), msg.as_bytes(), &sig));
                assert!(!verify_message(&wallet.address(), b"streaM", &sig));
                checked += 1;
            }
        }
        assert_eq!(checked, 9);
    }

    #[test]
    fn pem_files_load_with_either_label_and_match_the_vectors() {
        let v = vectors();
        for w in v["wallets"].as_object().unwrap().values() {
            for file in ["pem_file", "pem_file_erd_label"] {
                let wallet =
                    Wallet::from_pem_file(&wallet_path(w[file].as_str().unwrap())).unwrap();
                assert_eq!(
                    wallet.address().to_bech32(),
                    w["address_claw"].as_str().unwrap()
                );
            }
        }
    }

    #[test]
    fn pem_with_a_mismatched_label_or_public_half_is_refused() {
        let alice = std::fs::read_to_string(wallet_path("alice.pem")).unwrap();
        let bob_addr = "claw1spyavw0956vq68xj8y4tenjpq2wd5a9p2c6j8gsz7ztyrnpxrruqfa0a4z";
        let alice_addr = "claw1qyu5wthldzr8wx5c9ucg8kjagg0jfs53s8nr3zpz3hypefsdd8ss0ekavn";
        let relabeled = alice.replace(alice_addr, bob_addr);
        assert!(parse_pem(&relabeled).unwrap_err().contains("label"));

        // Same seed, public half replaced by bob's key.
        let body: String = alice.lines().filter(|l| !l.starts_with("-----")).collect();
        let mut hex_text = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        hex_text[64..]
            .copy_from_slice(b"8049d639e5a6980d1cd2392abcce41029cda74a1563523a202f09641cc2618f8");
        let forged = format!(
            "-----BEGIN PRIVATE KEY for {alice_addr}-----\n{}\n-----END PRIVATE KEY for {alice_addr}-----\n",
            base64::engine::general_purpose::STANDARD.encode(hex_text)
        );
        assert!(parse_pem(&forged).unwrap_err().contains("public key"));
        assert!(parse_pem("hello").unwrap_err().contains("BEGIN"));
        assert!(parse_pem("").unwrap_err().contains("no"));
    }

    #[test]
    fn signature_hex_parsing() {
        let hex128 = "ab".repeat(64);
        assert!(parse_signature_hex(&hex128).is_ok());
        assert!(parse_signature_hex(&format!("0x{hex128}")).is_ok());
        assert!(parse_signature_hex(&hex128[..126])
            .unwrap_err()
            .contains("126"));
        assert!(parse_signature_hex(&format!("{hex128}00"))
            .unwrap_err()
            .contains("130"));
        assert!(parse_signature_hex(&"zz".repeat(64))
            .unwrap_err()
            .contains("not hex"));
    }
}
