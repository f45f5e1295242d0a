//! The chain: what the Claws Network and the escrow contract say, and how to ask them.
//!
//! - `epochs`: the epoch timeline from observations (pure);
//! - `ledger`: the vocabulary of bills and settlements, as the contract numbers them (pure);
//! - `tx`: transactions, their signing bytes and call data (pure);
//! - `escrow`: the StreamAgencyEscrow contract: its ABI, its rules and its views;
//! - `fees`: what a transaction costs by the chain's fee rule (pure);
//! - `gateway`: the chain gateway's HTTP API (network config, accounts, transactions, views).

pub(crate) mod epochs;
pub mod escrow;
pub(crate) mod fees;
pub mod gateway;
pub(crate) mod ledger;
pub(crate) mod tx;
