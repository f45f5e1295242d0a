//! The rows of `report` and of the intake's `GET /v1/report`: one line per agent.

use crate::error::Result;
use crate::ops::output::{claw, Cell, Rows};
use crate::store::views::Money;

/// Field names of `report --format json|tsv` (stable; documented in the README).
pub const REPORT_FIELDS: [&str; 18] = [
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
];

/// The rows of `report` (also `GET /v1/report` of `serve`); removed agents too with `all`.
pub fn report_rows(store: &crate::store::Store, all: bool) -> Result<Rows> {
    let window_reward = store.meta_window_reward()?;
    let mut rows = Rows::new(REPORT_FIELDS.to_vec());
    let charges = store.charges(false, None)?;
    for a in store.agent_rows(all)? {
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
        ]);
    }
    Ok(rows)
}
