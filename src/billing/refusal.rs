//! What a refusal by the contract does to an (agent, epoch), wherever it was learned: a
//! `billEpoch` that failed on chain (gas spent), or a simulation before anything was sent
//! (no gas; never counted as a failed transaction). The same message gets the same
//! treatment either way: expired, refused, retried later, capped for probation, held for a
//! human, or billing stopped by the breaker.

use super::breaker;
use super::pass::{Biller, BillingSummary, MAX_RETRIES};
use crate::chain::escrow::{classify_failure, Failure, PROBATION_WINDOWS_CAP};
use crate::chain::ledger::Kind;
use crate::error::Result;
use crate::net::clock::now_ms;
use crate::store::billing::Settled;
use crate::store::Store;

/// The (agent, epoch) refused, and the contract's message when there is one.
pub(super) struct Refusal<'a> {
    pub agent_id: i64,
    pub epoch: i64,
    pub message: Option<&'a str>,
    /// Learned from a simulation: no gas was spent, so the breaker does not count it.
    pub simulated: bool,
}

/// Writes the billing attempt row of a refusal: the transaction's own row on chain, a new
/// decision row for a simulation.
pub(super) type Record<'a> = dyn Fn(&Store, Kind, &str) -> Result<()> + 'a;

impl Biller {
    /// Applies the contract's refusal to the ledger.
    pub(super) fn refused(
        &self,
        store: &mut Store,
        r: &Refusal,
        record: &Record,
        summary: &mut BillingSummary,
    ) -> Result<()> {
        let now = now_ms();
        let shown = r.message.unwrap_or("no message");
        let settle = |store: &Store, kind: Kind, reason: &str| -> Result<()> {
            record(store, kind, &format!("failed: {shown}"))?;
            store.settle_epoch(r.agent_id, r.epoch, &Settled::new(kind, reason), now)
        };
        match classify_failure(r.message) {
            Failure::Expired => {
                settle(
                    store,
                    Kind::Expired,
                    "expired: too old to bill (the contract said so)",
                )?;
                summary.lost += 1;
            }
            Failure::Final(m) => {
                settle(
                    store,
                    Kind::Refused,
                    &format!("refused by the contract: {m}"),
                )?;
                summary.lost += 1;
            }
            Failure::Retry(m) => {
                let reason = format!("failed, will retry: {m}");
                self.retry_later(store, (r.agent_id, r.epoch), &reason, record, summary)?
            }
            Failure::ProbationCap => {
                // No view tells probation: learned here, the next bill sends 12 windows.
                store.set_probation(r.agent_id)?;
                let reason = format!(
                    "failed, will retry: {shown}: billed again with at most {PROBATION_WINDOWS_CAP} windows"
                );
                record(store, Kind::Retry, &reason)?;
            }
            Failure::AlreadyBilled => {
                let reason =
                    "the contract said 'Epoch already billed' but getEpochState shows no bill";
                settle(store, Kind::Held, reason)?;
                summary.held += 1;
            }
            Failure::WrongOperator => {
                record(store, Kind::Held, "failed: Only operator")?;
                let reason =
                    "the contract refused our operator key ('Only operator'): fix --operator-pem";
                breaker::trip(store, reason)?;
                summary.blocked = Some(reason.into());
            }
            Failure::Systemic(m) => self.hold(store, &settle, &m, true, summary)?,
            Failure::Unexplained(m) if r.simulated => {
                settle(
                    store,
                    Kind::Held,
                    &format!("held: the simulation refused it: {m}"),
                )?;
                summary.held += 1;
            }
            Failure::Unexplained(m) => self.hold(store, &settle, &m, false, summary)?,
        }
        Ok(())
    }

    /// A failure no agent's situation explains: the epoch is held for a human, and the
    /// breaker counts it (a `systemic` one stops billing at once).
    fn hold(
        &self,
        store: &Store,
        settle: &dyn Fn(&Store, Kind, &str) -> Result<()>,
        message: &str,
        systemic: bool,
        summary: &mut BillingSummary,
    ) -> Result<()> {
        settle(store, Kind::Held, &format!("held: {message}"))?;
        summary.held += 1;
        if let Some(reason) = breaker::failed(store, message, systemic)? {
            summary.blocked = Some(reason);
        }
        Ok(())
    }

    /// A "try later" failure: the epoch goes back to be billed after a backoff, at most
    /// [`MAX_RETRIES`] times, then it is held.
    pub(super) fn retry_later(
        &self,
        store: &mut Store,
        (agent_id, epoch): (i64, i64),
        reason: &str,
        record: &Record,
        summary: &mut BillingSummary,
    ) -> Result<()> {
        let now = now_ms();
        record(store, Kind::Retry, reason)?;
        let (n, _) = store.retries(agent_id, epoch)?;
        if n >= MAX_RETRIES {
            let held = format!("held: {n} tries failed, the last: {reason}");
            store.settle_epoch(agent_id, epoch, &Settled::new(Kind::Held, &held), now)?;
            summary.held += 1;
        }
        Ok(())
    }
}
