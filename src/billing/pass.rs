//! The billing pass and what its stages share: the [`Biller`], its summary, the nonces
//! and candidates of a pass, and the rules of when an epoch may be billed. The stages
//! (`preflight`, `settle`, `send`, `enforce`, ...) are `impl Biller` blocks of their own
//! files; this file imports none of them but the leaves (`breaker`, `receivables`).

use std::cell::Cell;
use std::collections::BTreeSet;

use crate::chain::escrow::client::Escrow;
use crate::chain::escrow::EscrowConfig;
use crate::chain::fees::FeeRule;
use crate::chain::gateway::Gateway;
use crate::config::BillingConfig;
use crate::error::Result;
use crate::net::clock::now_ms;
use crate::store::billing::Candidate;
use crate::store::Store;

use super::{breaker, receivables};

/// The epoch just closed is billed only after this many rounds of the new one, so the
/// contract's shard has most likely seen the change ("Epoch not closed yet" costs gas).
pub const SETTLE_ROUNDS: i64 = 3;
/// "Try later" failures of one epoch, counting the first, after which it is held.
pub const MAX_RETRIES: i64 = 8;
/// How long a transaction that is done may show no state on the contract before it is
/// treated as failed (the contract's shard may lag).
pub const RESOLVE_WAIT_MS: i64 = 30_000;

/// Receipts read per pass for the fees of settled transactions.
pub const FEE_READS_PER_PASS: usize = 50;

/// The wait before an epoch is sent again after its `n`-th "try later" failure:
/// 1 s, 2 s, 4 s, ... up to 5 min.
pub fn retry_backoff_ms(n: i64) -> i64 {
    1000 * (1i64 << n.clamp(1, 9).saturating_sub(1)).min(300)
}

/// The newest epoch that may be billed now, `rounds_passed` into epoch `current`.
pub fn newest_billable(current: i64, rounds_passed: i64) -> i64 {
    if rounds_passed >= SETTLE_ROUNDS {
        current - 1
    } else {
        current - 2
    }
}

/// The (agent, epoch) pairs a pass would consider now (also what `tick --dry-run` shows):
/// none whose last "try later" failure is still backing off.
pub fn candidates(store: &Store, current: i64, rounds_passed: i64) -> Result<Vec<Candidate>> {
    let now = now_ms();
    let mut out = Vec::new();
    for c in store.billing_candidates(newest_billable(current, rounds_passed))? {
        let (n, last) = store.retries(c.agent_id, c.epoch)?;
        // Held as unprofitable: weighed again in the next epoch, not before.
        let weighed = store.unprofitable_weighed(c.agent_id, c.epoch)?;
        if last.is_none_or(|last| now >= last + retry_backoff_ms(n))
            && weighed.is_none_or(|w| w < current)
        {
            out.push(c);
        }
    }
    Ok(out)
}

/// Whether a billing pass would do anything (the idle tick asks): a bill ready (its backoff over), an escrow
/// status or a settlement not read this epoch, an overdue bill to collect.
pub fn has_work(store: &Store, epoch: i64, rounds: i64, now: i64, enforce: bool) -> Result<bool> {
    if !candidates(store, epoch, rounds)?.is_empty()
        || !store.escrow_checks_due(epoch, now, 1)?.is_empty()
        || !store.open_bills(epoch, 1, false)?.is_empty()
    {
        return Ok(true);
    }
    if !enforce {
        return Ok(false);
    }
    match store.meta_grace_epochs()? {
        Some(grace) => Ok(!store.overdue_bills(epoch, grace, 1)?.is_empty()),
        None => Ok(true),
    }
}

pub struct Biller {
    pub(super) cfg: BillingConfig,
    pub(super) gateway: Gateway,
    pub(super) network_checked: bool,
    /// The gateway answered 404 to `/transaction/simulate`: bills are sent untried.
    pub(super) simulate_absent: Cell<bool>,
    /// The gateway gave no usable `/transaction/cost`: gas is sized from the last calls.
    pub(super) cost_absent: Cell<bool>,
    /// The chain's fee rule, from `/network/config` (`None`: it does not give all of it).
    pub(super) fee_rule: Cell<Option<FeeRule>>,
    /// The gas price of this process's transactions (`--billing-gas-price`, else the
    /// network's minimum).
    pub(super) gas_price: Cell<u64>,
}

#[derive(Debug, Default)]
pub struct BillingSummary {
    pub sent: usize,
    pub billed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub in_flight: usize,
    /// Epochs settled for good without being billed this pass (expired, refused).
    pub lost: usize,
    /// Epochs held for a human this pass.
    pub held: usize,
    /// Bills not sent because their expected fee is more than their charge.
    pub unprofitable: usize,
    /// Bills waiting for the standby's copy (its windows may belong to them).
    pub standby_waits: usize,
    /// Billing cannot go on until a human acts (wrong operator key, chain id, gas price).
    pub blocked: Option<String>,
    /// Milliseconds spent signing and sending new transactions, for the figures.
    pub send_ms: f64,
    /// Bills not sent because the simulation said the contract would refuse them.
    pub simulated_refusals: usize,
    /// `enforceEpoch` transactions sent, and those confirmed (Slashed or Delinquent).
    pub enforcements_sent: usize,
    pub enforced: usize,
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
        if self.simulated_refusals > 0 {
            write!(
                f,
                ", {} refused by simulation (not sent)",
                self.simulated_refusals
            )?;
        }
        if self.unprofitable > 0 {
            write!(f, ", {} held as unprofitable", self.unprofitable)?;
        }
        if self.standby_waits > 0 {
            write!(f, ", {} wait for the standby's copy", self.standby_waits)?;
        }
        if self.enforcements_sent + self.enforced > 0 {
            write!(
                f,
                ", {} enforcements sent, {} confirmed",
                self.enforcements_sent, self.enforced
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
            simulate_absent: Cell::new(false),
            cost_absent: Cell::new(false),
            fee_rule: Cell::new(None),
            gas_price: Cell::new(0),
        }
    }

    /// What a human changes to fix a failing configuration.
    fn fingerprint(&self) -> String {
        format!(
            "{} {} {} {} {} {}",
            self.cfg.chain,
            self.cfg.escrow,
            self.cfg.operator.address(),
            self.cfg.gas_limit,
            self.cfg.gas_price,
            self.cfg.proxy
        )
    }

    pub fn escrow(&self) -> Escrow<'_> {
        Escrow::new(&self.gateway, &self.cfg.escrow)
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
        store.set_meta_escrow(&config)?;
        if let Some(released) = breaker::configuration(store, &self.fingerprint(), now_ms())? {
            if released > 0 {
                log::warn!("billing configuration changed: {released} held epochs re-opened");
            }
        }
        let settled = self.settle_in_flight(store, &mut summary, halted)?;
        self.record_fees(store, FEE_READS_PER_PASS)?;
        let Some(in_flight) = settled else {
            return Ok(summary);
        };
        if let Some(reason) = breaker::tripped(store)? {
            summary.blocked = Some(reason);
            return Ok(summary);
        }
        let candidates = candidates(store, current, rounds_passed)?;
        let new = NewEpochs {
            candidates,
            config: &config,
            current,
            in_flight,
        };
        let mut nonces: Option<Nonces> = None;
        self.send_new_epochs(store, new, &mut nonces, &mut summary, halted)?;
        if self.cfg.enforce_after_grace && !halted() && summary.blocked.is_none() {
            self.enforce_overdue(store, &config, current, &mut nonces, &mut summary, halted)?;
        }
        if !halted() {
            let limit = receivables::READS_PER_PASS;
            receivables::follow(&self.escrow(), store, current, limit, false)?;
        }
        // Sent without an answer counts as in flight too; refused ones do not.
        summary.in_flight += summary.sent;
        Ok(summary)
    }
}

/// Whether billing can go on this tick.
pub enum Preflight {
    /// Go on, with the escrow's configuration.
    Ready(EscrowConfig),
    /// A configuration mismatch: nothing is sent until a human fixes it.
    Blocked(String),
    /// The gateway did not answer: try again next tick.
    Unavailable(String),
}

/// Nonces: the account's next nonce from the gateway, skipping those our pending
/// transactions hold, so a refused transaction's nonce is reused and no gap is left.
pub(crate) struct Nonces {
    next: u64,
    held: BTreeSet<u64>,
}

impl Nonces {
    pub(crate) fn new(next: u64, in_flight: &[u64]) -> Nonces {
        Nonces {
            next,
            held: in_flight.iter().copied().collect(),
        }
    }

    pub(crate) fn take(&mut self) -> u64 {
        while self.held.contains(&self.next) {
            self.next += 1;
        }
        self.held.insert(self.next);
        self.next
    }

    pub(crate) fn release(&mut self, nonce: u64) {
        self.held.remove(&nonce);
        self.next = self.next.min(nonce);
    }
}

/// What a pass may send: the candidates, the escrow's config, the current epoch and the
/// nonces already in flight.
pub(crate) struct NewEpochs<'a> {
    pub candidates: Vec<Candidate>,
    pub config: &'a EscrowConfig,
    pub current: i64,
    pub in_flight: Vec<u64>,
}
