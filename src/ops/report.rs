//! The rows of `report` and of the intake's `GET /v1/report`: one line per agent.

use crate::error::Result;
use crate::ops::output::{claw, Cell, Rows};
use crate::store::views::Money;

/// Field names of `report --format json|tsv` (stable; documented in the README).
pub const REPORT_FIELDS: [&str; 21] = [
    "address",
    "status",
    "fee_bps",
    "renewed",
    "failed",
    "pending",
    "billed",
    "clipped",
    "expired",
    "due_claw",
    "next_attempt",
    "window_end",
    "last_error",
    "held",
    "billed_claw",
    "settled_claw",
    "outstanding_claw",
    "escrow",
    "break_even_bps",
    "unbillable",
    "not_renewed_because",
];

/// The rows of `report` (also `GET /v1/report` of `serve`); removed agents too with `all`.
pub fn report_rows(store: &crate::store::Store, all: bool) -> Result<Rows> {
    rows_of(store, all, None)
}

/// One agent's row of `report --all` (its page shows the same figures).
pub fn report_row(store: &crate::store::Store, address: &str) -> Result<Rows> {
    rows_of(store, true, Some(address))
}

fn rows_of(store: &crate::store::Store, all: bool, address: Option<&str>) -> Result<Rows> {
    let window_reward = store.meta_window_reward()?;
    let bill_fee = store.expected_bill_fee()?;
    let mut rows = Rows::new(REPORT_FIELDS.to_vec());
    let agents = store.agent_rows(all, address)?;
    let charges = match (address, agents.first()) {
        (Some(_), Some(a)) => store.charges(false, Some(a.id))?,
        (Some(_), None) => Vec::new(),
        (None, _) => store.charges(false, None)?,
    };
    for a in agents {
        let money = Money::of(charges.iter().filter(|c| c.agent_id == a.id));
        let due = window_reward.map(|reward| {
            claw(crate::chain::escrow::due_atto(
                reward,
                a.pending as u64,
                a.fee_bps as u64,
            ))
        });
        rows.rows.push(vec![
            Cell::Text(a.address),
            Cell::Text(a.status),
            Cell::Int(a.fee_bps),
            Cell::Int(a.renewed),
            Cell::Int(a.failed),
            Cell::Int(a.pending),
            Cell::Int(a.billed),
            Cell::Int(a.clipped),
            Cell::Int(a.expired),
            Cell::OptText(due),
            Cell::Time(a.next_attempt_ms),
            Cell::Time(a.window_end_ms),
            Cell::OptText(a.last_error),
            Cell::Int(a.held),
            Cell::Text(claw(money.billed)),
            Cell::Text(claw(money.settled)),
            Cell::Text(claw(money.outstanding)),
            Cell::Text(a.escrow),
            Cell::OptInt(break_even(store, a.id, bill_fee, window_reward)?),
            Cell::Int(a.unbillable),
            Cell::OptText(a.hold),
        ]);
    }
    Ok(rows)
}

/// The fee in bps at which the agent's bills pay for themselves at today's gas price, for
/// the windows of its latest epoch (`None` until a bill's fee and the reward are known).
fn break_even(
    store: &crate::store::Store,
    agent_id: i64,
    bill_fee: Option<u128>,
    window_reward: Option<u128>,
) -> Result<Option<i64>> {
    let (Some(fee), Some(reward)) = (bill_fee, window_reward) else {
        return Ok(None);
    };
    let windows = store.latest_windows(agent_id)?.unwrap_or(0).max(1) as u64;
    Ok(crate::chain::fees::break_even_bps(fee, reward, windows).map(|b| b as i64))
}

/// Said at enrollment when an agent's fee can never pay for its bills at today's gas price:
/// its charge for the escrow's most windows in an epoch is below the fee a bill pays.
/// `None` when it can, or while the fee or the escrow's figures are not known yet.
pub fn fee_never_pays(store: &crate::store::Store, fee_bps: u32) -> Result<Option<String>> {
    let (Some(fee), Some(reward), Some(windows)) = (
        store.expected_bill_fee()?,
        store.meta_window_reward()?,
        store.meta_hard_max_windows()?,
    ) else {
        return Ok(None);
    };
    let windows = windows.max(1) as u64;
    let best = crate::chain::escrow::due_atto(reward, windows, u64::from(fee_bps));
    if best >= fee {
        return Ok(None);
    }
    let even = crate::chain::fees::break_even_bps(fee, reward, windows)
        .map_or("no fee up to 10000 bps".to_string(), |b| format!("{b} bps"));
    Ok(Some(format!(
        "at {fee_bps} bps even a full epoch ({windows} windows) charges {} CLAW, less than the {} CLAW a bill pays in fees at today's gas price: its bills will be held as unprofitable; break-even: {even}",
        crate::chain::fees::claw(best),
        crate::chain::fees::claw(fee)
    )))
}
