//! The standby host: keeps every stream alive while the primary is late, and never bills.
//!
//! Renewals need no consensus (the stream service refuses a second window while one is
//! open), so the standby needs only a fresh read-only copy of the primary's database
//! (Litestream's follower). Each pass reads the copy whole (`store::standby::read_copy`;
//! a missing or torn copy keeps the last good view), mirrors its agents into the standby's
//! own database with a plan that renews an agent only when no window of it, in the copy or
//! its own, reaches past `now + --standby-lead-seconds`, then runs the ordinary tick on
//! the own database without billing. While the primary is healthy that plan is never due;
//! the windows it opens otherwise are recorded once, like `run`'s, for `absorb`.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::error::Result;
use crate::net::clock::now_ms;
use crate::store::standby::{read_copy, CopyStamp, CopyView};
use crate::tick::{Agency, TickSummary};

/// The standby between passes.
pub struct Standby {
    pub copy: PathBuf,
    /// `--standby-lead-seconds`, in ms.
    pub lead_ms: i64,
    /// Each agent's window end in the last good view of the copy.
    ends: HashMap<String, i64>,
    /// The copy could be read at the last pass (its failures are said when they change).
    copy_ok: Option<bool>,
    /// The copy's file at the last good read: unchanged, it is not read and mirrored again.
    read_as: CopyStamp,
    /// While the primary is late: what was told ("the primary is late: N agents ...").
    late: Option<String>,
}

/// What one pass did.
pub struct Pass {
    pub tick: TickSummary,
    /// What needs telling: the primary late, or nothing.
    pub problems: Vec<String>,
}

impl Standby {
    pub fn new(copy: PathBuf, lead_ms: i64) -> Standby {
        Standby {
            copy,
            lead_ms,
            ends: HashMap::new(),
            copy_ok: None,
            read_as: CopyStamp::default(),
            late: None,
        }
    }

    /// One pass: the copy mirrored (or the last good view kept), the due agents renewed.
    pub fn pass(&mut self, agency: &mut Agency) -> Result<Pass> {
        let view = self.read();
        let primary_renews = view.as_ref().is_some_and(|v| self.primary_renewed(v));
        if let Some(view) = &view {
            agency.store.mirror(view, self.lead_ms, now_ms())?;
        }
        let tick = agency.tick_unless_idle()?;
        // Its heartbeat, after the windows of this pass: the primary reads from it which
        // epochs its copy of this database holds whole.
        agency.store.standby_heartbeat(now_ms())?;
        self.say(&tick, primary_renews);
        Ok(Pass {
            problems: self.late.iter().cloned().collect(),
            tick,
        })
    }

    /// The copy when it changed since the last good read, or `None` (unchanged, or
    /// unreadable: said once when it stops or starts being readable).
    fn read(&mut self) -> Option<CopyView> {
        let stamp = self.read_as.changed(&self.copy)?;
        let read = read_copy(&self.copy);
        self.read_as = if read.is_ok() {
            stamp
        } else {
            CopyStamp::default()
        };
        let ok = read.is_ok();
        if self.copy_ok != Some(ok) {
            match &read {
                Ok(v) => log::info!(
                    "standby: the copy {} reads: {} agents",
                    self.copy.display(),
                    v.agents.len()
                ),
                Err(e) => log::warn!("standby: {e}; the last good view is kept"),
            }
            self.copy_ok = Some(ok);
        }
        read.ok()
    }

    /// Whether the copy shows a window end later than the last view's: the primary renews.
    fn primary_renewed(&mut self, view: &CopyView) -> bool {
        let mut renewed = false;
        for a in &view.agents {
            let Some(end) = a.end_ms else { continue };
            let before = self.ends.insert(a.address.clone(), end);
            renewed |= before.is_some_and(|b| end > b);
        }
        renewed
    }

    /// A log line per pass that renewed; told once when the primary turns late, and once
    /// when the copy shows it renewing again.
    fn say(&mut self, tick: &TickSummary, primary_renews: bool) {
        if tick.renewed > 0 {
            log::warn!(
                "standby: the primary is late: {} agents renewed by the standby this pass",
                tick.renewed
            );
            if self.late.is_none() {
                self.late = Some(format!(
                    "the primary is late: {} agents renewed by the standby",
                    tick.renewed
                ));
            }
        } else if primary_renews && self.late.take().is_some() {
            log::info!("standby: the copy shows the primary renewing again");
        }
    }
}
