//! Settling the transactions in flight: what became of each one we sent.

use super::{Biller, BillingSummary, MAX_UNEXPLAINED_FAILURES};
use crate::error::Result;
use crate::escrow::{classify_failure, Failure};
use crate::gateway::Sent;
use crate::keys::Address;
use crate::now_ms;
use crate::store::billing::PendingTx;
use crate::store::Store;

impl Biller {
    /// Settles every transaction in flight. Returns the nonces still held, or `None` when
    /// no new transaction may be sent this pass: a transaction in an unknown state (a later
    /// nonce could wait behind it forever), billing blocked, or the pass halted.
    pub(super) fn settle_in_flight(
        &self,
        store: &mut Store,
        summary: &mut BillingSummary,
        halted: &dyn Fn() -> bool,
    ) -> Result<Option<Vec<u64>>> {
        let mut uncertain = false;
        for p in store.pending_transactions()? {
            if halted() {
                return Ok(None);
            }
            uncertain |= !self.settle(store, &p, summary)?;
        }
        let in_flight: Vec<u64> = store
            .pending_transactions()?
            .iter()
            .map(|p| p.nonce as u64)
            .collect();
        summary.in_flight = in_flight.len();
        if summary.blocked.is_some() || uncertain {
            return Ok(None);
        }
        Ok(Some(in_flight))
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
            Some("success") => record_billed(store, p, "billed", summary),
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
                self.resolve_used_nonce(store, p, summary)
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

    /// Our nonce was used, by this transaction or another: the contract's state says which.
    fn resolve_used_nonce(
        &self,
        store: &mut Store,
        p: &PendingTx,
        summary: &mut BillingSummary,
    ) -> Result<bool> {
        let state = Address::parse(&p.address)
            .and_then(|agent| self.escrow().epoch_state(&agent, p.epoch as u64));
        match state {
            Ok(Some(_)) => record_billed(store, p, "billed (confirmed by getEpochState)", summary),
            Ok(None) => {
                store.record_tx_failed(
                    p.id,
                    "nonce used, epoch not billed: will be billed again",
                    now_ms(),
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

    fn failed(
        &self,
        store: &mut Store,
        p: &PendingTx,
        message: Option<&str>,
        summary: &mut BillingSummary,
    ) -> Result<()> {
        let now = now_ms();
        let shown = message.unwrap_or("no message");
        match classify_failure(message) {
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

/// Our transaction billed its epoch.
fn record_billed(
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
