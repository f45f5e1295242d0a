//! The gas circuit breaker and slow start, kept in the database so that `tick` from cron
//! continues where the last one stopped.
//!
//! A failure is only known a few rounds after sending, so billing never has more than
//! `window` transactions in flight: 1 after the first start, a configuration change, a
//! failure or a human's `billing retry`, one more for every confirmed bill (so doubling
//! with each round of confirmations) up to [`MAX_WINDOW`]. Failures that are not about one agent (out of gas, an unknown function,
//! or [`TRIP_AFTER`] unexplained failures in a row across agents) trip the breaker: billing
//! stops for everyone with one clear message until the configuration changes or a human
//! runs `billing retry`.

use crate::error::Result;
use crate::store::Store;

pub const MAX_WINDOW: i64 = 1024;
/// Unexplained failures in a row that stop billing.
pub const TRIP_AFTER: i64 = 3;

const WINDOW: &str = "billing_window";
const STREAK: &str = "billing_failure_streak";
const TRIPPED: &str = "billing_breaker";
const CONFIG: &str = "billing_config";

/// Starts again from one transaction in flight, breaker closed.
pub fn reset(store: &Store) -> Result<()> {
    store.meta_delete(TRIPPED)?;
    store.meta_set(WINDOW, "1")?;
    store.meta_set(STREAK, "0")
}

/// Records the billing configuration in use. A change (gas limit, price, chain, escrow,
/// operator) resets the breaker and re-opens held epochs: a human acted. Returns the
/// number of holds released when it changed.
pub fn configuration(store: &mut Store, fingerprint: &str, now: i64) -> Result<Option<usize>> {
    let known = store.meta_get(CONFIG)?;
    if known.as_deref() == Some(fingerprint) {
        return Ok(None);
    }
    reset(store)?;
    store.meta_set(CONFIG, fingerprint)?;
    if known.is_none() {
        return Ok(Some(0));
    }
    let released = store.release_holds(None, None, "billing configuration changed", now)?;
    Ok(Some(released))
}

/// Why billing is stopped, if it is.
pub fn tripped(store: &Store) -> Result<Option<String>> {
    store.meta_get(TRIPPED)
}

/// How many transactions may be in flight now.
pub fn window(store: &Store) -> Result<i64> {
    Ok(store
        .meta_get_i64(WINDOW)?
        .unwrap_or(1)
        .clamp(1, MAX_WINDOW))
}

/// A bill confirmed: the failure streak ends and the window widens by one, so it doubles
/// with each round of confirmations (like TCP's slow start), never faster.
pub fn billed(store: &Store) -> Result<()> {
    store.meta_set(STREAK, "0")?;
    let w = window(store)?;
    if w < MAX_WINDOW {
        store.meta_set(WINDOW, &(w + 1).to_string())?;
    }
    Ok(())
}

/// A failure not explained by one agent's situation. Returns the breaker's reason when
/// this failure trips it (`systemic`: at once).
pub fn failed(store: &Store, message: &str, systemic: bool) -> Result<Option<String>> {
    store.meta_set(WINDOW, "1")?;
    let streak = store.meta_get_i64(STREAK)?.unwrap_or(0) + 1;
    store.meta_set(STREAK, &streak.to_string())?;
    if !systemic && streak < TRIP_AFTER {
        return Ok(None);
    }
    let why = if systemic {
        format!("a billing transaction failed with '{message}', which every transaction would meet")
    } else {
        format!("{streak} billing transactions in a row failed without explanation, the last with '{message}'")
    };
    let reason = format!(
        "{why}: billing stopped for every agent; fix the configuration (e.g. --billing-gas-limit) or run `billing retry` once understood"
    );
    trip(store, &reason)?;
    Ok(Some(reason))
}

/// Stops billing for everyone with `reason`.
pub fn trip(store: &Store, reason: &str) -> Result<()> {
    store.meta_set(TRIPPED, reason)
}
