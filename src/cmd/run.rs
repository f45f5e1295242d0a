//! `run`: tick, then sleep until the next agent is due (never longer than the poll
//! interval), until SIGTERM or SIGINT, which let the agent in hand finish.

use std::sync::atomic::Ordering;

use super::{Ctx, Run};
use crate::error::Result;
use crate::ops::lock::{self, DbLock};
use crate::ops::notify;
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
    }
}

impl Run for RunCmd {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let args = self.runtime_args();
        let alerts = notify::AlertArgs::of(&args);
        let cfg = args.resolve()?;
        let alerts = alerts.resolve()?;
        let poll = config::poll_seconds(self.poll_seconds)?;
        let mut lock = lock::acquire(&ctx.db, "run")?;
        let mut agency = Agency::new(ctx.open_for_renewals()?, cfg);
        run(&mut agency, &mut lock, poll, &alerts)
    }
}

fn run(
    agency: &mut Agency,
    lock: &mut DbLock,
    poll_seconds: u64,
    alerts: &notify::Alerts,
) -> Result<()> {
    crate::ops::signals::stop_on_signals(&agency.stop)?;
    log::info!("run: started, polling at most every {poll_seconds}s");
    let poll_ms = poll_seconds as i64 * 1000;
    let mut attention: Vec<String> = Vec::new();
    let mut pinged_ms = i64::MIN;
    while !agency.stop.load(Ordering::SeqCst) {
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
    log::info!("run: stopped by signal");
    Ok(())
}
