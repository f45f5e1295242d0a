//! stream-agency: keeps Claws Network agents' funding streams alive, counts the windows
//! per chain epoch and bills them on the StreamAgencyEscrow contract.
//!
//! The house, by stage, top to bottom: a module only uses those in its row or below it
//! (the suite's `layers` test checks this table, and: no import cycle, `store/` free of the
//! network, no command imported, no function over 80 lines).
//!
//! | layer | what it is |
//! | --- | --- |
//! | `cli`, [`cmd`] | the global options, the command list; one file per command |
//! | `serve` | the HTTP intake: agents enroll, pause, resume, remove themselves; the pages |
//! | `web` | the pages `serve` renders: templates (askama), SVG charts, the figures shown |
//! | `standby` | the standby host's loop: renews while the primary is late, never bills |
//! | `tick` | the cycle: outline, epoch observation, renewals, backlog, idle tick, summary |
//! | [`ops`] | what the operator sees and keeps: output, health, notify, backup, report rows, lock, disk, signals |
//! | `billing` | the billing pass: preflight, settle, send, enforce, receivables, lifecycle |
//! | `config` | every runtime option declared once, every environment variable read |
//! | [`renewal`]: `renewal::stream`, `renewal::schedule` | the stream service's client and its answers; when to renew (pure, on those answers) |
//! | `chain::gateway`, `chain::escrow::client` | the gateway's client and the escrow views' client |
//! | `store` | SQL only: every query, the schema's migrations (`sql/`); it uses the pure parts below |
//! | `renewal::outcome`, [`chain`]'s pure parts | what a renewal came to; epochs, ledger vocabulary, fees, transactions, the escrow's rules and ABI |
//! | [`crypto`] | addresses, PEM wallets, signing, the enrollment rule; signatures at rest; private files |
//! | [`net`] | the one HTTP agent (timeouts, bounded reads, proxies, extra roots), URL helpers, the network's clock (`now_ms`) |
//! | `environment`, [`error`] | the one reader of the process environment; errors and exit statuses |
//!
//! `backup` reads the database file itself (`VACUUM INTO`, `integrity_check`) besides
//! `store`. Modules are `pub` only where the integration tests or the binary need them.
//! `now_ms` is re-exported here for the tests; the code itself imports it from `net::clock`.

pub(crate) mod billing;
pub mod chain;
pub mod cli;
pub mod cmd;
pub(crate) mod config;
pub mod crypto;
mod environment;
pub mod error;
pub mod net;
pub mod ops;
pub mod renewal;
pub mod serve;
pub(crate) mod standby;
pub(crate) mod store;
pub(crate) mod tick;
pub(crate) mod web;

#[cfg(test)]
mod testdata;

/// Wall-clock time in Unix milliseconds (see `net::clock`).
pub use net::clock::now_ms;
