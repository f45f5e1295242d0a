//! `tick`: one cycle of the job (see `crate::tick`), or with `--dry-run` what it would do.

use std::fmt::Write as _;

use super::{needs_human, Ctx, Run};
use crate::error::{Error, Result};
use crate::ops::notify::{self, Ping};
use crate::ops::{lock, output};
use crate::store::{Shard, Store};
use crate::tick::idle;
use crate::tick::{Agency, TickSummary};
use crate::{config, now_ms};

crate::runtime_command! {
    /// One cycle: learn the epoch, renew the agents that are due, record the windows.
    #[argh(subcommand, name = "tick")]
    Tick {
        /// print what would be renewed and billed; change nothing
        #[argh(switch)]
        pub dry_run: bool,
        /// renew only shard K of N (agents whose id is K modulo N), e.g. 1/4; shard 0 also
        /// bills, the others only renew (one process per shard, from a template unit)
        #[argh(option)]
        pub shard: Option<String>,
    }
}

impl Run for Tick {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let args = self.runtime_args();
        let alerts = notify::AlertArgs::of(&args);
        let shard = super::shard_arg(self.shard.as_deref())?;
        let cfg = crate::tick::shard_config(args.resolve()?, shard);
        let alerts = alerts.resolve()?;
        if config::switch(self.dry_run, "dry-run")? {
            let agency = Agency::new(ctx.open_existing()?, cfg);
            print!("{}", dry_run(&agency)?);
            return Ok(());
        }
        notify::ping(&alerts, Ping::Start);
        let result = tick(ctx, cfg, &alerts, shard);
        let status = result.as_ref().err().map_or(0, Error::exit_code);
        notify::ping(&alerts, Ping::Exit(status));
        result
    }
}

/// One tick under the lock: the idle one when nothing is to be done, else the full one;
/// then the alerts.
fn tick(
    ctx: &Ctx,
    cfg: config::RuntimeConfig,
    alerts: &notify::Alerts,
    shard: Option<Shard>,
) -> Result<()> {
    let mut lock = lock::acquire_shard(&ctx.db, "tick", shard)?;
    // Nothing to do: the database opened read-only, no HTTP client built, no request.
    if let Some((store, summary)) = idle_tick(ctx, &cfg, shard) {
        lock.tick_completed(now_ms());
        println!("{summary}");
        notify_idle(ctx, &store, alerts, &summary.attention);
        return needs_human(&summary.attention);
    }
    let mut store = ctx.open_for_renewals()?;
    store.shard = shard;
    let mut agency = Agency::new(store, cfg);
    let summary = agency.tick()?;
    lock.tick_completed(now_ms());
    println!("{summary}");
    notify::after(&mut agency.store, alerts, &summary.attention, now_ms());
    // What the disk did not take dies with this process: named, exit 4.
    if let Some(unrecorded) = agency.unrecorded_error() {
        return Err(unrecorded);
    }
    needs_human(&summary.attention)
}

/// The idle tick's alerts, read from the idle tick's read-only `store`: the database is
/// opened to write only when they changed or a message waits, so an idle tick with
/// nothing new still writes nothing.
fn notify_idle(ctx: &Ctx, store: &Store, alerts: &notify::Alerts, problems: &[String]) {
    if alerts.targets.is_empty() {
        return;
    }
    let quiet =
        || -> Result<bool> { Ok(!store.alerts_changed(problems)? && store.outbox_len()? == 0) };
    if quiet().unwrap_or(false) {
        return;
    }
    match ctx.open() {
        Ok(mut store) => notify::after(&mut store, alerts, problems, now_ms()),
        Err(e) => log::warn!("alerts not updated: {e}"),
    }
}

/// The idle tick (see `crate::tick::idle`) with the read-only store it read, or `None` when the
/// tick has work (or the idle check could not be made: then the full tick decides).
fn idle_tick(
    ctx: &Ctx,
    cfg: &config::RuntimeConfig,
    shard: Option<Shard>,
) -> Option<(Store, TickSummary)> {
    let attempt = || -> Result<Option<(Store, TickSummary)>> {
        let Some(mut store) = Store::open_read_only(&ctx.db)? else {
            return Ok(None);
        };
        store.shard = shard;
        let summary = idle::idle_tick(&store, cfg, now_ms())?;
        Ok(summary.map(|summary| (store, summary)))
    };
    attempt().unwrap_or_else(|e| {
        log::debug!("idle check not possible, ticking in full: {e}");
        None
    })
}

/// What a tick would do now, changing nothing: the epoch (one read-only request), the
/// agents it would renew and the epochs it would consider for billing. It asks the same
/// functions the real tick uses.
fn dry_run(agency: &Agency) -> Result<String> {
    let mut out = String::new();
    let epoch = agency.peek_epoch()?;
    match &epoch {
        Ok((current, _)) => {
            let _ = writeln!(out, "dry run: epoch {current}; nothing is sent or written");
        }
        Err(e) => {
            let _ = writeln!(
                out,
                "dry run: epoch unknown ({e}); nothing is sent or written"
            );
        }
    }
    let due = agency.store.due_list(now_ms())?;
    for (address, end) in &due {
        let end = output::utc(*end);
        let _ = writeln!(out, "would renew {address} (window ends {end})");
    }
    let _ = writeln!(out, "{} agents due", due.len());
    match (agency.billing_enabled(), epoch) {
        (false, _) => out.push_str("billing off\n"),
        (true, Err(_)) => out.push_str("billing waits for the epoch\n"),
        (true, Ok((current, rounds))) => {
            let candidates = crate::billing::candidates(&agency.store, current, rounds)?;
            for c in &candidates {
                let _ = writeln!(
                    out,
                    "would consider billing {} epoch {} ({} windows), after the contract's views",
                    c.agent, c.epoch, c.windows
                );
            }
            let pending = agency.store.pending_transactions()?.len();
            let _ = writeln!(
                out,
                "{} epochs to bill, {pending} transactions in flight",
                candidates.len()
            );
        }
    }
    Ok(out)
}
