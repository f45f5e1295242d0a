//! Each agent's lifecycle on the escrow: an agent that cancelled is no longer renewed (its
//! windows would never be paid) until it registers again or the operator says otherwise.
//! Read at a bounded rate: at most once per agent per epoch here, and at each bill.

use super::Biller;
use crate::chain::escrow::AgentInfo;
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
    current: i64,
) -> Result<()> {
    let Some(before) = store.set_escrow_status(agent_id, info, current)? else {
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
                Ok(info) => record(store, a.agent_id, &address, info.as_ref(), current)?,
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
