//! Each agent's lifecycle on the escrow: an agent that cancelled is no longer renewed (its
//! windows would never be paid) until it registers again or the operator says otherwise.
//! Read at a bounded rate: at most once per agent per epoch here, and at each bill.

use super::pass::Biller;
use crate::chain::escrow::{AgentInfo, AgentStatus};
use crate::crypto::keys::Address;
use crate::error::Result;
use crate::store::Store;

/// Escrow status reads per tick, before renewals (the due agents first): a large fleet is
/// read over a few ticks rather than delaying its renewals.
pub const READS_PER_TICK: usize = 50;

/// Records what `getAgentInfo` said of an agent, and says a change once.
pub fn record(
    store: &Store,
    agent_id: i64,
    address: &Address,
    info: Option<&AgentInfo>,
    (current, now): (i64, i64),
) -> Result<()> {
    let Some(before) = store.set_escrow_status(agent_id, info, (current, now))? else {
        return Ok(());
    };
    match (before.as_deref(), info) {
        (_, Some(i)) if i.status == crate::chain::escrow::AgentStatus::Cancelled => log::warn!(
            "{address} cancelled on the escrow: no longer renewed or billed (`resume --address {address} --even-if-cancelled` keeps renewing it unpaid)"
        ),
        (_, None) => log::warn!(
            "{address} is not registered on the escrow: it is renewed, but its windows cannot be billed until it registers"
        ),
        (Some("cancelled"), Some(i)) => log::info!(
            "{address} registered on the escrow again (joined epoch {}): renewed and billed again",
            i.joined_epoch
        ),
        _ => {}
    }
    Ok(())
}

impl Biller {
    /// Reads the escrow status of the agents that are due and not read this epoch, and of
    /// cancelled ones (they may have registered again). A gateway fault ends the reads for
    /// this tick; renewals go on (continuity first). Returns the reads made.
    pub fn follow_lifecycle(
        &self,
        store: &Store,
        current: i64,
        now: i64,
        halted: &dyn Fn() -> bool,
    ) -> Result<usize> {
        let mut reads = 0;
        for a in store.escrow_checks_due(current, now, READS_PER_TICK)? {
            if halted() {
                break;
            }
            let Ok(address) = Address::parse(&a.address) else {
                continue;
            };
            match self.escrow().agent_info(&address) {
                Ok(info) => record(store, a.agent_id, &address, info.as_ref(), (current, now))?,
                Err(e) => {
                    log::warn!("escrow status of {address} unknown this tick: {e}");
                    break;
                }
            }
            reads += 1;
        }
        Ok(reads)
    }
}

impl Biller {
    /// The agency stops working for free: an agent with `--max-delinquent-epochs` enforced,
    /// unpaid epochs is held (not renewed); a held one is read each tick and renewed again
    /// once the escrow shows it healthy: Active again (`resumeIfHealthy`), nothing
    /// outstanding, or a bond that covers what it owes (a top-up).
    pub fn follow_debt_holds(
        &self,
        store: &Store,
        now: i64,
        halted: &dyn Fn() -> bool,
    ) -> Result<()> {
        if self.cfg.max_delinquent_epochs > 0 {
            for address in store.hold_delinquent(self.cfg.max_delinquent_epochs, now)? {
                log::warn!(
                    "{address}: {} or more enforced epochs unpaid: no longer renewed until the escrow shows it healthy (resumeIfHealthy, a top-up, its debt settled)",
                    self.cfg.max_delinquent_epochs
                );
            }
        }
        for (agent_id, address) in store.debt_held(READS_PER_TICK)? {
            if halted() {
                break;
            }
            let Ok(agent) = Address::parse(&address) else {
                continue;
            };
            let escrow = self.escrow();
            let read = escrow
                .agent_info(&agent)
                .and_then(|info| Ok((info, escrow.agent_financials(&agent)?)));
            match read {
                Ok((info, (bond, outstanding))) => {
                    let active = info.is_some_and(|i| i.status == AgentStatus::Active);
                    if active || outstanding == 0 || bond >= outstanding {
                        store.release_debt_hold(agent_id, now)?;
                        log::info!("{address} is healthy on the escrow again: renewed again");
                    }
                }
                Err(e) => {
                    log::warn!("escrow health of {address} unknown this tick: {e}");
                    break;
                }
            }
        }
        Ok(())
    }
}
