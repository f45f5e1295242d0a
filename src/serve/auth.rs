//! Who may do what on the intake. An agent proves itself with signatures made by its own
//! key: its stream signature to enroll, a signed action message
//! (`stream-agency:<name>:<action>:<address>:<expiry>`, MultiversX message signing) to
//! pause, resume or remove itself, each message accepted once. The operator uses a token
//! (`token new`): only its SHA-256 is stored, compared in constant time.

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::conn::Request;
use super::reply::Refusal;
use crate::crypto::keys::{self, Address};
use crate::error::Result;
use crate::store::Store;

/// An action message may expire at most this far ahead (seconds).
pub const MAX_MESSAGE_AHEAD_S: i64 = 600;

/// A new operator token: 256 random bits, as 64 hex characters.
pub fn new_token() -> String {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut *bytes);
    hex::encode(*bytes)
}

pub fn sha256_hex(text: &[u8]) -> String {
    hex::encode(Sha256::digest(text))
}

/// The token a request carries: `Authorization: Bearer T` or `X-API-Key: T`.
fn presented(req: &Request) -> Option<&str> {
    req.header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| req.header("x-api-key"))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether the request carries a token at all (valid or not).
pub fn presents_token(req: &Request) -> bool {
    presented(req).is_some()
}

/// Whether the request carries a live operator token: 401 without one or with one that is
/// not valid (missing or invalid credentials; 403 is for a valid token that may not act).
pub fn operator(req: &Request, store: &Store) -> Result<std::result::Result<(), Refusal>> {
    let Some(token) = presented(req) else {
        return Ok(Err(Refusal(
            401,
            "an operator token is required: Authorization: Bearer <token> (see `stream-agency token new`)".into(),
        )));
    };
    if token_name(store, token)?.is_some() {
        Ok(Ok(()))
    } else {
        Ok(Err(Refusal(
            401,
            "the token is not valid (revoked, or never issued): give a live one (see `stream-agency token list`)".into(),
        )))
    }
}

/// The name of the live token `token` is, compared in constant time with every one.
pub fn token_name(store: &Store, token: &str) -> Result<Option<String>> {
    let offered = sha256_hex(token.as_bytes());
    let mut found = None;
    for (name, known) in store.live_tokens()? {
        if bool::from(known.as_bytes().ct_eq(offered.as_bytes())) {
            found = Some(name);
        }
    }
    Ok(found)
}

/// An address from the path or a body: bech32 with HRP `claw`; all upper case is the same
/// address (bech32 allows it), mixed case is refused.
pub fn address(text: &str) -> std::result::Result<Address, Refusal> {
    let lower = text.to_ascii_lowercase();
    if text != lower && text != text.to_ascii_uppercase() {
        return Err(Refusal(
            400,
            "the address mixes upper and lower case: send it in one case".into(),
        ));
    }
    Address::parse(&lower).map_err(|e| Refusal(400, format!("not a claw address: {e}")))
}

/// Checks a signed action message for `action` on `agent` by this intake (`name`), and
/// records it as used (a replay gets 409).
pub fn action_message(
    store: &Store,
    (name, action, agent): (&str, &str, &Address),
    message: &str,
    signature: &str,
    now_s: i64,
) -> Result<std::result::Result<(), Refusal>> {
    let refuse = |status, why: String| Ok(Err(Refusal(status, why)));
    let Ok(sig) = keys::parse_signature_hex(signature) else {
        return refuse(400, "signature is not 64 bytes of hex".into());
    };
    let mut parts = message.rsplitn(4, ':');
    let (Some(expiry), Some(address), Some(said_action), Some(prefix)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return refuse(
            400,
            "message must be stream-agency:<name>:<action>:<address>:<expiry>".into(),
        );
    };
    if prefix != format!("stream-agency:{name}") {
        return refuse(
            403,
            format!("the message is for another agency: this one is '{name}' (--intake-name)"),
        );
    }
    if said_action != action || address.to_ascii_lowercase() != agent.to_bech32() {
        return refuse(
            403,
            format!("the message does not say {action} for {agent}"),
        );
    }
    let Ok(expiry) = expiry.parse::<i64>() else {
        return refuse(400, "the message's expiry is not Unix seconds".into());
    };
    if expiry < now_s || expiry > now_s + MAX_MESSAGE_AHEAD_S {
        return refuse(403, format!("the message expires at {expiry}: it must be between now ({now_s}) and 10 minutes ahead"));
    }
    if !keys::verify_message(agent, message.as_bytes(), &sig) {
        return refuse(
            403,
            format!("the signature is not {agent}'s signature of the message"),
        );
    }
    if !store.use_message(&sha256_hex(message.as_bytes()), expiry, now_s)? {
        return refuse(409, "this message was used already: sign a new one".into());
    }
    Ok(Ok(()))
}
