//! Nothing is billed before its windows are home. With a standby (`--standby-copy`), an
//! epoch in which this host's own records show it did not renew an agent in time (a gap
//! between two of its windows reaching into the epoch) may hold windows only the standby
//! opened. Its bill waits until the standby's copy is fresh past the epoch's end (its
//! windows are then absorbed: see `tick::homecoming`), or, past `--standby-wait-epochs`
//! (within the escrow's backbill window), is sent with what this host has and recorded as
//! a clip with its reason: `check` says so until the copy catches up. Without a standby,
//! billing is as always.

use super::pass::Biller;
use crate::chain::escrow::EscrowConfig;
use crate::error::Result;
use crate::store::billing::Candidate;
use crate::store::Store;

/// A gap between one window's end and the next one's opening longer than this is "not
/// renewed in time" (a renewal accepted only at the window's end opens the next one within
/// a request's time).
pub const GAP_TOLERANCE_MS: i64 = 2_000;

impl Biller {
    /// Whether the candidate's bill waits for the standby's copy this pass.
    pub(super) fn waits_for_standby(
        &self,
        store: &Store,
        c: &Candidate,
        config: &EscrowConfig,
        current: i64,
    ) -> Result<bool> {
        let Some(wait_epochs) = self.cfg.standby_wait_epochs else {
            return Ok(false);
        };
        let Some(end) = store.epoch_end(c.epoch)? else {
            return Ok(false);
        };
        let fresh = store.standby_fresh_ms()?;
        if fresh.is_some_and(|f| f >= end) {
            return Ok(false);
        }
        let start = store.epoch_start(c.epoch)?;
        if !store.renewal_gap(
            c.agent_id,
            (start, end),
            GAP_TOLERANCE_MS,
            crate::net::clock::now_ms(),
        )? {
            return Ok(false);
        }
        // Billed at the latest while the escrow still takes it.
        let backbill = i64::try_from(config.max_backbill_epochs).unwrap_or(i64::MAX);
        let bound = wait_epochs.min(backbill - 1).max(0);
        if current - c.epoch <= bound {
            return Ok(true);
        }
        let seen = match fresh {
            Some(f) => format!(
                "fresh only to {} s before the epoch's end",
                (end - f) / 1000
            ),
            None => "never read".to_string(),
        };
        let reason = format!(
            "billed without the standby's windows after waiting {bound} epochs: its copy was {seen}"
        );
        log::warn!(
            "{} epoch {}: {reason}; windows it brings later are counted as late, never billed",
            c.agent,
            c.epoch
        );
        store.mark_standby_clip(c.agent_id, c.epoch, &reason)?;
        Ok(false)
    }
}
