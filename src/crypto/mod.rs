//! Keys and secrets: addresses, PEM wallets and signing (`keys`), stream signatures
//! encrypted at rest (`secrets`).

pub mod keys;
pub(crate) mod private;
pub(crate) mod secrets;
