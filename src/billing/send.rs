//! New transactions: for each candidate (agent, epoch), the contract's views, the judgement
//! of `escrow::judge`, then sign, store (write-ahead), send.

use std::collections::BTreeSet;
use std::time::Instant;

use super::{breaker, Biller, BillingSummary};
use crate::error::Result;
use crate::escrow::{self, Decision, EscrowConfig, Views};
use crate::gateway::Sent;
use crate::ledger::{settlement, Kind};
use crate::now_ms;
use crate::store::billing::{Candidate, Settled};
use crate::store::Store;
use crate::tx::{bill_epoch_data, Transaction};

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

/// What a pass may send: the candidates, the escrow's config, the current epoch and the
/// nonces already in flight.
pub(super) struct NewEpochs<'a> {
    pub candidates: Vec<Candidate>,
    pub config: &'a EscrowConfig,
    pub current: i64,
    pub in_flight: Vec<u64>,
}

impl Biller {
    /// Judges and sends the candidates in order until one send goes wrong, the slow-start
    /// window is full, or `halted`.
    pub(super) fn send_new_epochs(
        &self,
        store: &mut Store,
        new: NewEpochs,
        summary: &mut BillingSummary,
        halted: &dyn Fn() -> bool,
    ) -> Result<()> {
        let NewEpochs {
            candidates,
            config,
            current,
            in_flight,
        } = new;
        // Slow start: never more in flight than the breaker's window.
        let mut room = breaker::window(store)? - in_flight.len() as i64;
        // The account's nonce is asked for only once something is to be sent.
        let mut nonces: Option<Nonces> = None;
        for c in candidates {
            if halted() || room <= 0 {
                break;
            }
            let Some((windows, charged)) = self.decide(store, &c, config, current, summary)? else {
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
            if let Some(nonces) = nonces.as_mut() {
                room -= 1;
                if !self.send_one(store, &c, windows, charged, nonces, summary)? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Asks the views and records the judgement. `Some((windows, charge))`: send now.
    fn decide(
        &self,
        store: &mut Store,
        c: &Candidate,
        config: &EscrowConfig,
        current: i64,
        summary: &mut BillingSummary,
    ) -> Result<Option<(u64, u128)>> {
        let escrow = self.escrow();
        let views = escrow
            .epoch_state(&c.agent, c.epoch as u64)
            .and_then(|state| {
                Ok(Views {
                    state,
                    info: escrow.agent_info(&c.agent)?,
                })
            });
        let views = match views {
            Ok(v) => v,
            Err(e) => {
                log::warn!("billing of {} epoch {} waits: {e}", c.agent, c.epoch);
                return Ok(None);
            }
        };
        let now = now_ms();
        match escrow::judge(c.epoch, c.windows, current, &views, config) {
            Decision::AlreadyBilled { state } => {
                let kind = Kind::BilledFoundOnChain;
                store.record_decision(
                    c.agent_id,
                    c.epoch,
                    c.windows,
                    kind,
                    "already billed on chain",
                    now,
                )?;
                let found = Settled {
                    settlement: Some(settlement(state)),
                    ..Settled::new(kind, "billed (found on chain)")
                };
                store.settle_epoch(c.agent_id, c.epoch, &found, now)?;
                summary.skipped += 1;
                Ok(None)
            }
            Decision::Unbillable { kind, reason } => {
                store.record_decision(c.agent_id, c.epoch, c.windows, kind, &reason, now)?;
                store.settle_epoch(c.agent_id, c.epoch, &Settled::new(kind, &reason), now)?;
                summary.skipped += 1;
                summary.lost += 1;
                log::warn!("{} epoch {}: not billed: {reason}", c.agent, c.epoch);
                Ok(None)
            }
            Decision::Send {
                windows,
                charged_atto,
            } => {
                if windows < c.windows as u64 {
                    log::warn!(
                        "{} epoch {}: {} windows clipped to {windows} by the contract's guards",
                        c.agent,
                        c.epoch,
                        c.windows
                    );
                }
                Ok(Some((windows, charged_atto)))
            }
        }
    }

    /// Signs, stores (write-ahead), sends. Returns false when billing should stop this tick.
    fn send_one(
        &self,
        store: &Store,
        c: &Candidate,
        windows: u64,
        charged_atto: u128,
        nonces: &mut Nonces,
        summary: &mut BillingSummary,
    ) -> Result<bool> {
        let started = Instant::now();
        let nonce = nonces.take();
        let tx = Transaction {
            nonce,
            receiver: self.cfg.escrow,
            sender: self.cfg.operator.address(),
            gas_price: self.cfg.gas_price,
            gas_limit: self.cfg.gas_limit,
            data: bill_epoch_data(&c.agent, c.epoch as u64, windows),
            chain_id: self.cfg.chain.clone(),
        };
        let signed = tx.sign(&self.cfg.operator);
        let id = store.record_signed(c, windows as i64, nonce, &signed, charged_atto, now_ms())?;
        let sent = self.gateway.send_transaction(&signed);
        summary.send_ms += started.elapsed().as_secs_f64() * 1000.0;
        match sent {
            Sent::Accepted(hash) => {
                store.record_hash(id, &hash, now_ms())?;
                summary.sent += 1;
                log::info!(
                    "billed {} epoch {} ({windows} windows): tx {hash} nonce {nonce}",
                    c.agent,
                    c.epoch
                );
                Ok(true)
            }
            Sent::Refused(e) => {
                let reason = format!("refused by the gateway: {e}");
                store.record_attempt(id, Kind::GatewayRefused, &reason, now_ms())?;
                nonces.release(nonce);
                summary.failed += 1;
                log::warn!(
                    "billing transaction for {} epoch {} refused: {e}",
                    c.agent,
                    c.epoch
                );
                Ok(false)
            }
            Sent::Unknown(e) => {
                summary.sent += 1;
                log::warn!(
                    "billing transaction for {} epoch {}: no answer ({e}); re-sent next tick",
                    c.agent,
                    c.epoch
                );
                Ok(false)
            }
        }
    }
}
