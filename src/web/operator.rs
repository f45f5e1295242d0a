//! `GET /operator`: the business per epoch (the launch plan's numbers), the operator's
//! wallet and what needs a human. Read from the history rows (`store::history`), so a page
//! over a thousand epochs of ten thousand agents reads a thousand rows.

use std::path::Path;

use askama::Template;

use super::chart::{self, Chart};
use super::frame::{claw, percent, render, when, Layout, Site};
use crate::chain::fees::break_even_bps;
use crate::error::Result;
use crate::ops::health;
use crate::store::history::{EpochRow, ALL_EPOCHS};
use crate::store::Store;

/// Epochs the table lists; the charts cover up to `CHART_EPOCHS`.
pub const TABLE_EPOCHS: usize = 48;
pub const CHART_EPOCHS: usize = 1000;

/// The all-epochs totals, as `earnings --format json`'s `total` (atto) and in CLAW.
#[derive(Default)]
pub struct Totals {
    pub windows: i64,
    pub charged_atto: u128,
    pub collected_atto: u128,
    pub outstanding_atto: u128,
    pub fees_atto: u128,
    pub net_atto: i128,
    pub charged: String,
    pub collected: String,
    pub outstanding: String,
    pub fees: String,
    pub net: String,
}

/// One row of the per-epoch table, as shown.
pub struct Line {
    pub epoch: i64,
    pub active: String,
    pub continuity: String,
    pub lapses: String,
    pub counted: i64,
    pub billed: i64,
    pub paid: i64,
    pub enforced: i64,
    pub charged: String,
    pub collected: String,
    pub fees: String,
    pub net: String,
    pub claimable: String,
    pub balance: String,
}

pub struct Held {
    pub address: String,
    pub epoch: i64,
    pub why: String,
    pub break_even: String,
}

#[derive(Template)]
#[template(path = "operator.html")]
struct OperatorPage {
    layout: Layout,
    last_tick: String,
    active_now: i64,
    balance: String,
    balance_epoch: String,
    runway: String,
    runway_low: bool,
    claimable: String,
    standby_age: String,
    totals: Totals,
    charts: Vec<Chart>,
    rows: Vec<Line>,
    held: Vec<Held>,
    alerts: Vec<(String, String)>,
}

fn signed_claw(atto: i128) -> String {
    let shown = claw(Some(atto.unsigned_abs()));
    if atto < 0 {
        format!("-{shown}")
    } else {
        shown
    }
}

fn totals(history: &[EpochRow]) -> Totals {
    let mut t = Totals::default();
    for r in history {
        t.windows += r.billed_windows;
        t.charged_atto += r.charged;
        t.collected_atto += r.collected;
        t.outstanding_atto += r.outstanding;
        t.fees_atto += r.fees;
    }
    t.net_atto = t.charged_atto as i128 - t.fees_atto as i128;
    t.charged = claw(Some(t.charged_atto));
    t.collected = claw(Some(t.collected_atto));
    t.outstanding = claw(Some(t.outstanding_atto));
    t.fees = claw(Some(t.fees_atto));
    t.net = signed_claw(t.net_atto);
    t
}

fn line(r: &EpochRow) -> Line {
    let opt = |v: Option<i64>| v.map_or("–".into(), |v| v.to_string());
    Line {
        epoch: r.epoch,
        active: opt(r.active_agents),
        continuity: match (r.windows_in_time, r.windows_due) {
            (Some(t), Some(d)) => percent(t, d),
            _ => "–".into(),
        },
        lapses: opt(r.lapses()),
        counted: r.counted_windows,
        billed: r.billed_windows,
        paid: r.paid_windows,
        enforced: r.enforced_windows,
        charged: claw(Some(r.charged)),
        collected: claw(Some(r.collected)),
        fees: claw(Some(r.fees)),
        net: signed_claw(r.net()),
        claimable: claw(r.books.claimable_owner),
        balance: claw(r.books.operator_balance),
    }
}

/// The charts over the newest `CHART_EPOCHS` epochs.
fn charts(history: &[EpochRow]) -> Vec<Chart> {
    let rows = &history[history.len().saturating_sub(CHART_EPOCHS)..];
    let xs: Vec<i64> = rows.iter().map(|r| r.epoch).collect();
    let of = |f: &dyn Fn(&EpochRow) -> Option<f64>| rows.iter().map(f).collect::<Vec<_>>();
    let claws = |atto: u128| Some(atto as f64 / 1e18);
    vec![
        chart::lines(
            "Active agents",
            &xs,
            &[(
                "active",
                "#0b62c4",
                of(&|r| r.active_agents.map(|a| a as f64)),
            )],
        ),
        chart::lines(
            "Continuity, % of windows renewed in time",
            &xs,
            &[(
                "continuity",
                "#1a7f37",
                of(&|r| match (r.windows_in_time, r.windows_due) {
                    (Some(t), Some(d)) if d > 0 => Some(t as f64 * 100.0 / d as f64),
                    _ => None,
                }),
            )],
        ),
        chart::lines(
            "Windows",
            &xs,
            &[
                (
                    "counted",
                    "#0b62c4",
                    of(&|r| Some(r.counted_windows as f64)),
                ),
                ("billed", "#8250df", of(&|r| Some(r.billed_windows as f64))),
                ("paid", "#1a7f37", of(&|r| Some(r.paid_windows as f64))),
                (
                    "enforced",
                    "#b42318",
                    of(&|r| Some(r.enforced_windows as f64)),
                ),
            ],
        ),
        chart::lines(
            "CLAW per epoch",
            &xs,
            &[
                ("charged", "#8250df", of(&|r| claws(r.charged))),
                ("collected", "#1a7f37", of(&|r| claws(r.collected))),
                ("fees", "#b42318", of(&|r| claws(r.fees))),
            ],
        ),
        chart::lines(
            "The owner's claimable and the operator's wallet, CLAW",
            &xs,
            &[
                (
                    "claimable",
                    "#1a7f37",
                    of(&|r| r.books.claimable_owner.and_then(claws)),
                ),
                (
                    "wallet",
                    "#0b62c4",
                    of(&|r| r.books.operator_balance.and_then(claws)),
                ),
            ],
        ),
    ]
}

fn held(store: &Store) -> Result<Vec<Held>> {
    let reward = store.meta_window_reward()?;
    let mut out: Vec<Held> = store
        .unprofitable()?
        .into_iter()
        .map(|u| {
            let windows = u.windows.max(1) as u64;
            let bps = reward.and_then(|r| break_even_bps(u.fee_atto, r, windows));
            Held {
                address: u.address,
                epoch: u.epoch,
                why: format!(
                    "its fee ({} CLAW) is more than its charge ({} CLAW)",
                    claw(Some(u.fee_atto)),
                    claw(Some(u.charge_atto))
                ),
                break_even: bps.map_or("–".into(), |b| format!("{b} bps")),
            }
        })
        .collect();
    for (address, epoch, reason) in store.held_epochs()? {
        out.push(Held {
            address,
            epoch,
            why: reason,
            break_even: "–".into(),
        });
    }
    Ok(out)
}

/// `/operator`, for a signed-in operator.
pub fn operator_page(store: &Store, site: &Site, db: &Path, now: i64) -> Result<String> {
    let history = store.history(ALL_EPOCHS)?;
    let latest = store.latest_books()?;
    let claimable = latest.1.claimable_owner;
    let runway = health::runway_of(store, latest)?;
    let epochs = runway.as_ref().and_then(|r| r.epochs());
    let page = OperatorPage {
        layout: Layout::of(site, store.max_epoch_seen()?),
        last_tick: when(crate::ops::lock::last_tick_ms(db)),
        active_now: store.served_count()?,
        balance: claw(runway.as_ref().map(|r| r.balance)),
        balance_epoch: runway
            .as_ref()
            .map(|r| r.epoch.to_string())
            .unwrap_or_default(),
        runway: epochs.map_or("–".into(), |e| {
            if e >= 100.0 {
                format!("{e:.0}")
            } else {
                format!("{e:.1}")
            }
        }),
        runway_low: epochs.is_some_and(|e| e < f64::from(health::DEFAULT_MIN_BALANCE_EPOCHS)),
        claimable: claw(claimable),
        standby_age: store
            .standby_fresh_ms()?
            .map_or("no standby copy".into(), |t| {
                format!("{} s", (now - t).max(0) / 1000)
            }),
        totals: totals(&history),
        charts: charts(&history),
        rows: history.iter().rev().take(TABLE_EPOCHS).map(line).collect(),
        held: held(store)?,
        alerts: store
            .open_alerts()?
            .into_iter()
            .map(|(text, since)| (text, when(Some(since))))
            .collect(),
    };
    render(&page)
}
