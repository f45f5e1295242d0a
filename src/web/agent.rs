//! `GET /agents/{address}`: the agent's status, windows per epoch, bills and the proof of
//! service behind each count. The figures are `report --all`'s row for it; nothing secret
//! (no signature, no error text).

use askama::Template;
use serde_json::Value;

use super::chart::{self, Chart};
use super::frame::{claw, render, when, Layout, Site};
use crate::crypto::keys::Address;
use crate::error::Result;
use crate::store::views::ProofWindow;
use crate::store::Store;

/// Epochs the windows chart covers.
pub const CHART_EPOCHS: usize = 48;

/// One bill as the page lists it.
pub struct BillLine {
    pub epoch: i64,
    pub windows: i64,
    pub charged: String,
    pub due: String,
    pub state: String,
}

#[derive(Template)]
#[template(path = "agent.html")]
pub struct AgentPage {
    layout: Layout,
    address: String,
    status: String,
    status_note: String,
    escrow: String,
    window_end: String,
    next_renewal: String,
    renewed: String,
    failed: String,
    fee_bps: String,
    billed: String,
    pending: String,
    unbillable: String,
    billed_claw: String,
    settled_claw: String,
    outstanding_claw: String,
    windows_kept: i64,
    funding_kept: String,
    windows_chart: Chart,
    bills: Vec<BillLine>,
    proof_epoch: String,
    proof_count: i64,
    proof: Vec<(String, String)>,
}

/// The page, or `None` when the agent is not enrolled here. `epoch`: the proof shown (the
/// newest epoch with windows by default).
pub fn agent_page(
    store: &Store,
    site: &Site,
    address: &Address,
    epoch: Option<i64>,
) -> Result<Option<String>> {
    let Some(id) = store.agent_id(address)? else {
        return Ok(None);
    };
    let rows = crate::ops::report::report_row(store, &address.to_bech32())?;
    let Some(cells) = rows.rows.first() else {
        return Ok(None);
    };
    let fields: serde_json::Map<String, Value> = rows.fields(cells).into_iter().collect();
    let field = |name: &str| match fields.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    };
    let view = store.public_view(address)?;
    let per_epoch = store.windows_per_epoch(id, CHART_EPOCHS)?;
    let windows_kept = store.windows_counted(Some(id), None)?;
    let reward = store.meta_window_reward()?;
    let proof_epoch = epoch.or(per_epoch.last().map(|&(e, _)| e));
    let (proof_count, proof) = match proof_epoch {
        Some(e) => (
            store.windows_counted(Some(id), Some(e))?,
            store.proof_windows(id, e)?,
        ),
        None => (0, Vec::new()),
    };
    let page = AgentPage {
        layout: Layout::of(site, view.as_ref().and_then(|v| v.epoch)),
        address: address.to_bech32(),
        status: field("status"),
        status_note: view
            .as_ref()
            .and_then(|v| v.not_renewed_because.clone())
            .unwrap_or_default(),
        escrow: field("escrow"),
        window_end: when(view.as_ref().and_then(|v| v.window_end_ms)),
        next_renewal: when(view.as_ref().and_then(|v| v.next_renewal_ms)),
        renewed: field("renewed"),
        failed: field("failed"),
        fee_bps: field("fee_bps"),
        billed: field("billed"),
        pending: field("pending"),
        unbillable: field("unbillable"),
        billed_claw: field("billed_claw"),
        settled_claw: field("settled_claw"),
        outstanding_claw: field("outstanding_claw"),
        windows_kept,
        funding_kept: claw(reward.map(|r| r.saturating_mul(windows_kept.max(0) as u128))),
        windows_chart: chart::bars("Windows kept per epoch", &per_epoch),
        bills: bills(store, id)?,
        proof_epoch: proof_epoch.map(|e| e.to_string()).unwrap_or_default(),
        proof_count,
        proof: proof
            .iter()
            .map(|w| (when(Some(w.opened_ms)), when(Some(w.end_ms))))
            .collect(),
    };
    render(&page).map(Some)
}

/// Every bill, newest first.
fn bills(store: &Store, agent_id: i64) -> Result<Vec<BillLine>> {
    let mut lines: Vec<BillLine> = store
        .charges(false, Some(agent_id))?
        .iter()
        .map(|c| BillLine {
            epoch: c.epoch,
            windows: c.windows,
            charged: claw(Some(c.charged_atto)),
            due: claw(Some(c.remaining_atto())),
            state: match (c.paid_at_cancel, c.settlement) {
                (true, _) => "paid from the bond".into(),
                (false, Some(s)) => s.as_str().to_string(),
                (false, None) => "billed, not read yet".into(),
            },
        })
        .collect();
    lines.reverse();
    Ok(lines)
}

/// The proof of one epoch as CSV (`opened_ms,end_ms,opened,end,observed`).
pub fn proof_csv(windows: &[ProofWindow]) -> String {
    let mut out = String::from("opened_ms,end_ms,opened,end,observed\n");
    for w in windows {
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            w.opened_ms,
            w.end_ms,
            crate::ops::output::rfc3339(w.opened_ms),
            crate::ops::output::rfc3339(w.end_ms),
            u8::from(w.observed)
        ));
    }
    out
}
