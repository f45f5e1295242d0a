//! `check`: for monitoring; exit 4 and say why when something needs a human.

use std::path::PathBuf;

use argh::FromArgs;

use super::{needs_human, Ctx, Run};
use crate::error::Result;
use crate::net::clock::now_ms;
use crate::ops::{health, notify};

/// For monitoring: exit 4 and say why when a window lapsed or will lapse without a renewal
/// planned, billing transactions stay pending, or epochs near the backbill limit.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "check")]
pub struct Check {
    /// warn about windows ending within this many seconds with no renewal planned (default: 600)
    #[argh(option, default = "health::Thresholds::DEFAULT_WARN_SECONDS")]
    pub warn_seconds: u32,
    /// warn about billing transactions pending longer than this (default: 900)
    #[argh(option, default = "health::Thresholds::DEFAULT_PENDING_LIMIT_SECONDS")]
    pub pending_limit_seconds: u32,
    /// a host clock off the stream service's by more than this needs a human (default: 60)
    #[argh(option, default = "60")]
    pub max_clock_skew_seconds: u32,
    /// also write node_exporter textfile metrics to this file (atomically)
    #[argh(option)]
    pub prometheus: Option<PathBuf>,
    /// webhook told when something newly needs a human and when it is resolved
    /// (repeatable; slack, mattermost, discord, ntfy or json)
    #[argh(option)]
    pub notify: Vec<String>,
    /// payload for --notify: slack, mattermost, discord, ntfy, json (default: by the URL's
    /// host, else json)
    #[argh(option)]
    pub notify_format: Option<String>,
    /// the same problem is told at most once per this many seconds (default: 3600)
    #[argh(option)]
    pub notify_cooldown_seconds: Option<u64>,
    /// allow http:// --notify URLs to hosts other than loopback
    #[argh(switch)]
    pub allow_insecure_http: bool,
    /// on a standby host: the primary's copy (Litestream's follower); checks that it is
    /// readable and fresh instead of the primary's duties
    #[argh(option)]
    pub standby_copy: Option<PathBuf>,
    /// with --standby-copy: the copy's newest write older than this needs a human
    /// (default: 900; the primary writes at each epoch boundary and renewal)
    #[argh(option, default = "900")]
    pub max_copy_age_seconds: u32,
    /// the operator's wallet (read once an epoch) paying fewer epochs of bills than this at
    /// the last epoch's fees needs a human; 0: never (default: 3)
    #[argh(option, default = "health::DEFAULT_MIN_BALANCE_EPOCHS")]
    pub min_balance_epochs: u32,
}

impl Run for Check {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let alerts = notify::AlertArgs {
            notify: self.notify.clone(),
            notify_format: self.notify_format.clone(),
            notify_cooldown_seconds: self.notify_cooldown_seconds,
            allow_insecure_http: crate::config::switch(
                self.allow_insecure_http,
                "allow-insecure-http",
            )?,
            ..notify::AlertArgs::default()
        }
        .resolve()?;
        let mut store = ctx.open_even_read_only()?;
        let now = now_ms();
        if let Some(path) = &self.prometheus {
            health::write_prometheus(&store, &ctx.db, path, now)?;
        }
        let mut problems = match &self.standby_copy {
            Some(copy) => health::standby(
                &store,
                copy,
                now,
                i64::from(self.max_copy_age_seconds) * 1000,
                i64::from(self.max_clock_skew_seconds) * 1000,
            )?,
            None => health::check(
                &store,
                now,
                health::Thresholds::of_seconds(
                    self.warn_seconds,
                    self.pending_limit_seconds,
                    i64::from(self.max_clock_skew_seconds) * 1000,
                ),
            )?,
        };
        problems.extend(health::disk(&store, &ctx.db, now)?);
        if self.standby_copy.is_none() {
            problems.extend(wallet(&store, self.min_balance_epochs)?);
        }
        for p in &problems {
            println!("{p}");
        }
        // Said by check (and once by the tick that learns it), not a problem: the agent
        // left, or has not joined, the escrow.
        for note in store.escrow_notices()? {
            println!("note: {note}");
        }
        if crate::tick::idle::host_clock_moved(&store)? {
            println!("note: the host clock stepped (or the host rebooted) since the last observation; the next tick moves the plan with it and observes the network's time");
        }
        // Idle ticks compute the epoch without asking: say when it was last asked.
        if let Some(t) = store.timeline()? {
            println!(
                "note: epoch {} observed {} s ago (idle ticks ask again at the next boundary, or after {} s)",
                t.epoch,
                (now - t.observed_ms).max(0) / 1000,
                crate::chain::epochs::TIMELINE_TRUST_MS / 1000
            );
        }
        notify::after(&mut store, &alerts, &problems, now);
        needs_human(&problems)?;
        if self.standby_copy.is_some() {
            println!("ok: the primary's copy is fresh");
            return Ok(());
        }
        let (active, streaming) = store.streaming(now)?;
        if active == 0 {
            println!("ok: no active agent (enroll one: see README, Getting started)");
        } else if streaming == active {
            println!("ok: all {active} active agents streaming, billing on time");
        } else {
            println!(
                "ok: {streaming} of {active} active agents streaming, the others renewing or waiting for their first renewal; billing on time"
            );
        }
        Ok(())
    }
}

/// The operator's wallet: a problem below `--min-balance-epochs`, and a note of it.
fn wallet(store: &crate::store::Store, min_epochs: u32) -> Result<Vec<String>> {
    let runway = health::runway(store)?;
    if let Some(r) = &runway {
        let shown = r
            .epochs()
            .map_or("unknown".into(), |e| format!("{e:.1} epochs"));
        println!(
            "note: the operator's wallet holds {} CLAW (read at epoch {}'s close); runway {shown}",
            crate::chain::fees::claw(r.balance),
            r.epoch
        );
    }
    Ok(health::wallet(runway.as_ref(), min_epochs)
        .into_iter()
        .collect())
}
