//! Following what billed epochs became: paid on time or late (maybe in parts), slashed,
//! delinquent, or paid from the bond when the agent cancelled. Each open bill is read at
//! most once per epoch, a few per pass; `receivables --refresh` reads every one now.

use std::collections::hash_map::{Entry, HashMap};

use crate::chain::escrow::abi::decode_epoch_state;
use crate::chain::escrow::client::Escrow;
use crate::crypto::keys::Address;
use crate::error::Result;
use crate::store::escrow::{BillRead, OpenBill};
use crate::store::Store;

/// Settlement reads per billing pass.
pub const READS_PER_PASS: usize = 20;

/// What one following pass did.
#[derive(Debug, Default)]
pub struct Followed {
    pub read: usize,
    /// Answers that could not be used (unknown index, another shape, a state going back).
    pub rejected: usize,
    /// The gateway stopped answering: the rest waits for the next pass.
    pub interrupted: Option<String>,
}

/// Reads up to `limit` open bills (all of them not read this epoch, or every one with
/// `refresh`) and records their state, what is left due, and payment at cancellation.
pub fn follow(
    escrow: &Escrow,
    store: &Store,
    current: i64,
    limit: usize,
    refresh: bool,
) -> Result<Followed> {
    let mut done = Followed::default();
    // getAgentFinancials once per agent and pass.
    let mut outstanding: HashMap<i64, u128> = HashMap::new();
    for bill in store.open_bills(current, limit, refresh)? {
        let Ok(agent) = Address::parse(&bill.address) else {
            continue;
        };
        match read_bill(escrow, &agent, &bill, &mut outstanding) {
            Ok(Some(read)) => {
                store.set_bill_read(bill.agent_id, bill.epoch, Some(read), current)?;
                done.read += 1;
            }
            Ok(None) => {
                store.set_bill_read(bill.agent_id, bill.epoch, None, current)?;
                done.rejected += 1;
            }
            Err(e) => {
                log::warn!(
                    "settlement of {agent} epoch {} unknown this pass: {e}",
                    bill.epoch
                );
                done.interrupted = Some(e);
                break;
            }
        }
    }
    Ok(done)
}

/// One bill's state on the chain. `Ok(None)`: an answer nothing may be concluded from
/// (logged with the agent and epoch; the bill stays as it was, open if it was); `Err`: the
/// gateway did not answer.
fn read_bill(
    escrow: &Escrow,
    agent: &Address,
    bill: &OpenBill,
    outstanding: &mut HashMap<i64, u128>,
) -> std::result::Result<Option<BillRead>, String> {
    // The raw answer: a gateway fault (`Err`, the pass stops) is not a bad answer.
    let items = escrow.bill_view("getEpochState", agent, bill.epoch as u64)?;
    let state = match decode_epoch_state(&items) {
        Ok(Some(state)) => state,
        Ok(None) => {
            log::error!(
                "{agent} epoch {}: recorded as billed but getEpochState shows no bill; run `reconcile`",
                bill.epoch
            );
            return Ok(None);
        }
        Err(e) => {
            log::error!("{agent} epoch {}: {e}; the bill stays open", bill.epoch);
            return Ok(None);
        }
    };
    if let Some(before) = bill.state.filter(|b| !b.may_become(state)) {
        log::error!(
            "{agent} epoch {}: the settlement went back from {before} to {state}; the bill stays open, nothing is recorded as paid",
            bill.epoch
        );
        if !state.is_open() {
            return Ok(None);
        }
    }
    if !state.is_open() {
        return Ok(Some(BillRead::from_views(state, 0, 0)));
    }
    let due_atto = escrow.epoch_debt(agent, bill.epoch as u64)?;
    let owed = match outstanding.entry(bill.agent_id) {
        Entry::Occupied(known) => *known.get(),
        Entry::Vacant(slot) => *slot.insert(escrow.agent_financials(agent)?.1),
    };
    Ok(Some(BillRead::from_views(state, due_atto, owed)))
}

/// Every open bill read now through the contract's views (`receivables --refresh`,
/// `earnings` with the billing options): `(escrow contract, gateway)` as given.
pub fn refresh_all(store: &crate::store::Store, cfg: &crate::config::ViewConfig) -> Result<()> {
    let gateway = crate::chain::gateway::Gateway::connect(&cfg.proxy, cfg.timeout);
    let escrow = crate::chain::escrow::client::Escrow::new(&gateway, &cfg.escrow);
    let current = store.max_epoch_seen()?.unwrap_or(0);
    let done = follow(&escrow, store, current, usize::MAX >> 1, true)?;
    if let Some(e) = done.interrupted {
        return Err(crate::error::Error::runtime(format!(
            "reading the open bills stopped after {} bills: {e}",
            done.read
        )));
    }
    log::info!(
        "{} open bills re-read, {} answers unusable",
        done.read,
        done.rejected
    );
    Ok(())
}
