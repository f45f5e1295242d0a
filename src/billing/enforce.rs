//! Collections (`--enforce-after-grace`): a bill still unpaid after its deadline
//! (`epoch + grace_epochs`) is enforced once with `enforceEpoch(agent, epoch)`, which takes
//! the due from the agent's bond (Slashed) or what the bond has (Delinquent). Like
//! `billEpoch`: the views decide first, the signed transaction is stored before it is
//! sent, the contract's `getEpochState` confirms, and the breaker counts what nobody can
//! explain.

use super::breaker;
use super::pass::Nonces;
use super::pass::{Biller, BillingSummary};
use crate::chain::escrow::EscrowConfig;
use crate::chain::fees::claw;
use crate::chain::gateway::Sent;
use crate::chain::ledger::EpochState;
use crate::chain::tx::enforce_epoch_data;
use crate::crypto::keys::Address;
use crate::error::Result;
use crate::net::clock::now_ms;
use crate::store::escrow::{BillRead, Outcome, Overdue, PendingEnforcement};
use crate::store::Store;

/// What an overdue bill's views said, in epoch `current`: still `due`, of which the bond
/// can give `recoverable`.
struct Due {
    due: u128,
    recoverable: u128,
    current: i64,
}

impl Biller {
    /// Sends an `enforceEpoch` for each overdue bill, within the slow-start window.
    pub(super) fn enforce_overdue(
        &self,
        store: &mut Store,
        config: &EscrowConfig,
        current: i64,
        nonces: &mut Option<Nonces>,
        summary: &mut BillingSummary,
        halted: &dyn Fn() -> bool,
    ) -> Result<()> {
        let in_flight = self.in_flight_nonces(store)?;
        let mut room = breaker::window(store)? - in_flight.len() as i64;
        let grace = i64::try_from(config.grace_epochs).unwrap_or(i64::MAX / 2);
        for bill in store.overdue_bills(current, grace, room.max(0) as usize)? {
            if halted() || room <= 0 || summary.blocked.is_some() {
                break;
            }
            let Ok(agent) = Address::parse(&bill.address) else {
                continue;
            };
            let Some(due) = self.still_due(store, &agent, &bill, current)? else {
                continue;
            };
            let Some(nonces) = self.nonces(nonces, &in_flight) else {
                break;
            };
            room -= 1;
            if !self.send_enforcement(store, (&agent, &bill), due, nonces, summary)? {
                break;
            }
        }
        Ok(())
    }

    /// The views before signing: still Billed, something due, not paid from the bond at
    /// cancellation. `Some(due)` when an enforcement is worth sending.
    fn still_due(
        &self,
        store: &Store,
        agent: &Address,
        bill: &Overdue,
        current: i64,
    ) -> Result<Option<Due>> {
        let escrow = self.escrow();
        let read = escrow
            .epoch_state(agent, bill.epoch as u64)
            .and_then(|state| {
                let due = escrow.epoch_debt(agent, bill.epoch as u64)?;
                let (bond, outstanding) = escrow.agent_financials(agent)?;
                Ok((state, due, (bond, outstanding)))
            });
        match read {
            Ok((Some(EpochState::Billed), due, (bond, outstanding)))
                if due > 0 && outstanding > 0 =>
            {
                let recoverable = due.min(bond);
                Ok(Some(Due {
                    due,
                    recoverable,
                    current,
                }))
            }
            Ok((Some(state), due, (_, outstanding))) => {
                let read = BillRead::from_views(state, due, outstanding);
                store.set_bill_read(bill.agent_id, bill.epoch, Some(read), current)?;
                Ok(None)
            }
            Ok((None, _, _)) => Ok(None),
            Err(e) => {
                log::warn!("enforcement of {agent} epoch {} waits: {e}", bill.epoch);
                Ok(None)
            }
        }
    }

    /// An enforcement is weighed by what it does, not only by what it takes: besides what
    /// the bond can give, its first run marks the debt on chain (Delinquent, -90 credit,
    /// Suspended), which is worth the bill's due. One whose fee is more than the due is not
    /// sent (unless `--bill-at-a-loss`): said once, weighed next epoch.
    fn unprofitable_enforcement(
        &self,
        store: &Store,
        bill: &Overdue,
        due: &Due,
        fee: Option<u128>,
    ) -> Result<bool> {
        let worth = due.due.max(due.recoverable);
        let Some(fee) = fee.filter(|&f| f > worth && !self.cfg.bill_at_a_loss) else {
            return Ok(false);
        };
        let ids = (bill.agent_id, bill.epoch, "enforcement");
        if store.hold_unprofitable(ids, worth, fee, due.current, now_ms())? {
            log::warn!(
                "{} epoch {}: enforceEpoch not sent: its expected fee {} CLAW is more than the debt it marks ({} CLAW due, {} CLAW recoverable); weighed again each epoch (--bill-at-a-loss sends it)",
                bill.address,
                bill.epoch,
                claw(fee),
                claw(due.due),
                claw(due.recoverable)
            );
        }
        Ok(true)
    }

    /// Sizes, weighs, signs, stores (write-ahead), sends. Returns false when sending
    /// should stop.
    fn send_enforcement(
        &self,
        store: &mut Store,
        (agent, bill): (&Address, &Overdue),
        due: Due,
        nonces: &mut Nonces,
        summary: &mut BillingSummary,
    ) -> Result<bool> {
        let nonce = nonces.take();
        let data = enforce_epoch_data(agent, bill.epoch as u64);
        let sizing = self.size(store, &data, nonce)?;
        if self.unprofitable_enforcement(store, bill, &due, sizing.expected_fee)? {
            nonces.release(nonce);
            return Ok(true);
        }
        let due = due.due;
        let signed = self.signed_call(nonce, data, sizing);
        if let Some(message) = self.simulate(&signed) {
            nonces.release(nonce);
            log::warn!(
                "{agent} epoch {}: the simulation says enforceEpoch would fail ({message}); not sent",
                bill.epoch
            );
            return Ok(true);
        }
        let signed_row = (nonce, signed.as_str(), sizing.gas_limit);
        let id = store.record_enforcement(bill, signed_row, due, now_ms())?;
        let written = PendingEnforcement {
            id,
            agent_id: bill.agent_id,
            address: bill.address.clone(),
            epoch: bill.epoch,
            nonce: nonce as i64,
            signed_tx: signed,
            tx_hash: None,
            due_before_atto: due,
        };
        match self.gateway.send_transaction(&written.signed_tx) {
            Sent::Accepted(hash) => {
                store.enforcement_hash(id, &hash, now_ms())?;
                summary.enforcements_sent += 1;
                log::info!(
                    "enforcing {agent} epoch {}: tx {hash} nonce {nonce}",
                    bill.epoch
                );
                Ok(true)
            }
            Sent::Refused(e) | Sent::NonceUsed(e) => {
                nonces.release(nonce);
                let outcome = Outcome::Retry(format!("refused by the gateway: {e}"));
                store.finish_enforcement(&written, None, &outcome, now_ms())?;
                Ok(false)
            }
            Sent::Unknown(e) => {
                summary.enforcements_sent += 1;
                log::warn!(
                    "enforceEpoch of {agent} epoch {}: no answer ({e}); re-sent next tick",
                    bill.epoch
                );
                Ok(false)
            }
        }
    }

    /// The nonces of every transaction in flight: bills and enforcements.
    pub(super) fn in_flight_nonces(&self, store: &Store) -> Result<Vec<u64>> {
        let bills = store
            .pending_transactions()?
            .into_iter()
            .map(|p| p.nonce as u64);
        let enforcements = store
            .pending_enforcements()?
            .into_iter()
            .map(|e| e.nonce as u64);
        Ok(bills.chain(enforcements).collect())
    }

    /// Settles the enforcements in flight. Returns false when one may not be on the chain
    /// or its outcome could not be read (later nonces could wait behind it).
    pub(super) fn settle_enforcements(
        &self,
        store: &mut Store,
        summary: &mut BillingSummary,
    ) -> Result<bool> {
        let mut certain = true;
        for e in store.pending_enforcements()? {
            certain &= self.settle_enforcement(store, &e, summary)?;
        }
        Ok(certain)
    }

    fn settle_enforcement(
        &self,
        store: &mut Store,
        e: &PendingEnforcement,
        summary: &mut BillingSummary,
    ) -> Result<bool> {
        let status = match &e.tx_hash {
            None => None,
            Some(hash) => match self.gateway.transaction_status(hash) {
                Err(_) => return Ok(true),
                Ok(s) => s,
            },
        };
        match status.as_deref() {
            None => self.resend_enforcement(store, e, summary),
            Some("success" | "fail" | "invalid") => self.confirm_enforcement(store, e, summary),
            Some(_) => Ok(true),
        }
    }

    fn resend_enforcement(
        &self,
        store: &mut Store,
        e: &PendingEnforcement,
        summary: &mut BillingSummary,
    ) -> Result<bool> {
        match self.gateway.send_transaction(&e.signed_tx) {
            Sent::Accepted(hash) => {
                store.enforcement_hash(e.id, &hash, now_ms())?;
                Ok(true)
            }
            Sent::NonceUsed(_) => self.confirm_enforcement(store, e, summary),
            Sent::Refused(m) => {
                let outcome = Outcome::Retry(format!("refused by the gateway on re-send: {m}"));
                store.finish_enforcement(e, None, &outcome, now_ms())?;
                Ok(true)
            }
            Sent::Unknown(_) => Ok(false),
        }
    }

    /// The transaction is done: the bill's state on the contract decides.
    fn confirm_enforcement(
        &self,
        store: &mut Store,
        e: &PendingEnforcement,
        summary: &mut BillingSummary,
    ) -> Result<bool> {
        let Ok(agent) = Address::parse(&e.address) else {
            return Ok(true);
        };
        let escrow = self.escrow();
        let state = escrow
            .epoch_state(&agent, e.epoch as u64)
            .and_then(|s| Ok((s, escrow.epoch_debt(&agent, e.epoch as u64)?)));
        let (state, due) = match state {
            Ok(read) => read,
            Err(err) => {
                log::warn!(
                    "outcome of enforceEpoch {agent} epoch {} unknown: {err}",
                    e.epoch
                );
                return Ok(false);
            }
        };
        if let Some(state @ (EpochState::Slashed | EpochState::Delinquent)) = state {
            let read = BillRead {
                state,
                due_atto: due,
                paid_at_cancel: false,
            };
            let outcome = Outcome::Done(state.as_str().to_string());
            store.finish_enforcement(e, Some(read), &outcome, now_ms())?;
            breaker::billed(store)?;
            summary.enforced += 1;
            log::info!("{agent} epoch {}: enforced, {state}", e.epoch);
            return Ok(true);
        }
        let message = match &e.tx_hash {
            Some(hash) => match self.fate(hash) {
                Ok(super::settle::Fate::Running) => return Ok(true),
                Ok(super::settle::Fate::Failed(m)) => m,
                Ok(super::settle::Fate::Succeeded) => None,
                Err(_) => return Ok(false),
            },
            None => None,
        };
        self.enforcement_failed(store, e, message.as_deref(), summary)?;
        Ok(true)
    }

    fn enforcement_failed(
        &self,
        store: &mut Store,
        e: &PendingEnforcement,
        message: Option<&str>,
        summary: &mut BillingSummary,
    ) -> Result<()> {
        let m = message.unwrap_or("no message");
        summary.failed += 1;
        // The contract answers in words: read once here, kept as a typed outcome.
        let outcome = if m.contains("Still in grace period") {
            Outcome::Retry(m.to_string())
        } else if m.contains("Epoch not billed") {
            Outcome::Failed(format!("nothing due: {m} (paid meanwhile)"))
        } else {
            if let Some(reason) = breaker::failed(store, m, false)? {
                summary.blocked = Some(reason);
            }
            Outcome::Failed(format!("failed: {m}"))
        };
        log::warn!(
            "enforceEpoch of {} epoch {} failed: {m}",
            e.address,
            e.epoch
        );
        store.finish_enforcement(e, None, &outcome, now_ms())
    }
}
