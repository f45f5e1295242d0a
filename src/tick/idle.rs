//! The idle tick: when nothing can be due, nobody is asked.
//!
//! A timer ticks every minute and on most minutes nothing is due. Such a tick needs the
//! epoch only to know that nothing changed, and the epoch timeline already says it: the
//! last trusted observation's epoch, its exact start (from genesis and its first round)
//! and its length. While `now` is inside that epoch, the observation is at most
//! [`TIMELINE_TRUST_MS`] old, no agent is due, no transaction is in flight and no bill,
//! collection, settlement or escrow read is due, the tick sends no request and writes
//! nothing. Everything else (a boundary, a due agent, a closed epoch) observes the epoch as
//! before, so every check made on an observation (a lying gateway, the clock) still runs
//! before anything is counted or billed around a boundary.

use super::summary::TickSummary;
use crate::config::RuntimeConfig;
use crate::error::Result;
use crate::now_ms;
use crate::ops::health;
use crate::store::Store;

/// The timeline is trusted for this long after its last observation (then the tick asks,
/// even if idle): a gateway that changed its mind is caught within the hour.
pub const TIMELINE_TRUST_MS: i64 = 3_600_000;
/// `meta` key of the timeline.
pub const TIMELINE_KEY: &str = "epoch_timeline";

/// The last trusted observation: epoch `epoch` started at `start_ms` (host time, exact)
/// and lasts `len_ms`, in rounds of `round_ms`; observed at `observed_ms` through the
/// gateway whose URL hashes to `gateway` (another gateway's timeline is not trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    pub gateway: u64,
    pub epoch: i64,
    pub start_ms: i64,
    pub len_ms: i64,
    pub round_ms: i64,
    pub observed_ms: i64,
}

impl Timeline {
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {} {} {:016x}",
            self.epoch, self.start_ms, self.len_ms, self.round_ms, self.observed_ms, self.gateway
        )
    }

    pub fn decode(text: &str) -> Option<Timeline> {
        let (numbers, gateway) = text.rsplit_once(' ')?;
        let gateway = u64::from_str_radix(gateway, 16).ok()?;
        let n: Vec<i64> = numbers
            .split_whitespace()
            .map(str::parse)
            .collect::<std::result::Result<_, _>>()
            .ok()?;
        let [epoch, start_ms, len_ms, round_ms, observed_ms] = n.as_slice().try_into().ok()?;
        (len_ms > 0 && round_ms > 0).then_some(Timeline {
            gateway,
            epoch,
            start_ms,
            len_ms,
            round_ms,
            observed_ms,
        })
    }

    /// `(epoch, rounds passed)` at `now`, while it is still the observed epoch and the
    /// observation is fresh; `None` when the tick must ask.
    pub fn at(&self, now: i64) -> Option<(i64, i64)> {
        let fresh = (0..=TIMELINE_TRUST_MS).contains(&(now - self.observed_ms));
        // No margin before the boundary is needed: an idle tick counts and bills nothing,
        // so a host clock a little late only moves the next observation by as much.
        let inside = now >= self.start_ms && now < self.start_ms + self.len_ms;
        (fresh && inside).then(|| (self.epoch, (now - self.start_ms) / self.round_ms))
    }
}

impl Store {
    pub fn timeline(&self) -> Result<Option<Timeline>> {
        Ok(self
            .meta_get(TIMELINE_KEY)?
            .as_deref()
            .and_then(Timeline::decode))
    }
}

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

/// A gateway URL's short fingerprint (FNV-1a), kept with the timeline.
pub fn gateway_id(url: &str) -> u64 {
    url.trim_end_matches('/')
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
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

/// The whole idle tick, for `tick` (on a read-only store) and `run`: `Some(summary)` when
/// nothing is to be done at `now`, without asking anybody.
pub fn idle_tick(store: &Store, cfg: &RuntimeConfig, now: i64) -> Result<Option<TickSummary>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_answers_only_inside_a_fresh_epoch() {
        let t = Timeline {
            gateway: gateway_id("https://api.claws.network"),
            epoch: 7,
            start_ms: 100_000,
            len_ms: 60_000,
            round_ms: 6_000,
            observed_ms: 101_000,
        };
        assert_eq!(Timeline::decode(&t.encode()), Some(t));
        assert_eq!(Timeline::decode("1 2 0 4 5 00"), None);
        assert_eq!(Timeline::decode("1 2 3 0a"), None);
        assert_ne!(gateway_id("http://127.0.0.1:9"), t.gateway);
        assert_eq!(t.at(130_000), Some((7, 5)));
        assert_eq!(t.at(99_999), None, "before the epoch");
        assert_eq!(t.at(159_999), Some((7, 9)));
        assert_eq!(t.at(160_000), None, "the next epoch: observe");
        let long = Timeline {
            len_ms: 10 * TIMELINE_TRUST_MS,
            ..t
        };
        assert!(long.at(101_000 + TIMELINE_TRUST_MS).is_some());
        assert_eq!(long.at(101_001 + TIMELINE_TRUST_MS), None, "stale");
    }
}
