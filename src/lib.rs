//! stream-agency: keeps Claws Network agents' funding streams alive, counts the windows
//! per chain epoch and bills them on the StreamAgencyEscrow contract.
//!
//! The house, top to bottom (a module only uses those below it):
//! - `cli` (global options, the command list) and `cmd/` (one file per command);
//! - `tick` (one cycle: epoch, renewals, windows, billing) and `billing/` (the billing
//!   pass in named steps), `idle` (a tick with nothing to do asks nobody), `health`
//!   (what needs a human), `notify` (alerts and pings);
//! - `schedule` (renewal policy, pure), `escrow` (the contract's views and rules, pure
//!   where it can be), `tx` (transactions), `keys` (addresses, PEM, signing),
//!   `secrets` (signatures at rest);
//! - clients: `http`, `stream` (the stream service), `gateway` (the chain gateway);
//! - `store/` (every SQL query), `disk` (records waiting for a full or read-only disk),
//!   `lock` (one tick or run per database), `config`
//!   (runtime options), `output` (tables, JSON, TSV, times), `error` (exit statuses).

pub(crate) mod billing;
pub mod chain;
pub mod cli;
pub mod cmd;
pub(crate) mod config;
pub mod crypto;
pub mod error;
pub mod net;
pub mod ops;
pub mod renewal;
pub(crate) mod serve;
pub(crate) mod store;
pub(crate) mod tick;

#[cfg(test)]
mod testdata;

/// Wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
