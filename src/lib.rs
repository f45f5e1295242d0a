//! stream-agency: keeps Claws Network agents' funding streams alive, counts the windows
//! per chain epoch and bills them on the StreamAgencyEscrow contract.
//!
//! One module per concern: `cli` (arguments), `config` (runtime options), `store` (SQLite),
//! `keys` (addresses, PEM, signing), `http`/`stream`/`gateway` (network clients),
//! `schedule` (renewal policy), `tick`/`run` (the job), `manage` (enrollment commands),
//! `report` (read-only views).

pub mod billing;
pub mod cli;
pub mod config;
pub mod error;
pub mod escrow;
pub mod gateway;
pub mod health;
pub mod http;
pub mod keys;
pub mod lock;
pub mod manage;
pub mod output;
pub mod report;
pub mod run;
pub mod schedule;
pub mod secrets;
pub mod store;
pub mod stream;
pub mod tick;
pub mod tx;

#[cfg(test)]
mod testdata;

/// Wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
