//! SIGTERM and SIGINT, for the loops (`run`, `serve`): they set a flag the loop checks
//! between two steps, so the step in hand always finishes.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::error::{Error, Result};

/// Sleep granularity while waiting: how fast a signal is noticed.
const SLICE_MS: i64 = 50;

/// Sleeps until `wake_ms` (host time) in short slices, so that a signal is noticed quickly.
pub fn sleep_until(stop: &AtomicBool, wake_ms: i64) {
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let left = wake_ms - crate::net::clock::now_ms();
        if left <= 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(left.min(SLICE_MS) as u64));
    }
}

/// Registers SIGTERM and SIGINT on `stop`.
pub fn stop_on_signals(stop: &Arc<AtomicBool>) -> Result<()> {
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| Error::runtime(format!("cannot install the signal handler: {e}")))?;
    }
    Ok(())
}
