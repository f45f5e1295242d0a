//! `run`: tick, then sleep until the next agent is due (never longer than the poll
//! interval), until SIGTERM or SIGINT, which let the agent in hand finish. With more than
//! one renewer (`--renewers`), it keeps its children renewing their shards (see
//! `crate::ops::renewers`).

use std::sync::atomic::Ordering;

use super::{Ctx, Run};
use crate::error::Result;
use crate::ops::lock::{self, DbLock};
use crate::ops::notify;
use crate::ops::renewers::{Children, Renewers};
use crate::store::Shard;
use crate::tick::Agency;
use crate::{config, now_ms};

/// How often records that wait for a full or read-only disk are tried again.
const BACKLOG_RETRY_MS: i64 = 1_000;

crate::runtime_command! {
    /// Tick in a loop, sleeping until the next agent is due; SIGTERM/SIGINT stop it cleanly.
    #[argh(subcommand, name = "run")]
    RunCmd {
        /// longest sleep between ticks in seconds (default: 20)
        #[argh(option)]
        pub poll_seconds: Option<u64>,
        /// renewer processes over disjoint shards of the agents: auto (as many as the
        /// agents, their windows and the service's measured latency need, at most 32) or a
        /// number; this process renews shard 0 and bills (default: auto)
        #[argh(option)]
        pub renewers: Option<String>,
        /// renew only shard K of N (what `run --renewers` gives its children); shard 0
        /// also bills
        #[argh(option)]
        pub shard: Option<String>,
    }
}

/// How often `--renewers auto` weighs the load again; the first time soon after the start,
/// once the service's latency is measured.
const RESIZE_EVERY_MS: i64 = 60_000;
const FIRST_RESIZE_MS: i64 = 15_000;

impl Run for RunCmd {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let args = self.runtime_args();
        let alerts = notify::AlertArgs::of(&args);
        let shard = super::shard_arg(self.shard.as_deref())?;
        let renewers = match config::string_opt(self.renewers.clone(), "renewers") {
            Some(text) => Renewers::parse(&text)?,
            None => Renewers::Auto,
        };
        let cfg = crate::tick::shard_config(args.resolve()?, shard);
        let mut alerts = alerts.resolve()?;
        let poll = config::poll_seconds(self.poll_seconds)?;
        let mut lock = lock::acquire_shard(&ctx.db, "run", shard)?;
        let mut store = ctx.open_for_renewals()?;
        let mut children = Children::new(child_args());
        match shard {
            // A shard's renewer: its part only; shard 0's process pings.
            Some(s) => {
                crate::ops::renewers::follow_parent()?;
                store.shard = Some(s);
                if s.index > 0 {
                    alerts.ping_url = None;
                }
            }
            None => {
                let count = renewers.count(&store)?;
                resize(&mut children, &mut store, count);
            }
        }
        let mut agency = Agency::new(store, cfg);
        let loop_ = Loop {
            poll_seconds: poll,
            alerts: &alerts,
            renewers: shard.is_none().then_some(renewers),
        };
        run(&mut agency, &mut lock, &mut children, loop_)
    }
}

/// `run`'s own command line for its children: without `--renewers` (each gets `--shard`).
fn child_args() -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        if a == "--renewers" {
            args.next();
        } else if !a.to_string_lossy().starts_with("--renewers=") {
            out.push(a);
        }
    }
    out
}

/// `count` renewers: this process takes shard 0 of them (all agents when 1).
fn resize(children: &mut Children, store: &mut crate::store::Store, count: u32) {
    if count != children.count() {
        log::info!("run: {count} renewers (this process renews shard 0/{count} and bills)");
    }
    children.resize(count);
    store.shard = (count > 1).then_some(Shard { index: 0, count });
}

/// What the loop needs besides the agency.
struct Loop<'a> {
    poll_seconds: u64,
    alerts: &'a notify::Alerts,
    /// `Some` for the parent of the renewers: weighed again every few minutes.
    renewers: Option<Renewers>,
}

fn run(
    agency: &mut Agency,
    lock: &mut DbLock,
    children: &mut Children,
    Loop {
        poll_seconds,
        alerts,
        renewers,
    }: Loop,
) -> Result<()> {
    crate::ops::signals::stop_on_signals(&agency.stop)?;
    log::info!("run: started, polling at most every {poll_seconds}s");
    let poll_ms = poll_seconds as i64 * 1000;
    let mut attention: Vec<String> = Vec::new();
    let mut pinged_ms = i64::MIN;
    let mut weighed_ms = now_ms() - RESIZE_EVERY_MS + FIRST_RESIZE_MS;
    while !agency.stop.load(Ordering::SeqCst) {
        children.keep_alive();
        if let Some(r) = renewers.filter(|_| now_ms() - weighed_ms >= RESIZE_EVERY_MS) {
            weighed_ms = now_ms();
            let count = r.count(&agency.store)?;
            if count != children.count() {
                resize(children, &mut agency.store, count);
            }
        }
        let summary = agency.tick_unless_idle()?;
        lock.tick_completed(now_ms());
        notify::after(&mut agency.store, alerts, &summary.attention, now_ms());
        if now_ms().saturating_sub(pinged_ms) >= alerts.ping_every_ms {
            let status = if summary.attention.is_empty() { 0 } else { 4 };
            notify::ping(alerts, notify::Ping::Exit(status));
            pinged_ms = now_ms();
        }
        if summary.due > 0 || summary.windows_attributed > 0 {
            println!("{summary}");
        }
        // What needs a human is logged when it changes, not at every poll.
        if summary.attention != attention {
            for item in &summary.attention {
                log::error!("needs a human: {item}");
            }
            attention = summary.attention;
        }
        // Records waiting for the disk are tried again every second.
        let poll_ms = if agency.has_backlog() {
            BACKLOG_RETRY_MS
        } else {
            poll_ms
        };
        let wake = match summary.next_due_ms {
            Some(next) => next.min(now_ms() + poll_ms),
            None => now_ms() + poll_ms,
        };
        crate::ops::signals::sleep_until(&agency.stop, wake);
    }
    children.stop();
    log::info!("run: stopped by signal");
    Ok(())
}
