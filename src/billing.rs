//! Exactly-once epoch billing on the `StreamAgencyEscrow` contract.
//!
//! Each tick: (1) settle the transactions already sent (status, or re-send of the identical
//! bytes when the gateway lost them), (2) for each agent, its lowest closed epoch not yet
//! settled: ask the contract's views, never send what they say will fail, clip to the guards,
//! sign, store the signed bytes and nonce (write-ahead), send, store the hash.
//! At most one transaction per agent is in flight, so epochs go out in increasing order.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::config::BillingConfig;
use crate::error::Result;
use crate::escrow::{self, AgentStatus, Escrow, EscrowConfig, Failure};
use crate::gateway::{Gateway, Sent};
use crate::keys::Address;
use crate::now_ms;
use crate::store::billing::{Candidate, PendingTx};
use crate::store::Store;
use crate::tx::{bill_epoch_data, Transaction};

/// The epoch just closed is billed only after this many rounds of the new one, so the
/// contract's shard has most likely seen the change ("Epoch not closed yet" costs gas).
pub const SETTLE_ROUNDS: i64 = 3;
/// Failures without a known contract message are retried this many times, then left to a human.
pub const MAX_UNEXPLAINED_FAILURES: i64 = 3;

/// The newest epoch that may be billed now, `rounds_passed` into epoch `current`.
pub fn newest_billable(current: i64, rounds_passed: i64) -> i64 {
    if rounds_passed >= SETTLE_ROUNDS {
        current - 1
    } else {
        current - 2
    }
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

/// Nonces: the account's next nonce from the gateway, skipping those our pending
/// transactions hold, so a refused transaction's nonce is reused and no gap is left.
struct Nonces {
    next: u64,
    held: BTreeSet<u64>,
}

impl Nonces {
    fn take(&mut self) -> u64 {
        while self.held.contains(&self.next) {
            self.next += 1;
        }
        self.held.insert(self.next);
        self.next
    }

    fn release(&mut self, nonce: u64) {
        self.held.remove(&nonce);
        self.next = self.next.min(nonce);
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

    /// Chain id and minimum gas price, checked once: a mismatch would make every
    /// transaction invalid. `Ok(Some(reason))` blocks billing; `Err` is a gateway fault.
    fn check_network(&mut self) -> std::result::Result<Option<String>, String> {
        if self.network_checked {
            return Ok(None);
        }
        let net = self.gateway.network_config()?;
        if net.chain_id != self.cfg.chain {
            return Ok(Some(format!(
                "--billing-chain is {} but the gateway's chain id is {}: fix the configuration",
                self.cfg.chain, net.chain_id
            )));
        }
        if self.cfg.gas_price < net.min_gas_price {
            return Ok(Some(format!(
                "--billing-gas-price {} is below the chain's minimum {}",
                self.cfg.gas_price, net.min_gas_price
            )));
        }
        self.network_checked = true;
        Ok(None)
    }

    /// One billing pass. `current` is the current epoch, `rounds_passed` how far into it.
    pub fn bill(
        &mut self,
        store: &mut Store,
        current: i64,
        rounds_passed: i64,
        halted: &dyn Fn() -> bool,
    ) -> Result<BillingSummary> {
        let mut summary = BillingSummary::default();
        match self.check_network() {
            Ok(None) => {}
            Ok(Some(blocked)) => {
                summary.blocked = Some(blocked);
                return Ok(summary);
            }
            Err(e) => {
                log::warn!("billing skipped this tick: {e}");
                return Ok(summary);
            }
        }
        let config = match self.escrow().config() {
            Ok(c) => c,
            Err(e) => {
                log::warn!("billing skipped this tick: escrow config unavailable: {e}");
                return Ok(summary);
            }
        };
        if config.operator != self.cfg.operator.address() {
            summary.blocked = Some(format!(
                "the escrow's operator is {} but --operator-pem holds {}: billing would fail with 'Only operator'",
                config.operator,
                self.cfg.operator.address()
            ));
            return Ok(summary);
        }
        store.set_meta_escrow(config.window_reward, config.max_backbill_epochs)?;

        // 1. Settle what is in flight. Any transaction in an unknown state stops new sends:
        //    a later nonce could wait behind it forever.
        let mut uncertain = false;
        for p in store.pending_transactions()? {
            if halted() {
                return Ok(summary);
            }
            uncertain |= !self.settle(store, &p, &mut summary)?;
        }
        let in_flight: Vec<u64> = store
            .pending_transactions()?
            .iter()
            .map(|p| p.nonce as u64)
            .collect();
        summary.in_flight = in_flight.len();
        if summary.blocked.is_some() || uncertain {
            return Ok(summary);
        }

        // 2. New transactions.
        let candidates = store.billing_candidates(newest_billable(current, rounds_passed) + 1)?;
        let mut nonces: Option<Nonces> = None;
        for c in candidates {
            if halted() {
                break;
            }
            let Some(windows) = self.decide(store, &c, &config, current, &mut summary)? else {
                continue;
            };
            if nonces.is_none() {
                match self
                    .gateway
                    .account_nonce(&self.cfg.operator.address().to_bech32())
                {
                    Ok(next) => {
                        let held = in_flight.iter().copied().collect();
                        nonces = Some(Nonces { next, held });
                    }
                    Err(e) => {
                        log::warn!("billing paused: operator nonce unavailable: {e}");
                        break;
                    }
                }
            }
            let nonces = nonces.as_mut().expect("set above");
            if !self.send_new(store, &c, windows, nonces, &mut summary)? {
                break;
            }
        }
        // Sent without an answer counts as in flight too; refused ones do not.
        summary.in_flight += summary.sent;
        Ok(summary)
    }

    /// Asks the views whether (agent, epoch) can be billed and how many windows; records
    /// every reason not to send. `None`: send nothing for it now.
    fn decide(
        &self,
        store: &mut Store,
        c: &Candidate,
        config: &EscrowConfig,
        current: i64,
        summary: &mut BillingSummary,
    ) -> Result<Option<u64>> {
        let now = now_ms();
        let agent = match Address::parse(&c.address) {
            Ok(a) => a,
            Err(e) => {
                log::error!(
                    "agent {} has an invalid address in the database: {e}",
                    c.address
                );
                return Ok(None);
            }
        };
        let escrow = self.escrow();
        let views = escrow
            .epoch_state(&agent, c.epoch as u64)
            .and_then(|state| Ok((state, escrow.agent_info(&agent)?)));
        let (state, info) = match views {
            Ok(v) => v,
            Err(e) => {
                log::warn!("billing of {} epoch {} waits: {e}", c.address, c.epoch);
                return Ok(None);
            }
        };
        if state.is_some() {
            store.record_skipped(c, "already billed on chain", now)?;
            store.record_billed(c.agent_id, c.epoch, None, "billed (found on chain)", now)?;
            summary.skipped += 1;
            return Ok(None);
        }
        let mut settle =
            |reason: &str, clipped: bool| unbillable(store, c, reason, clipped, summary);
        if current - c.epoch > config.max_backbill_epochs as i64 {
            return settle(
                &format!(
                    "expired: older than max_backbill_epochs ({})",
                    config.max_backbill_epochs
                ),
                false,
            );
        }
        let Some(info) = info else {
            return settle("refused: agent not enrolled on the escrow", false);
        };
        if info.status == AgentStatus::Cancelled {
            return settle("refused: agent cancelled on the escrow", false);
        }
        if (c.epoch as u64) < info.joined_epoch {
            return settle(
                &format!(
                    "refused: before the agent's join epoch {}",
                    info.joined_epoch
                ),
                false,
            );
        }
        if info.last_billed_epoch > 0 && (c.epoch as u64) <= info.last_billed_epoch {
            return settle(
                &format!(
                    "refused: epoch already passed in billing order (last billed {})",
                    info.last_billed_epoch
                ),
                false,
            );
        }
        let allowed = escrow::allowed_windows(c.windows as u64, &info, config);
        if allowed == 0 {
            return settle("clipped: the contract's guards allow 0 windows", true);
        }
        if allowed < c.windows as u64 {
            log::warn!(
                "{} epoch {}: {} windows clipped to {} by the contract's guards",
                c.address,
                c.epoch,
                c.windows,
                allowed
            );
        }
        Ok(Some(allowed))
    }

    /// Signs, stores (write-ahead), sends. Returns false when billing should stop this tick.
    fn send_new(
        &self,
        store: &Store,
        c: &Candidate,
        windows: u64,
        nonces: &mut Nonces,
        summary: &mut BillingSummary,
    ) -> Result<bool> {
        let started = Instant::now();
        let agent = Address::parse(&c.address).expect("checked in decide");
        let nonce = nonces.take();
        let tx = Transaction {
            nonce,
            receiver: self.cfg.escrow,
            sender: self.cfg.operator.address(),
            gas_price: self.cfg.gas_price,
            gas_limit: self.cfg.gas_limit,
            data: bill_epoch_data(&agent, c.epoch as u64, windows),
            chain_id: self.cfg.chain.clone(),
        };
        let signed = tx.sign(&self.cfg.operator);
        let id = store.record_signed(c, windows as i64, nonce, &signed, now_ms())?;
        let sent = self.gateway.send_transaction(&signed);
        summary.send_ms += started.elapsed().as_secs_f64() * 1000.0;
        match sent {
            Sent::Accepted(hash) => {
                store.record_hash(id, &hash, now_ms())?;
                summary.sent += 1;
                log::info!(
                    "billed {} epoch {} ({windows} windows): tx {hash} nonce {nonce}",
                    c.address,
                    c.epoch
                );
                Ok(true)
            }
            Sent::Refused(e) => {
                store.record_tx_failed(id, &format!("refused by the gateway: {e}"), now_ms())?;
                nonces.release(nonce);
                summary.failed += 1;
                log::warn!(
                    "billing transaction for {} epoch {} refused: {e}",
                    c.address,
                    c.epoch
                );
                Ok(false)
            }
            Sent::Unknown(e) => {
                summary.sent += 1;
                log::warn!(
                    "billing transaction for {} epoch {}: no answer ({e}); re-sent next tick",
                    c.address,
                    c.epoch
                );
                Ok(false)
            }
        }
    }

    /// Settles one transaction in flight. Returns false when its fate is still unknown
    /// (no hash yet, or the gateway could not tell).
    fn settle(
        &self,
        store: &mut Store,
        p: &PendingTx,
        summary: &mut BillingSummary,
    ) -> Result<bool> {
        let status = match &p.tx_hash {
            Some(hash) => match self.gateway.transaction_status(hash) {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("status of tx {hash} unknown this tick: {e}");
                    return Ok(true);
                }
            },
            None => None,
        };
        match status.as_deref() {
            Some("success") => billed(store, p, "billed", summary),
            Some("fail") | Some("invalid") => {
                let hash = p.tx_hash.as_deref().unwrap_or("");
                let message = self.gateway.transaction_error(hash).unwrap_or_default();
                self.failed(store, p, message.as_deref(), summary)?;
                Ok(true)
            }
            Some(_) => Ok(true), // pending: the chain has it; look again next tick
            None => self.resend(store, p, summary),
        }
    }

    /// Sends the stored bytes again: they cannot execute twice. A used nonce is resolved
    /// through `getEpochState`.
    fn resend(
        &self,
        store: &mut Store,
        p: &PendingTx,
        summary: &mut BillingSummary,
    ) -> Result<bool> {
        let now = now_ms();
        match self.gateway.send_transaction(&p.signed_tx) {
            Sent::Accepted(hash) => {
                store.record_hash(p.id, &hash, now)?;
                log::info!(
                    "re-sent billing tx of {} epoch {}: {hash}",
                    p.address,
                    p.epoch
                );
                Ok(true)
            }
            Sent::Refused(e) if e.contains("lowerNonceInTx") => {
                let agent = Address::parse(&p.address).expect("stored addresses are valid");
                match self.escrow().epoch_state(&agent, p.epoch as u64) {
                    Ok(Some(_)) => billed(store, p, "billed (confirmed by getEpochState)", summary),
                    Ok(None) => {
                        store.record_tx_failed(
                            p.id,
                            "nonce used, epoch not billed: will be billed again",
                            now,
                        )?;
                        summary.failed += 1;
                        Ok(true)
                    }
                    Err(e) => {
                        log::warn!("cannot resolve tx of {} epoch {}: {e}", p.address, p.epoch);
                        Ok(false)
                    }
                }
            }
            Sent::Refused(e) => {
                store.record_tx_failed(
                    p.id,
                    &format!("refused by the gateway on re-send: {e}"),
                    now,
                )?;
                summary.failed += 1;
                Ok(true)
            }
            Sent::Unknown(e) => {
                log::warn!(
                    "re-send of billing tx of {} epoch {}: no answer: {e}",
                    p.address,
                    p.epoch
                );
                Ok(false)
            }
        }
    }

    fn failed(
        &self,
        store: &mut Store,
        p: &PendingTx,
        message: Option<&str>,
        summary: &mut BillingSummary,
    ) -> Result<()> {
        let now = now_ms();
        let shown = message.unwrap_or("no message");
        match escrow::classify_failure(message) {
            Failure::AlreadyBilled => {
                store.record_tx_failed(p.id, &format!("failed: {shown} (treated as done)"), now)?;
                store.record_billed(p.agent_id, p.epoch, None, "billed (found on chain)", now)?;
            }
            Failure::Expired => {
                store.record_tx_failed(p.id, &format!("failed: {shown}"), now)?;
                store.record_unbillable(p.agent_id, p.epoch, "expired: too old to bill", false)?;
                summary.lost += 1;
            }
            Failure::Final(m) => {
                store.record_tx_failed(p.id, &format!("failed: {m}"), now)?;
                store.record_unbillable(p.agent_id, p.epoch, &format!("refused: {m}"), false)?;
                summary.lost += 1;
            }
            Failure::Retry(m) => {
                store.record_tx_failed(p.id, &format!("failed, will retry: {m}"), now)?;
            }
            Failure::WrongOperator => {
                store.record_tx_failed(p.id, "failed: Only operator", now)?;
                summary.blocked =
                    Some("the contract refused our operator key ('Only operator')".into());
            }
            Failure::Unknown(m) => {
                store.record_tx_failed(p.id, &format!("unexplained: {m}"), now)?;
                if store.unexplained_failures(p.agent_id, p.epoch)? >= MAX_UNEXPLAINED_FAILURES {
                    store.record_unbillable(
                        p.agent_id,
                        p.epoch,
                        &format!("needs a human: failed {MAX_UNEXPLAINED_FAILURES} times: {m}"),
                        false,
                    )?;
                    summary.lost += 1;
                }
            }
        }
        summary.failed += 1;
        log::warn!(
            "billing tx of {} epoch {} failed on chain: {shown}",
            p.address,
            p.epoch
        );
        Ok(())
    }
}

/// Records why (agent, epoch) is never sent, and settles it for good.
fn unbillable(
    store: &Store,
    c: &Candidate,
    reason: &str,
    clipped: bool,
    summary: &mut BillingSummary,
) -> Result<Option<u64>> {
    store.record_skipped(c, reason, now_ms())?;
    store.record_unbillable(c.agent_id, c.epoch, reason, clipped)?;
    summary.skipped += 1;
    summary.lost += 1;
    log::warn!("{} epoch {}: not billed: {reason}", c.address, c.epoch);
    Ok(None)
}

/// Our transaction billed its epoch.
fn billed(
    store: &mut Store,
    p: &PendingTx,
    outcome: &str,
    summary: &mut BillingSummary,
) -> Result<bool> {
    let tx = Some((p.id, p.windows, p.tx_hash.as_deref()));
    store.record_billed(p.agent_id, p.epoch, tx, outcome, now_ms())?;
    summary.billed += 1;
    Ok(true)
}
