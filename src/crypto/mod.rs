//! Keys and secrets: addresses, PEM wallets and signing (`keys`), stream signatures
//! encrypted at rest (`secrets`).

pub mod keys;
pub mod private;
pub mod secrets;
