//! `run`: tick, then sleep until the next agent is due (never longer than the poll
//! interval), until SIGTERM or SIGINT, which let the agent in hand finish.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::lock::DbLock;
use crate::now_ms;
use crate::tick::Agency;

/// Sleep granularity while waiting: how fast a signal is noticed.
const SLICE_MS: i64 = 50;

pub fn run(agency: &mut Agency, lock: &mut DbLock, poll_seconds: u64) -> Result<()> {
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, agency.stop.clone())
            .map_err(|e| Error::runtime(format!("cannot install the signal handler: {e}")))?;
    }
    log::info!("run: started, polling at most every {poll_seconds}s");
    let poll_ms = poll_seconds as i64 * 1000;
    let mut attention: Vec<String> = Vec::new();
    while !agency.stop.load(Ordering::SeqCst) {
        let summary = agency.tick()?;
        lock.tick_completed(now_ms());
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
        let wake = match summary.next_due_ms {
            Some(next) => next.min(now_ms() + poll_ms),
            None => now_ms() + poll_ms,
        };
        while !agency.stop.load(Ordering::SeqCst) {
            let left = wake - now_ms();
            if left <= 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(left.min(SLICE_MS) as u64));
        }
    }
    log::info!("run: stopped by signal");
    Ok(())
}
