//! Windows and their epochs.
//!
//! A renewal records its window in `stream_windows` at once (so a crash never loses it),
//! without an epoch. Each trusted epoch reading adds the current epoch's start to the
//! timeline in `epoch_starts` (exact from genesis, or estimated to half a round), and
//! windows opened before that reading are attributed by the time they opened against the
//! timeline, then counted in `usage_windows`. So windows opened while the gateway was down
//! are attributed once it answers again, and a tick that straddles an epoch change splits
//! its windows at the boundary, to the round.

use rusqlite::{params, Connection, OptionalExtension};

use super::Store;
use crate::chain::epochs::{self, Seen, Start, Timeline, TIMELINE_KEY};
use crate::error::Result;

/// The start of an upsert's `late_windows` update: a row whose bill is settled (any kind but
/// held) or in flight takes the windows counted into it now as late (never billed).
const LATE: &str = "late_windows = late_windows + CASE WHEN (kind IS NOT NULL AND kind != 'held')
        OR EXISTS (SELECT 1 FROM billing_attempts b WHERE b.agent_id = usage_windows.agent_id
                   AND b.epoch = usage_windows.epoch AND b.status = 'pending') THEN";

const MAX_EPOCH_SEEN: &str = "max_epoch_seen";
const SEEN_AT: &str = "epoch_seen_at_ms";

/// Records a window once per (agent, end). The service may give `end_stream` in seconds in
/// one answer and in milliseconds in another: an end on a whole second and another within
/// a second of it are the same window. Returns whether it is new.
pub fn insert_window(
    conn: &Connection,
    agent_id: i64,
    end_ms: i64,
    opened_ms: i64,
    observed: bool,
    min_epoch: Option<i64>,
) -> Result<bool> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO stream_windows (agent_id, end_stream_ms, opened_ms, observed, min_epoch)
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS (
                 SELECT 1 FROM stream_windows WHERE agent_id = ?1
                 AND end_stream_ms BETWEEN ?2 - 999 AND ?2 + 999
                 AND (end_stream_ms = ?2 OR end_stream_ms % 1000 = 0 OR ?2 % 1000 = 0))",
        )?
        .execute(params![agent_id, end_ms, opened_ms, observed, min_epoch])?;
    Ok(inserted == 1)
}

/// Counted windows that are neither billed nor settled for good (still waiting for their
/// epoch, for billing, or held for a human): of one agent, or of all agents with `None`.
pub fn unbilled_windows(conn: &Connection, agent_id: Option<i64>) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT (SELECT COALESCE(SUM(windows), 0) FROM usage_windows
                 WHERE (?1 IS NULL OR agent_id = ?1) AND (kind IS NULL OR kind = 'held'))
              + (SELECT COUNT(*) FROM stream_windows
                 WHERE (?1 IS NULL OR agent_id = ?1) AND epoch IS NULL)",
        [agent_id],
        |r| r.get(0),
    )?)
}

/// The current epoch given the highest seen before and a new reading: it never goes back
/// (a lagging gateway must not make a window land in an epoch already billed).
pub fn effective_epoch(seen: Option<i64>, observed: i64) -> i64 {
    seen.map_or(observed, |s| s.max(observed))
}

impl Store {
    /// The highest trusted epoch seen.
    pub fn max_epoch_seen(&self) -> Result<Option<i64>> {
        self.meta_get_i64(MAX_EPOCH_SEEN)
    }

    /// The last trusted reading: the epoch and when it was answered.
    pub fn last_seen(&self) -> Result<Option<Seen>> {
        Ok(
            match (self.max_epoch_seen()?, self.meta_get_i64(SEEN_AT)?) {
                (Some(epoch), Some(at_ms)) => Some(Seen { epoch, at_ms }),
                _ => None,
            },
        )
    }

    /// Records a trusted reading: the epoch, when it was first seen, and where it started
    /// (the first estimate is kept until an exact start replaces it). Returns the effective
    /// current epoch, which never goes back. Writes nothing when nothing changed, so an idle
    /// tick leaves the database alone.
    pub fn record_epoch(&self, epoch: i64, start: Start, at_ms: i64) -> Result<i64> {
        let seen = self.max_epoch_seen()?;
        let current = effective_epoch(seen, epoch);
        if current == epoch {
            let exact = matches!(start, Start::Exact(_));
            self.conn
                .prepare_cached(
                    "INSERT INTO epoch_starts (epoch, start_ms, exact) VALUES (?1, ?2, ?3)
                     ON CONFLICT (epoch) DO UPDATE SET start_ms = excluded.start_ms, exact = excluded.exact
                     WHERE excluded.exact > epoch_starts.exact",
                )?
                .execute(params![epoch, start.ms(), exact])?;
        }
        if seen != Some(current) {
            self.meta_set(MAX_EPOCH_SEEN, &current.to_string())?;
            self.meta_set(SEEN_AT, &at_ms.to_string())?;
        }
        Ok(current)
    }

    /// The start of `epoch`, when known.
    pub fn epoch_start(&self, epoch: i64) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT start_ms FROM epoch_starts WHERE epoch = ?1",
                [epoch],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// How many windows opened up to `until_ms` still wait for their epoch.
    pub fn unattributed_windows(&self, until_ms: i64) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM stream_windows WHERE epoch IS NULL AND opened_ms <= ?1",
            [until_ms],
            |r| r.get(0),
        )?)
    }

    /// Attributes the windows opened up to `until_ms` to their epochs and counts them in
    /// `usage_windows`, in one transaction: those opened since the current epoch's start in
    /// one statement, earlier ones by the timeline. Returns how many were counted.
    pub fn attribute_windows(
        &mut self,
        current: i64,
        until_ms: i64,
        epoch_len_ms: i64,
    ) -> Result<usize> {
        let Some(start) = self.epoch_start(current)? else {
            return Ok(0);
        };
        let tx = self.conn.transaction()?;
        // The common case, set-based: opened in the current epoch.
        let recent = "epoch IS NULL AND opened_ms >= ?3 AND opened_ms <= ?1";
        tx.prepare_cached(&format!(
            "INSERT INTO usage_windows (agent_id, epoch, windows)
             SELECT agent_id, ?2, COUNT(*) FROM stream_windows WHERE {recent} GROUP BY agent_id
             ON CONFLICT (agent_id, epoch) DO UPDATE SET windows = windows + excluded.windows,
                {LATE} + excluded.windows ELSE 0 END"
        ))?
        .execute(params![until_ms, current, start])?;
        let mut counted = tx
            .prepare_cached(&format!(
                "UPDATE stream_windows SET epoch = ?2 WHERE {recent}"
            ))?
            .execute(params![until_ms, current, start])?;
        // The rest, one by one against the timeline.
        let earlier: Vec<(i64, i64, i64, Option<i64>)> = tx
            .prepare_cached(
                "SELECT agent_id, end_stream_ms, opened_ms, min_epoch FROM stream_windows
                 WHERE epoch IS NULL AND opened_ms < ?1",
            )?
            .query_map([start.min(until_ms + 1)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<_, _>>()?;
        if !earlier.is_empty() {
            let starts: Vec<(i64, i64)> = tx
                .prepare_cached(
                    "SELECT epoch, start_ms FROM epoch_starts WHERE epoch <= ?1 ORDER BY epoch",
                )?
                .query_map([current], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (agent_id, end_ms, opened_ms, min_epoch) in earlier {
                let Some(found) = epochs::epoch_at(opened_ms, &starts, epoch_len_ms) else {
                    continue;
                };
                // Below the current epoch (it opened before its start), and never below
                // the trusted epoch seen before it opened.
                let epoch = found
                    .min(current - 1)
                    .max(min_epoch.unwrap_or(i64::MIN).min(current - 1));
                tx.prepare_cached(
                    "UPDATE stream_windows SET epoch = ?3 WHERE agent_id = ?1 AND end_stream_ms = ?2",
                )?
                .execute(params![agent_id, end_ms, epoch])?;
                tx.prepare_cached(&format!(
                    "INSERT INTO usage_windows (agent_id, epoch, windows) VALUES (?1, ?2, 1)
                     ON CONFLICT (agent_id, epoch) DO UPDATE SET windows = windows + 1,
                     {LATE} + 1 ELSE 0 END"
                ))?
                .execute(params![agent_id, epoch])?;
                counted += 1;
            }
        }
        tx.commit()?;
        Ok(counted)
    }
}

impl Store {
    /// The epoch timeline idle ticks compute the epoch from (see `tick::idle`).
    pub fn timeline(&self) -> Result<Option<Timeline>> {
        Ok(self
            .meta_get(TIMELINE_KEY)?
            .as_deref()
            .and_then(Timeline::decode))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::Address;
    use crate::store::memory_store;

    fn usage(s: &Store) -> Vec<(i64, i64)> {
        s.conn
            .prepare("SELECT epoch, windows FROM usage_windows ORDER BY epoch")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn windows_are_split_at_the_epoch_boundary_and_counted_once() {
        let mut s = memory_store();
        let alice =
            Address::parse("claw1qyu5wthldzr8wx5c9ucg8kjagg0jfs53s8nr3zpz3hypefsdd8ss0ekavn")
                .unwrap();
        s.enroll(&alice, "aa", 500, 0).unwrap();
        // Epoch 6 began at 9_000, epoch 7 at 10_000; epochs last 1_000 ms.
        s.record_epoch(6, Start::Exact(9_000), 9_500).unwrap();
        for (end, opened, min_epoch) in [
            (1, 9_950, Some(6)),  // 50 ms before the boundary: epoch 6
            (2, 10_050, Some(6)), // 50 ms after it: epoch 7
            (3, 7_500, None),     // gateway was down since the start: epoch 4
            (4, 10_300, Some(7)), // in the current epoch
            (5, 10_900, Some(7)), // opened after the reading: waits
        ] {
            assert!(insert_window(&s.conn, 1, end, opened, false, min_epoch).unwrap());
        }
        assert_eq!(s.record_epoch(7, Start::Exact(10_000), 10_500).unwrap(), 7);
        assert_eq!(s.unattributed_windows(10_500).unwrap(), 4);
        assert_eq!(s.attribute_windows(7, 10_500, 1_000).unwrap(), 4);
        assert_eq!(s.attribute_windows(7, 10_500, 1_000).unwrap(), 0);
        assert_eq!(usage(&s), vec![(4, 1), (6, 1), (7, 2)]);
        // A lagging reading never moves the current epoch back.
        assert_eq!(s.record_epoch(6, Start::Exact(9_000), 11_000).unwrap(), 7);
        assert_eq!(s.attribute_windows(7, 11_000, 1_000).unwrap(), 1);
        assert_eq!(usage(&s), vec![(4, 1), (6, 1), (7, 3)]);
        // An estimate never replaces an exact start; an exact one replaces an estimate.
        s.record_epoch(7, Start::Estimated(10_040), 11_100).unwrap();
        assert_eq!(s.epoch_start(7).unwrap(), Some(10_000));
        s.record_epoch(8, Start::Estimated(11_040), 11_100).unwrap();
        s.record_epoch(8, Start::Exact(11_000), 11_200).unwrap();
        assert_eq!(s.epoch_start(8).unwrap(), Some(11_000));
        assert_eq!(
            s.last_seen().unwrap(),
            Some(Seen {
                epoch: 8,
                at_ms: 11_100
            })
        );
    }
}
