//! What one renewal is about and what it came to, as the tick and the ledger exchange it:
//! the agent due (with its secret), the verdict, and everything one `/stream` call changes.
//! Plain data, no network: the SQL layer writes it (`store::agents::record_renewal`).

use crate::crypto::keys::Secret;

/// An agent whose renewal is due, with what the renewal needs.
#[derive(Debug)]
pub struct DueAgent {
    pub id: i64,
    pub address: String,
    /// The plaintext signature, or why it cannot be read (the agent fails alone).
    pub signature: std::result::Result<Secret, String>,
    pub expected_end_ms: Option<i64>,
    /// Its window length: the longest its renewals' answers allow (see `Renewal`).
    pub window_ms: Option<i64>,
    pub backoff_step: u32,
    /// Renewals accepted only after the end (learned), and windows since the last probe.
    pub after_end: bool,
    pub since_probe: u32,
    pub stale: bool,
}

/// How an attempt ends for the agent's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A new window opened.
    Renewed,
    /// Nothing new, nothing wrong ("already streaming").
    Neutral,
    /// An error, kept in `last_error` and shown by `report`.
    Failed(String),
}

/// Everything one `/stream` call changes, written in one transaction. Owned, so that one
/// the disk could not take waits in memory (see `crate::ops::disk`).
#[derive(Debug, Clone)]
pub struct Renewal {
    pub agent_id: i64,
    pub attempted_ms: i64,
    /// When the window this attempt counts opened (host time; see `tick::opened_at`).
    pub opened_ms: i64,
    /// The bounds a window this attempt opened sets on the length of the agent's windows:
    /// `(end - answered, end - attempted)`, as it opened between the two.
    pub window_bounds: Option<(i64, i64)>,
    pub duration_ms: i64,
    pub status_code: Option<u16>,
    pub reason: String,
    pub end_stream_ms: Option<i64>,
    pub can_stream_again_at_ms: Option<i64>,
    pub body_excerpt: String,
    pub verdict: Verdict,
    /// The window to count, identified by its end; `observed` when found already open.
    pub window: Option<(i64, bool)>,
    /// Highest epoch seen before the attempt: the window's epoch is at least this.
    pub min_epoch: Option<i64>,
    pub expected_end_ms: Option<i64>,
    pub next_attempt_ms: i64,
    pub backoff_step: u32,
    pub after_end: bool,
    pub since_probe: u32,
    pub stale: bool,
}
