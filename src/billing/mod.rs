//! Exactly-once epoch billing on the `StreamAgencyEscrow` contract.
//!
//! One pass reads top to bottom:
//! 1. [`preflight`]: chain id, gas price, the escrow's config and operator; billing is
//!    `Ready`, `Blocked` until a human fixes the configuration, or `Unavailable` this tick.
//! 2. [`settle`]: the transactions already sent (status, or re-send of the identical bytes
//!    when the gateway lost them).
//! 3. [`send`]: for each agent, its lowest closed epoch not yet settled: the contract's
//!    views judged by `escrow::judge`, then sign, store (write-ahead), send, store the hash.
//!
//! At most one transaction per agent is in flight, so epochs go out in increasing order.

mod preflight;
mod send;
mod settle;

use crate::config::BillingConfig;
use crate::error::Result;
use crate::escrow::Escrow;
use crate::gateway::Gateway;
use crate::store::billing::Candidate;
use crate::store::Store;

pub use preflight::Preflight;

/// The epoch just closed is billed only after this many rounds of the new one, so the
/// contract's shard has most likely seen the change ("Epoch not closed yet" costs gas).
pub const SETTLE_ROUNDS: i64 = 3;
/// Failures without a known contract message, counting the first, after which the epoch
/// is left to a human.
pub const MAX_UNEXPLAINED_FAILURES: i64 = 3;

/// The newest epoch that may be billed now, `rounds_passed` into epoch `current`.
pub fn newest_billable(current: i64, rounds_passed: i64) -> i64 {
    if rounds_passed >= SETTLE_ROUNDS {
        current - 1
    } else {
        current - 2
    }
}

/// The (agent, epoch) pairs a pass would consider now (also what `tick --dry-run` shows).
pub fn candidates(store: &Store, current: i64, rounds_passed: i64) -> Result<Vec<Candidate>> {
    store.billing_candidates(newest_billable(current, rounds_passed))
}

pub struct Biller {
    cfg: BillingConfig,
    gateway: Gateway,
    network_checked: bool,
}

#[derive(Debug, Default)]
pub struct BillingSummary {
    pub sent: usize,
    pub billed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub in_flight: usize,
    /// Epochs settled for good without being billed this pass (expired, refused, given up).
    pub lost: usize,
    /// Billing cannot go on until a human acts (wrong operator key, chain id, gas price).
    pub blocked: Option<String>,
    /// Milliseconds spent signing and sending new transactions, for the figures.
    pub send_ms: f64,
}

impl std::fmt::Display for BillingSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "billing: {} sent, {} billed, {} failed, {} skipped, {} in flight",
            self.sent, self.billed, self.failed, self.skipped, self.in_flight
        )?;
        if self.sent > 0 {
            write!(
                f,
                " ({:.2} ms to sign and send each)",
                self.send_ms / self.sent as f64
            )?;
        }
        if let Some(b) = &self.blocked {
            write!(f, "; BLOCKED: {b}")?;
        }
        Ok(())
    }
}

impl Biller {
    pub fn new(cfg: BillingConfig, agent: ureq::Agent) -> Biller {
        let gateway = Gateway::new(agent, &cfg.proxy);
        Biller {
            cfg,
            gateway,
            network_checked: false,
        }
    }

    fn escrow(&self) -> Escrow<'_> {
        Escrow {
            gateway: &self.gateway,
            contract: self.cfg.escrow.to_bech32(),
        }
    }

    /// One billing pass. `current` is the current epoch, `rounds_passed` how far into it;
    /// `halted` says when to stop (a signal, the deadline, or a renewal due).
    pub fn bill(
        &mut self,
        store: &mut Store,
        current: i64,
        rounds_passed: i64,
        halted: &dyn Fn() -> bool,
    ) -> Result<BillingSummary> {
        let mut summary = BillingSummary::default();
        let config = match self.preflight() {
            Preflight::Ready(config) => config,
            Preflight::Blocked(reason) => {
                summary.blocked = Some(reason);
                return Ok(summary);
            }
            Preflight::Unavailable(e) => {
                log::warn!("billing skipped this tick: {e}");
                return Ok(summary);
            }
        };
        store.set_meta_escrow(config.window_reward, config.max_backbill_epochs)?;
        let Some(in_flight) = self.settle_in_flight(store, &mut summary, halted)? else {
            return Ok(summary);
        };
        let candidates = candidates(store, current, rounds_passed)?;
        self.send_new_epochs(
            store,
            candidates,
            &config,
            current,
            in_flight,
            &mut summary,
            halted,
        )?;
        // Sent without an answer counts as in flight too; refused ones do not.
        summary.in_flight += summary.sent;
        Ok(summary)
    }
}
