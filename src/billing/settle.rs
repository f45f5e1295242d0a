//! Settling the transactions in flight. The chain's transaction status is only a hint
//! (a shallow `success` can hide a failed contract call): an epoch is billed when, and
//! only when, the contract's `getEpochState` says so.

use super::breaker;
use super::pass::{Biller, BillingSummary, RESOLVE_WAIT_MS};
use super::refusal::Refusal;
use crate::chain::gateway::{GatewayError, Sent};
use crate::chain::ledger::{EpochState, Kind};
use crate::crypto::keys::Address;
use crate::error::Result;
use crate::net::clock::now_ms;
use crate::store::billing::{PendingTx, Settled};
use crate::store::Store;

/// What the chain says of a transaction that left the pool.
pub(super) enum Fate {
    /// Its contract call has not finished (cross-shard results still coming).
    Running,
    /// The call succeeded by its results, yet the contract shows no state.
    Succeeded,
    /// The call failed, with the contract's message when there is one.
    Failed(Option<String>),
}

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
        uncertain |= !self.settle_enforcements(store, summary)?;
        let in_flight = self.in_flight_nonces(store)?;
        summary.in_flight = in_flight.len();
        if summary.blocked.is_some() || uncertain {
            return Ok(None);
        }
        Ok(Some(in_flight))
    }

    /// Settles one transaction in flight. Returns false when it may not be on the chain
    /// or its outcome could not be read (a re-send without an answer, the contract's state
    /// or the call's results unreadable). A status the gateway could not give keeps it
    /// pending without that: it has a hash, so the chain has it and later nonces can go.
    fn settle(
        &self,
        store: &mut Store,
        p: &PendingTx,
        summary: &mut BillingSummary,
    ) -> Result<bool> {
        let Some(hash) = &p.tx_hash else {
            return self.resend(store, p, summary);
        };
        match self.gateway.transaction_status(hash) {
            Err(e) => {
                log::warn!("status of tx {hash} unknown this tick: {e}");
                Ok(true)
            }
            Ok(None) => self.resend(store, p, summary),
            Ok(Some(s)) if matches!(s.as_str(), "success" | "fail" | "invalid") => {
                self.confirm(store, p, hash, summary)
            }
            Ok(Some(_)) => Ok(true), // pending: the chain has it; look again next tick
        }
    }

    /// The transaction left the pool: the contract's state decides.
    fn confirm(
        &self,
        store: &mut Store,
        p: &PendingTx,
        hash: &str,
        summary: &mut BillingSummary,
    ) -> Result<bool> {
        let state = match self.epoch_state(p) {
            Ok(state) => state,
            Err(e) => {
                log::warn!(
                    "getEpochState of {} epoch {} unavailable: {e}",
                    p.address,
                    p.epoch
                );
                return Ok(false);
            }
        };
        if let Some(state) = state {
            self.billed(store, p, Kind::Billed, state, summary)?;
            return Ok(true);
        }
        match self.fate(hash) {
            Err(e) => {
                // A gateway fault while reading why: not a failure, look again next tick.
                log::warn!("why tx {hash} failed is unknown this tick: {e}");
                Ok(false)
            }
            Ok(Fate::Running) => Ok(true),
            Ok(Fate::Succeeded) => self.unresolved(
                store,
                p,
                "the call succeeded but getEpochState shows no bill",
                summary,
            ),
            Ok(Fate::Failed(message)) => {
                self.failed(store, p, message.as_deref(), summary)?;
                Ok(true)
            }
        }
    }

    fn epoch_state(&self, p: &PendingTx) -> Result<Option<EpochState>, String> {
        let agent = Address::parse(&p.address)?;
        Ok(self.escrow().epoch_state(&agent, p.epoch as u64)?)
    }

    /// Why a transaction failed: `process-status`, else its `signalError` event.
    pub(super) fn fate(&self, hash: &str) -> Result<Fate, GatewayError> {
        let (status, reason) = match self.gateway.process_status(hash) {
            Ok(answer) => answer,
            // A gateway without the route: the results' event is the other witness.
            Err(_) => return Ok(Fate::Failed(self.gateway.transaction_error(hash)?)),
        };
        match status.as_str() {
            "pending" => Ok(Fate::Running),
            "success" => Ok(Fate::Succeeded),
            _ => match reason {
                Some(r) => Ok(Fate::Failed(Some(r))),
                None => Ok(Fate::Failed(self.gateway.transaction_error(hash)?)),
            },
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
            Sent::NonceUsed(_) => self.resolve_used_nonce(store, p, summary),
            Sent::Refused(e) => {
                let reason = format!("refused by the gateway on re-send: {e}");
                store.record_attempt(p.id, Kind::GatewayRefused, &reason, now)?;
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

    /// Our nonce was used, by this very transaction (whose hash we never learned): the
    /// contract's state tells whether it billed. Its call may still be running on the
    /// contract's shard, so an empty state is waited on before the epoch is re-opened.
    fn resolve_used_nonce(
        &self,
        store: &mut Store,
        p: &PendingTx,
        summary: &mut BillingSummary,
    ) -> Result<bool> {
        match self.epoch_state(p) {
            Ok(Some(state)) => {
                self.billed(store, p, Kind::Billed, state, summary)?;
                Ok(true)
            }
            Ok(None) => self.unresolved(store, p, "nonce used, epoch not billed", summary),
            Err(e) => {
                log::warn!("cannot resolve tx of {} epoch {}: {e}", p.address, p.epoch);
                Ok(false)
            }
        }
    }

    /// The transaction is done but the contract shows no bill: wait a little (its state
    /// may lag), then treat it as a failure without a message.
    fn unresolved(
        &self,
        store: &mut Store,
        p: &PendingTx,
        what: &str,
        summary: &mut BillingSummary,
    ) -> Result<bool> {
        let now = now_ms();
        let since = p.unresolved_ms.unwrap_or(now);
        if p.unresolved_ms.is_none() {
            store.record_unresolved(p.id, now)?;
        }
        if now - since < RESOLVE_WAIT_MS {
            return Ok(false);
        }
        if p.tx_hash.is_none() {
            // We never learned its hash, so not its message either: try again (the views
            // decide before anything is sent, and the contract never bills twice).
            let reason = format!("{what}: will be billed again");
            let record = own_row(p.id);
            self.retry_later(store, (p.agent_id, p.epoch), &reason, &record, summary)?;
        } else {
            self.failed(store, p, None, summary)?;
        }
        Ok(true)
    }

    fn failed(
        &self,
        store: &mut Store,
        p: &PendingTx,
        message: Option<&str>,
        summary: &mut BillingSummary,
    ) -> Result<()> {
        summary.failed += 1;
        log::warn!(
            "billing tx of {} epoch {} failed on chain: {}",
            p.address,
            p.epoch,
            message.unwrap_or("no message")
        );
        let record = own_row(p.id);
        let refusal = Refusal {
            agent_id: p.agent_id,
            epoch: p.epoch,
            message,
            simulated: false,
        };
        self.refused(store, &refusal, &record, summary)
    }

    /// The contract has the epoch billed.
    fn billed(
        &self,
        store: &mut Store,
        p: &PendingTx,
        kind: Kind,
        state: EpochState,
        summary: &mut BillingSummary,
    ) -> Result<()> {
        let now = now_ms();
        store.record_attempt(p.id, kind, "billed (confirmed by getEpochState)", now)?;
        let settled = Settled {
            charged_windows: Some(p.windows),
            tx_hash: p.tx_hash.as_deref(),
            charged_atto: p.charged_atto.as_deref(),
            settlement: Some(state),
            ..Settled::new(kind, "billed")
        };
        store.settle_epoch(p.agent_id, p.epoch, &settled, now)?;
        breaker::billed(store)?;
        summary.billed += 1;
        Ok(())
    }
}

/// A refusal of a transaction on chain is written on the transaction's own attempt row.
fn own_row(id: i64) -> impl Fn(&Store, Kind, &str) -> Result<()> {
    move |store: &Store, kind: Kind, reason: &str| store.record_attempt(id, kind, reason, now_ms())
}
