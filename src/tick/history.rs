//! Step 6a: the pages' history. When an epoch has closed, its row is recorded once (the
//! agents served, the windows due and renewed in time, and, with billing, the chain's
//! figures); rows whose bills changed are computed again. Only the process that bills (or
//! the only one) keeps it: shards > 0 leave it to shard 0.

use super::Agency;
use crate::error::Result;
use crate::net::clock::now_ms;

/// Rows computed again per tick at most (a first run after the upgrade computes the
/// epochs billed before it over a few ticks).
const REFRESH_PER_TICK: usize = 50;

impl Agency {
    pub(super) fn keep_history(&mut self, current: Option<i64>) -> Result<()> {
        let Some(current) = current else {
            return Ok(());
        };
        if self.store.shard.is_some_and(|s| s.index > 0) {
            return Ok(());
        }
        self.record_closed(current - 1)?;
        self.store.refresh_history(REFRESH_PER_TICK, current)?;
        Ok(())
    }

    /// The closed epoch's row, once, when both its ends are known.
    fn record_closed(&mut self, closed: i64) -> Result<()> {
        if self.store.history_recorded(closed)? {
            return Ok(());
        }
        let bounds = (
            self.store.epoch_start(closed)?,
            self.store.epoch_end(closed)?,
        );
        let (Some(start), Some(end)) = bounds else {
            return Ok(());
        };
        let books = self
            .biller
            .as_ref()
            .map(|b| b.read_books())
            .unwrap_or_default();
        self.store
            .record_epoch_close(closed, (start, end), &books, now_ms())
    }
}
