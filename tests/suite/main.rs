//! The one integration-test binary: the fake Claws Network of `common` is compiled once and
//! every file below drives the built `stream-agency` binary (or the library) against it.
//! `cargo test --test suite tick::` runs one file's tests.

mod common;

mod adopt;
mod alerts;
mod backup;
mod billing;
mod cli;
mod clock;
mod continuity;
mod disk;
mod epochs;
mod escrow;
mod fees;
mod idle;
mod layers;
mod ledger;
mod network;
mod ops;
mod pages;
mod parsers;
mod renewers;
mod serve;
mod standby;
mod tick;
mod wallet;
