//! `GET /`: the agency's terms, its scoreboard, how to enroll, the look-up.

use askama::Template;

use super::frame::{claw, percent, render, Layout, Site};
use crate::error::Result;
use crate::store::history::ALL_EPOCHS;
use crate::store::Store;

/// The scoreboard's continuity covers the epochs recorded within this long.
const CONTINUITY_SPAN_MS: i64 = 30 * 86_400_000;

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    layout: Layout,
    fee_bps: u32,
    fee_pct: String,
    price_per_window: String,
    setup_fee: String,
    min_bond: String,
    promo_left: String,
    protected_now: i64,
    windows_this_epoch: i64,
    windows_all: i64,
    continuity: String,
    due_30d: i64,
    in_time_30d: i64,
    lapses_30d: i64,
    claw_protected: String,
    books_epoch: String,
    billing: bool,
    enroll_url: String,
}

/// `/`. `base_url`: this agency's address as the client reached it (`https://host`).
pub fn home_page(store: &Store, site: &Site, base_url: &str, now: i64) -> Result<String> {
    let epoch = store.max_epoch_seen()?;
    let (setup_fee, min_bond, promo_slots) = store.meta_escrow_terms()?;
    let (books_epoch, books) = store.latest_books()?;
    let history = store.history(ALL_EPOCHS)?;
    let recent = history
        .iter()
        .filter(|r| r.recorded_ms.is_some_and(|t| now - t <= CONTINUITY_SPAN_MS));
    let (mut due, mut in_time) = (0, 0);
    for r in recent {
        due += r.windows_due.unwrap_or(0);
        in_time += r.windows_in_time.unwrap_or(0);
    }
    let this_epoch = match epoch {
        Some(e) => store.windows_counted(None, Some(e))?,
        None => 0,
    };
    let closed: i64 = history
        .iter()
        .filter(|r| Some(r.epoch) != epoch)
        .map(|r| r.counted_windows)
        .sum();
    let promo_left = promo_slots
        .zip(books.promo_used)
        .map(|(slots, used)| slots.saturating_sub(used))
        .filter(|&left| left > 0);
    let price = store
        .meta_window_reward()?
        .map(|r| crate::chain::escrow::due_atto(r, 1, u64::from(site.fee_bps)));
    render(&HomePage {
        layout: Layout::of(site, epoch),
        fee_bps: site.fee_bps,
        fee_pct: format!("{:.2} %", f64::from(site.fee_bps) / 100.0),
        price_per_window: price.map(|p| claw(Some(p))).unwrap_or_default(),
        setup_fee: claw(setup_fee),
        min_bond: claw(min_bond),
        promo_left: promo_left.map(|l| l.to_string()).unwrap_or_default(),
        protected_now: store.served_count()?,
        windows_this_epoch: this_epoch,
        windows_all: closed + this_epoch,
        continuity: percent(in_time, due),
        due_30d: due,
        in_time_30d: in_time,
        lapses_30d: due - in_time,
        claw_protected: claw(books.protected),
        books_epoch: books_epoch.map(|e| e.to_string()).unwrap_or_default(),
        billing: site.billing,
        enroll_url: format!("{base_url}/v1/enroll"),
    })
}
