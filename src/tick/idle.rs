//! The idle tick: when nothing can be due, nobody is asked.
//!
//! A timer ticks every minute and on most minutes nothing is due. Such a tick needs the
//! epoch only to know that nothing changed, and the epoch timeline already says it: the
//! last trusted observation's epoch, its exact start (from genesis and its first round)
//! and its length. While `now` is inside that epoch, the observation is at most
//! [`TIMELINE_TRUST_MS`](crate::chain::epochs::TIMELINE_TRUST_MS) old, no agent is due, no transaction is in flight and no bill,
//! collection, settlement or escrow read is due, the tick sends no request and writes
//! nothing. Everything else (a boundary, a due agent, a closed epoch) observes the epoch as
//! before, so every check made on an observation (a lying gateway, the clock) still runs
//! before anything is counted or billed around a boundary.

use super::summary::TickSummary;
use crate::chain::epochs::gateway_id;
use crate::config::RuntimeConfig;
use crate::error::Result;
use crate::net::clock::now_ms;
use crate::ops::health;
use crate::store::Store;

/// What a tick would have to do, as far as billing goes: off, on, on with collections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Billing {
    Off,
    On { enforce: bool },
}

impl Billing {
    pub fn of(billing: Option<&crate::config::BillingConfig>) -> Billing {
        match billing {
            None => Billing::Off,
            Some(b) => Billing::On {
                enforce: b.enforce_after_grace,
            },
        }
    }
}

/// An idle tick's result: the epoch from the timeline, and the next attempt.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    pub epoch: i64,
    pub next_due_ms: Option<i64>,
}

/// `Some` when a tick at `now` has nothing to do and need not ask anybody (see the module
/// doc); `gateway` is the `--epoch-api-url`. Database reads only.
pub fn check(store: &Store, gateway: &str, billing: Billing, now: i64) -> Result<Option<Idle>> {
    let timeline = store
        .timeline()?
        .filter(|t| t.gateway == gateway_id(gateway));
    let Some((epoch, rounds)) = timeline.and_then(|t| t.at(now)) else {
        return Ok(None);
    };
    let next_due_ms = store.next_due_ms()?;
    let busy = next_due_ms.is_some_and(|due| due <= now)
        || store.unattributed_windows(now)? > 0
        || !store.pending_transactions()?.is_empty()
        || !store.pending_enforcements()?.is_empty()
        || match billing {
            Billing::Off => false,
            Billing::On { enforce } => {
                crate::billing::has_work(store, epoch, rounds, now, enforce)?
            }
        };
    Ok((!busy).then_some(Idle { epoch, next_due_ms }))
}

/// Whether the host clock stepped (or the host rebooted) since the last observation: the
/// plan was made on another clock, so the tick must observe (nothing is asked otherwise).
pub fn host_clock_moved(store: &Store) -> Result<bool> {
    use crate::net::host_clock::{Anchor, Step, ANCHOR_KEY};
    let stepped = Anchor::step_since(store.meta_get(ANCHOR_KEY)?.as_deref());
    Ok(stepped.is_some_and(|s| s != Step::Steady))
}

/// The whole idle tick, for `tick` (on a read-only store) and `run`: `Some(summary)` when
/// nothing is to be done at `now`, without asking anybody.
pub fn idle_tick(store: &Store, cfg: &RuntimeConfig, now: i64) -> Result<Option<TickSummary>> {
    if host_clock_moved(store)? {
        return Ok(None);
    }
    let billing = Billing::of(cfg.billing.as_ref());
    match check(store, &cfg.epoch_api_url, billing, now)? {
        Some(idle) => idle_summary(store, idle, cfg.max_clock_skew_ms).map(Some),
        None => Ok(None),
    }
}

/// A tick that had nothing to do and asked nobody: the epoch from the timeline, and what
/// needs a human as the database tells it (lapses, long failures, holds, the clock).
pub fn idle_summary(store: &Store, idle: Idle, max_skew_ms: i64) -> Result<TickSummary> {
    let mut attention = health::tick_attention(store, now_ms())?;
    if let Some(offset) = health::kept_offset(store)? {
        attention.extend(health::clock_skew(offset, max_skew_ms));
    }
    Ok(TickSummary {
        epoch: Some(idle.epoch),
        idle: true,
        next_due_ms: idle.next_due_ms,
        attention,
        ..TickSummary::default()
    })
}
