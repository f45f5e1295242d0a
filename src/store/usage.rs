//! Windows and their epochs.
//!
//! A renewal records its window in `stream_windows` at once (so a crash never loses it),
//! without an epoch. The epoch is attributed from a gateway observation taken *after* the
//! window opened, and only then is the window added to `usage_windows`:
//! - `min_epoch` (the highest epoch seen before the window opened) is a lower bound and the
//!   observation's epoch an upper bound; when they agree the epoch is exact;
//! - otherwise the epoch boundary is placed from the observation's rounds passed in the
//!   current epoch and the round duration, clamped between the two bounds.
//!
//! So windows opened while the gateway was down are attributed once it answers again, and a
//! tick that straddles an epoch change splits its windows at the boundary.

use rusqlite::{params, Connection};

use super::Store;
use crate::error::Result;

/// What `/network/status` said, and when.
#[derive(Debug, Clone, Copy)]
pub struct EpochObservation {
    pub epoch: i64,
    pub observed_ms: i64,
    pub rounds_passed: i64,
}

/// Round duration and epoch length, from `/network/config` and `/network/status`.
#[derive(Debug, Clone, Copy)]
pub struct EpochTiming {
    pub round_ms: i64,
    pub rounds_per_epoch: i64,
}

const MAX_EPOCH_SEEN: &str = "max_epoch_seen";

/// Records a window once per (agent, end). Returns whether it is new.
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
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
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

/// Where an epoch boundary lies, estimated from an observation.
fn estimate_epoch(
    opened_ms: i64,
    lower: i64,
    obs: &EpochObservation,
    current: i64,
    t: EpochTiming,
) -> i64 {
    let epoch_start = obs.observed_ms - obs.rounds_passed * t.round_ms;
    let epoch_len = (t.rounds_per_epoch * t.round_ms).max(1);
    let estimate = if opened_ms >= epoch_start {
        current
    } else {
        let behind = (epoch_start - opened_ms + epoch_len - 1) / epoch_len;
        current - behind
    };
    estimate.clamp(lower, current)
}

/// The current epoch given the highest seen before and a new observation: it never goes
/// back (a lagging gateway must not make a window land in an epoch already billed).
pub fn effective_epoch(seen: Option<i64>, observed: i64) -> i64 {
    seen.map_or(observed, |s| s.max(observed))
}

impl Store {
    pub fn max_epoch_seen(&self) -> Result<Option<i64>> {
        self.meta_get_i64(MAX_EPOCH_SEEN)
    }

    /// Records an epoch observation; returns the effective current epoch, which never goes
    /// back (a lagging gateway must not make a window land in an epoch already billed).
    pub fn observe_epoch(&self, obs: &EpochObservation) -> Result<i64> {
        let seen = self.max_epoch_seen()?;
        let current = effective_epoch(seen, obs.epoch);
        if seen != Some(current) {
            self.meta_set(MAX_EPOCH_SEEN, &current.to_string())?;
        }
        Ok(current)
    }

    /// Whether some window opened up to `until_ms` still waits for its epoch, and whether
    /// attributing it needs the epoch timing (its bounds differ).
    pub fn unattributed_windows(&self, until_ms: i64, current: i64) -> Result<(i64, bool)> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*), COALESCE(MAX(min_epoch IS NULL OR min_epoch < ?2), 0)
             FROM stream_windows WHERE epoch IS NULL AND opened_ms <= ?1",
            params![until_ms, current],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// Attributes the windows opened before `obs` to their epochs and counts them in
    /// `usage_windows`, in one transaction. Windows whose epoch needs `timing` and has none
    /// stay unattributed. Returns how many windows were counted.
    pub fn attribute_windows(
        &mut self,
        obs: &EpochObservation,
        current: i64,
        timing: Option<EpochTiming>,
    ) -> Result<usize> {
        let tx = self.conn.transaction()?;
        // The common case, set-based: the epoch did not change since the window opened.
        let exact =
            "FROM stream_windows WHERE epoch IS NULL AND opened_ms <= ?1 AND min_epoch = ?2";
        tx.prepare_cached(&format!(
            "INSERT INTO usage_windows (agent_id, epoch, windows)
             SELECT agent_id, ?2, COUNT(*) {exact} GROUP BY agent_id
             ON CONFLICT (agent_id, epoch) DO UPDATE SET windows = windows + excluded.windows"
        ))?
        .execute(params![obs.observed_ms, current])?;
        let mut counted = tx
            .prepare_cached(
                "UPDATE stream_windows SET epoch = ?2
                 WHERE epoch IS NULL AND opened_ms <= ?1 AND min_epoch = ?2",
            )?
            .execute(params![obs.observed_ms, current])?;
        // The rest, one by one: the boundary is estimated from the epoch timing.
        let pending: Vec<(i64, i64, i64, Option<i64>)> = tx
            .prepare_cached(
                "SELECT agent_id, end_stream_ms, opened_ms, min_epoch FROM stream_windows
                 WHERE epoch IS NULL AND opened_ms <= ?1",
            )?
            .query_map([obs.observed_ms], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<_, _>>()?;
        for (agent_id, end_ms, opened_ms, min_epoch) in pending {
            let lower = min_epoch.unwrap_or(0).min(current);
            let epoch = if lower == current {
                current
            } else if let Some(t) = timing {
                estimate_epoch(opened_ms, lower, obs, current, t)
            } else {
                continue;
            };
            tx.prepare_cached(
                "UPDATE stream_windows SET epoch = ?3 WHERE agent_id = ?1 AND end_stream_ms = ?2",
            )?
            .execute(params![agent_id, end_ms, epoch])?;
            tx.prepare_cached(
                "INSERT INTO usage_windows (agent_id, epoch, windows) VALUES (?1, ?2, 1)
                 ON CONFLICT (agent_id, epoch) DO UPDATE SET windows = windows + 1",
            )?
            .execute(params![agent_id, epoch])?;
            counted += 1;
        }
        tx.commit()?;
        Ok(counted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Address;
    use crate::store::memory_store;

    const TIMING: EpochTiming = EpochTiming {
        round_ms: 100,
        rounds_per_epoch: 10,
    };

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
        // Epoch 7 began at t=10_000; epoch length 1_000 ms.
        for (end, opened, min_epoch) in [
            (1, 9_100, Some(6)),  // before the boundary: epoch 6
            (2, 10_050, Some(6)), // after it: epoch 7
            (3, 8_500, None),     // gateway was down since the start: epoch 5
            (4, 10_300, Some(7)), // exact: bounds agree
            (5, 10_900, Some(7)), // opened after the observation: waits
        ] {
            assert!(insert_window(&s.conn, 1, end, opened, false, min_epoch).unwrap());
        }
        let obs = EpochObservation {
            epoch: 7,
            observed_ms: 10_500,
            rounds_passed: 5,
        };
        assert_eq!(s.observe_epoch(&obs).unwrap(), 7);
        assert_eq!(
            s.unattributed_windows(obs.observed_ms, 7).unwrap(),
            (4, true)
        );
        // Without timing only the exact window can be attributed.
        assert_eq!(s.attribute_windows(&obs, 7, None).unwrap(), 1);
        assert_eq!(s.attribute_windows(&obs, 7, Some(TIMING)).unwrap(), 3);
        assert_eq!(s.attribute_windows(&obs, 7, Some(TIMING)).unwrap(), 0);
        assert_eq!(usage(&s), vec![(5, 1), (6, 1), (7, 2)]);
        // A lagging gateway never moves the current epoch back.
        let lagging = EpochObservation {
            epoch: 6,
            observed_ms: 11_000,
            rounds_passed: 0,
        };
        assert_eq!(s.observe_epoch(&lagging).unwrap(), 7);
        assert_eq!(s.attribute_windows(&lagging, 7, Some(TIMING)).unwrap(), 1);
        assert_eq!(usage(&s), vec![(5, 1), (6, 1), (7, 3)]);
    }
}
