//! New transactions: for each candidate (agent, epoch), the contract's views, the judgement
//! of `escrow::judge`, then sign, store (write-ahead), send.

use std::collections::BTreeSet;
use std::time::Instant;

use super::{Biller, BillingSummary};
use crate::error::Result;
use crate::escrow::{self, Decision, EscrowConfig, Views};
use crate::gateway::Sent;
use crate::now_ms;
use crate::store::billing::Candidate;
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

impl Biller {
    /// Judges and sends the candidates in order until one send goes wrong or `halted`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_new_epochs(
        &self,
        store: &mut Store,
        candidates: Vec<Candidate>,
        config: &EscrowConfig,
        current: i64,
        in_flight: Vec<u64>,
        summary: &mut BillingSummary,
        halted: &dyn Fn() -> bool,
    ) -> Result<()> {
        // The account's nonce is asked for only once something is to be sent.
        let mut nonces: Option<Nonces> = None;
        for c in candidates {
            if halted() {
                break;
            }
            let Some(windows) = self.decide(store, &c, config, current, summary)? else {
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
                if !self.send_one(store, &c, windows, nonces, summary)? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Asks the views and records the judgement. `Some(windows)`: send that many now.
    fn decide(
        &self,
        store: &mut Store,
        c: &Candidate,
        config: &EscrowConfig,
        current: i64,
        summary: &mut BillingSummary,
    ) -> Result<Option<u64>> {
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
            Decision::AlreadyBilled => {
                store.record_skipped(c, "already billed on chain", now)?;
                store.record_billed(c.agent_id, c.epoch, None, "billed (found on chain)", now)?;
                summary.skipped += 1;
                Ok(None)
            }
            Decision::Unbillable { reason, clipped } => {
                store.record_skipped(c, &reason, now)?;
                store.record_unbillable(c.agent_id, c.epoch, &reason, clipped)?;
                summary.skipped += 1;
                summary.lost += 1;
                log::warn!("{} epoch {}: not billed: {reason}", c.agent, c.epoch);
                Ok(None)
            }
            Decision::Send { windows } => {
                if windows < c.windows as u64 {
                    log::warn!(
                        "{} epoch {}: {} windows clipped to {windows} by the contract's guards",
                        c.agent,
                        c.epoch,
                        c.windows
                    );
                }
                Ok(Some(windows))
            }
        }
    }

    /// Signs, stores (write-ahead), sends. Returns false when billing should stop this tick.
    fn send_one(
        &self,
        store: &Store,
        c: &Candidate,
        windows: u64,
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
        let id = store.record_signed(c, windows as i64, nonce, &signed, now_ms())?;
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
                store.record_tx_failed(id, &format!("refused by the gateway: {e}"), now_ms())?;
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
