//! SIGTERM and SIGINT, for the loops (`run`, `serve`): they set a flag the loop checks
//! between two steps, so the step in hand always finishes.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::error::{Error, Result};

/// Registers SIGTERM and SIGINT on `stop`.
pub fn stop_on_signals(stop: &Arc<AtomicBool>) -> Result<()> {
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| Error::runtime(format!("cannot install the signal handler: {e}")))?;
    }
    Ok(())
}
