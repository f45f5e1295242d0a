//! New transactions: for each candidate (agent, epoch), the contract's views, the judgement
//! of `escrow::judge`, then sign, store (write-ahead), send.

use std::time::Instant;

use super::breaker;
use super::cost::Sizing;
use super::pass::{Biller, BillingSummary, NewEpochs, Nonces};
use super::refusal::Refusal;
use crate::chain::escrow::{self, Decision, EscrowConfig, Views};
use crate::chain::fees::claw;
use crate::chain::gateway::{Sent, Simulated};
use crate::chain::ledger::Kind;
use crate::chain::tx::bill_epoch_data;
use crate::error::Result;
use crate::net::clock::now_ms;
use crate::store::billing::{Candidate, Settled};
use crate::store::Store;

/// What became of one candidate in `send_one`.
enum Outcome {
    /// Sent (or sent without an answer): it takes a place in the slow-start window.
    Sent,
    /// Refused by the simulation: nothing sent, go on with the next candidate.
    NotSent,
    /// Billing stops this pass.
    Stop,
}

impl Biller {
    /// Judges and sends the candidates in order until one send goes wrong, the slow-start
    /// window is full, billing is blocked, or `halted`.
    pub(super) fn send_new_epochs(
        &self,
        store: &mut Store,
        new: NewEpochs,
        nonces: &mut Option<Nonces>,
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
        for c in candidates {
            if halted() || room <= 0 || summary.blocked.is_some() {
                break;
            }
            if self.waits_for_standby(store, &c, config, current)? {
                summary.standby_waits += 1;
                continue;
            }
            let Some((windows, charged)) = self.decide(store, &c, config, current, summary)? else {
                continue;
            };
            let Some(nonces) = self.nonces(nonces, &in_flight) else {
                break;
            };
            let bill = (windows, charged);
            match self.send_one(store, &c, bill, current, nonces, summary)? {
                Outcome::Sent => room -= 1,
                Outcome::NotSent => {}
                Outcome::Stop => break,
            }
        }
        Ok(())
    }

    /// The operator's nonces, asked for only once something is to be sent.
    pub(super) fn nonces<'n>(
        &self,
        nonces: &'n mut Option<Nonces>,
        in_flight: &[u64],
    ) -> Option<&'n mut Nonces> {
        if nonces.is_none() {
            let operator = self.cfg.operator.address().to_bech32();
            match self.gateway.account_nonce(&operator) {
                Ok(next) => *nonces = Some(Nonces::new(next, in_flight)),
                Err(e) => log::warn!("billing paused: operator nonce unavailable: {e}"),
            }
        }
        nonces.as_mut()
    }

    /// The views of one candidate: its epoch's state and the agent on the escrow, whose
    /// status is recorded (this is the read "at each bill" of the agent's lifecycle).
    fn views(&self, store: &Store, c: &Candidate, current: i64) -> Result<Option<Views>> {
        let escrow = self.escrow();
        let read = escrow
            .epoch_state(&c.agent, c.epoch as u64)
            .and_then(|state| {
                Ok(Views {
                    state,
                    info: escrow.agent_info(&c.agent)?,
                })
            });
        let mut views = match read {
            Ok(v) => v,
            Err(e) => {
                log::warn!("billing of {} epoch {} waits: {e}", c.agent, c.epoch);
                return Ok(None);
            }
        };
        let read_at = (current, crate::net::clock::now_ms());
        super::lifecycle::record(store, c.agent_id, &c.agent, views.info.as_ref(), read_at)?;
        if let Some(info) = views.info.as_mut() {
            info.probation = store.in_probation(c.agent_id)?;
        }
        Ok(Some(views))
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
        let Some(views) = self.views(store, c, current)? else {
            return Ok(None);
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
                    settlement: Some(state),
                    ..Settled::new(kind, "billed (found on chain)")
                };
                store.settle_epoch(c.agent_id, c.epoch, &found, now)?;
                summary.skipped += 1;
                Ok(None)
            }
            Decision::Unbillable { kind, reason } => {
                let (kind, reason) = match store.release_unprofitable(c.agent_id, c.epoch)? {
                    Some((charge, fee)) => (Kind::Lost, format!(
                        "held as unprofitable (expected fee {} CLAW, charge {} CLAW) until the contract no longer took it: {reason}",
                        claw(fee),
                        claw(charge)
                    )),
                    None => (kind, reason),
                };
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
                    let clipped = c.windows as u64 - windows;
                    let why = if views.info.as_ref().is_some_and(|i| i.probation) {
                        "Exceeds probation windows cap (12 while in probation)"
                    } else {
                        "the contract's guards"
                    };
                    let reason = format!("{clipped} windows clipped: {why}");
                    store.record_decision(
                        c.agent_id,
                        c.epoch,
                        c.windows,
                        Kind::Clipped,
                        &reason,
                        now,
                    )?;
                    log::warn!("{} epoch {}: {reason}", c.agent, c.epoch);
                }
                Ok(Some((windows, charged_atto)))
            }
        }
    }

    /// Tries the signed transaction on `/transaction/simulate` when the gateway serves it.
    /// `Some(message)`: the contract would refuse it for a reason we know (nothing is sent,
    /// no gas is spent). A failure we cannot explain, no route, or no answer: `None`, and
    /// the transaction is sent as it would be without simulation.
    pub(super) fn simulate(&self, signed: &str) -> Option<String> {
        if self.simulate_absent.get() {
            return None;
        }
        match self.gateway.simulate(signed) {
            Simulated::Success => None,
            Simulated::Fail(reason) if escrow::is_contract_message(&reason) => Some(reason),
            // Any other message that is not the transaction's own (gas, funds, nonce,
            // signature, price) is the contract's refusal too, known or not: not sent.
            Simulated::Fail(reason) if !escrow::is_chain_level(&reason) => Some(reason),
            Simulated::Fail(reason) => {
                log::debug!(
                    "simulation failed for a reason of the transaction's, not the contract's, sending: {reason}"
                );
                None
            }
            Simulated::Absent => {
                log::info!(
                    "the gateway does not serve /transaction/simulate: bills are sent untried"
                );
                self.simulate_absent.set(true);
                None
            }
            Simulated::Unavailable(e) => {
                log::debug!("simulation unavailable, sending untried: {e}");
                None
            }
        }
    }

    /// A contract call of the operator's, signed with its sized gas: the body
    /// `/transaction/send` takes.
    pub(super) fn signed_call(&self, nonce: u64, data: String, sizing: Sizing) -> String {
        self.call(nonce, data, sizing).sign(&self.cfg.operator)
    }

    /// A bill whose expected fee is more than its charge is held, not sent (unless
    /// `--bill-at-a-loss`): said once, weighed again next epoch.
    fn held_unprofitable(
        &self,
        store: &Store,
        c: &Candidate,
        charge: u128,
        sizing: Sizing,
        current: i64,
    ) -> Result<bool> {
        let Some(fee) = sizing.expected_fee else {
            return Ok(false);
        };
        if fee <= charge || self.cfg.bill_at_a_loss {
            return Ok(false);
        }
        let ids = (c.agent_id, c.epoch, "bill");
        if store.hold_unprofitable(ids, charge, fee, current, now_ms())? {
            log::warn!(
                "{} epoch {}: not billed: its expected fee {} CLAW is more than its charge {} CLAW; held as unprofitable and weighed again each epoch (--bill-at-a-loss sends it)",
                c.agent,
                c.epoch,
                claw(fee),
                claw(charge)
            );
        }
        Ok(true)
    }

    /// The simulation says the contract would refuse the bill: applied as the chain would,
    /// nothing sent.
    fn simulated_refusal(
        &self,
        store: &mut Store,
        c: &Candidate,
        windows: u64,
        message: &str,
        summary: &mut BillingSummary,
    ) -> Result<()> {
        summary.simulated_refusals += 1;
        log::warn!(
            "{} epoch {}: the simulation says the contract would refuse it: {message}; not sent",
            c.agent,
            c.epoch
        );
        let ids = (c.agent_id, c.epoch, windows as i64);
        let record = move |store: &Store, kind: Kind, reason: &str| {
            store.record_simulated(
                ids,
                kind,
                &format!("simulated, not sent: {reason}"),
                now_ms(),
            )
        };
        let refusal = Refusal {
            agent_id: c.agent_id,
            epoch: c.epoch,
            message: Some(message),
            simulated: true,
        };
        self.refused(store, &refusal, &record, summary)
    }

    /// Sizes, weighs, signs, simulates, stores (write-ahead), sends.
    fn send_one(
        &self,
        store: &mut Store,
        c: &Candidate,
        (windows, charged_atto): (u64, u128),
        current: i64,
        nonces: &mut Nonces,
        summary: &mut BillingSummary,
    ) -> Result<Outcome> {
        let started = Instant::now();
        let nonce = nonces.take();
        let data = bill_epoch_data(&c.agent, c.epoch as u64, windows);
        let sizing = self.size(store, &data, nonce)?;
        if self.held_unprofitable(store, c, charged_atto, sizing, current)? {
            nonces.release(nonce);
            summary.unprofitable += 1;
            return Ok(Outcome::NotSent);
        }
        let signed = self.signed_call(nonce, data, sizing);
        if let Some(message) = self.simulate(&signed) {
            nonces.release(nonce);
            self.simulated_refusal(store, c, windows, &message, summary)?;
            return Ok(Outcome::NotSent);
        }
        store.release_unprofitable(c.agent_id, c.epoch)?;
        let signed_row = (nonce, signed.as_str(), sizing.gas_limit);
        let id = store.record_signed(c, windows as i64, signed_row, charged_atto, now_ms())?;
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
                Ok(Outcome::Sent)
            }
            Sent::Refused(e) | Sent::NonceUsed(e) => {
                let reason = format!("refused by the gateway: {e}");
                store.record_attempt(id, Kind::GatewayRefused, &reason, now_ms())?;
                nonces.release(nonce);
                summary.failed += 1;
                log::warn!(
                    "billing transaction for {} epoch {} refused: {e}",
                    c.agent,
                    c.epoch
                );
                Ok(Outcome::Stop)
            }
            Sent::Unknown(e) => {
                summary.sent += 1;
                log::warn!(
                    "billing transaction for {} epoch {}: no answer ({e}); re-sent next tick",
                    c.agent,
                    c.epoch
                );
                Ok(Outcome::Stop)
            }
        }
    }
}
