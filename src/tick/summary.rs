//! What a tick did, for its log line, its exit status and `run`.

use std::fmt;

use crate::billing::BillingSummary;
use crate::net::clock::now_ms;

#[derive(Debug, Default)]
pub struct TickSummary {
    pub epoch: Option<i64>,
    pub due: usize,
    pub renewed: usize,
    pub already_streaming: usize,
    pub failed: usize,
    pub windows_recorded: usize,
    pub windows_attributed: usize,
    pub interrupted: bool,
    /// Nothing to do: the epoch came from the timeline and no request was sent.
    pub idle: bool,
    pub next_due_ms: Option<i64>,
    pub billing: Option<BillingSummary>,
    /// What needs a human after this tick (lapses, long failures, epochs lost for billing).
    pub attention: Vec<String>,
    /// The database refused a write this tick (full, read-only): why.
    pub storage: Option<String>,
    /// Attempts (and among them windows) still waiting in memory for the disk.
    pub unrecorded: usize,
    pub unrecorded_windows: usize,
    /// Time spent waiting on `/stream` and writing outcomes, for the figures.
    pub network_ms: f64,
    pub database_ms: f64,
}

impl fmt::Display for TickSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.epoch {
            Some(e) if self.idle => write!(
                f,
                "tick: epoch {e} (from the timeline; nothing to do, no request sent)"
            )?,
            Some(e) => write!(f, "tick: epoch {e}")?,
            None if self.storage.is_some() => write!(
                f,
                "tick: epoch unknown (its reading could not be recorded: the database cannot be written)"
            )?,
            None => write!(f, "tick: epoch unknown (gateway unreachable)")?,
        }
        write!(
            f,
            "; {} due: {} renewed, {} already streaming, {} failed; {} new windows, {} counted into epochs",
            self.due, self.renewed, self.already_streaming, self.failed, self.windows_recorded, self.windows_attributed
        )?;
        if self.due > 0 {
            write!(
                f,
                " (network {:.0} ms, database {:.0} ms)",
                self.network_ms, self.database_ms
            )?;
        }
        if self.interrupted {
            write!(
                f,
                "; stopped early (signal, --max-tick-seconds or renewals due), the rest goes first next time"
            )?;
        }
        match self.next_due_ms {
            Some(next) => write!(
                f,
                "; next attempt in {}s",
                ((next - now_ms()).max(0) + 999) / 1000
            ),
            None => write!(f, "; no active agents"),
        }?;
        if let Some(b) = &self.billing {
            write!(f, "; {b}")?;
        }
        if self.unrecorded > 0 {
            write!(
                f,
                "; {} attempts ({} windows) wait in memory for the disk",
                self.unrecorded, self.unrecorded_windows
            )?;
        }
        if !self.attention.is_empty() {
            write!(f, "; {} need a human", self.attention.len())?;
        }
        Ok(())
    }
}
