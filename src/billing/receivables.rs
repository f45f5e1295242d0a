//! Following what billed epochs became: paid on time or late, slashed, or delinquent.
//! Each open receivable is read at most once per epoch, a few per pass.

use super::Biller;
use crate::error::Result;
use crate::keys::Address;
use crate::ledger::settlement;
use crate::store::Store;

/// Settlement reads per billing pass.
pub const READS_PER_PASS: usize = 20;

impl Biller {
    pub(super) fn follow_receivables(&self, store: &mut Store, current: i64) -> Result<()> {
        for r in store.receivables_to_follow(current, READS_PER_PASS)? {
            let state = Address::parse(&r.address)
                .and_then(|agent| self.escrow().epoch_state(&agent, r.epoch as u64));
            match state {
                Ok(Some(index)) => {
                    store.set_settlement(r.agent_id, r.epoch, settlement(index), current)?
                }
                Ok(None) => {
                    log::error!(
                        "{} epoch {}: recorded as billed but getEpochState shows no bill; run `reconcile`",
                        r.address,
                        r.epoch
                    );
                    store.set_settlement(r.agent_id, r.epoch, "Billed", current)?;
                }
                Err(e) => {
                    log::warn!(
                        "settlement of {} epoch {} unknown this pass: {e}",
                        r.address,
                        r.epoch
                    );
                    break;
                }
            }
        }
        Ok(())
    }
}
