//! `run`'s renewers. One renewal waits for the stream service's answer (tens to hundreds
//! of milliseconds on the internet), so one process renews about 10 agents a second at
//! 100 ms. With `--renewers N` (or `auto`), `run` renews shard 0/N itself (and bills, as
//! the only process that does) and keeps N-1 child processes `run --shard K/N`, each as
//! synchronous and single-threaded as `run`, over disjoint parts of the agents. A child
//! that dies (a SIGKILL) loses nothing it counted (each renewal commits on its own) and is
//! started again; SIGTERM stops them all.

use std::ffi::OsString;
use std::process::{Child, Command};

use crate::error::{Error, Result};
use crate::store::{Shard, Store};

/// At most this many renewers (`auto` and a number alike).
pub const MAX_RENEWERS: u32 = 32;
/// Headroom over the steady rate: bursts (enrollments at once, a backlog after an outage).
const HEADROOM: f64 = 3.0;
/// Assumed before any renewal was timed.
const DEFAULT_LATENCY_MS: f64 = 100.0;
/// Assumed before any window length is known.
const DEFAULT_WINDOW_MS: f64 = 1_800_000.0;

/// `--renewers`: a number, or `auto` (from the agents, their windows and the service's
/// measured latency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewers {
    Auto,
    Fixed(u32),
}

impl Renewers {
    pub fn parse(text: &str) -> Result<Renewers> {
        match text {
            "auto" => Ok(Renewers::Auto),
            n => match n.parse::<u32>() {
                Ok(n) if (1..=MAX_RENEWERS).contains(&n) => Ok(Renewers::Fixed(n)),
                _ => Err(Error::usage(format!(
                    "--renewers {text}: give auto or a number from 1 to {MAX_RENEWERS}"
                ))),
            },
        }
    }

    /// How many renewers the agency needs now.
    pub fn count(self, store: &Store) -> Result<u32> {
        match self {
            Renewers::Fixed(n) => Ok(n),
            Renewers::Auto => {
                let load = store.renewal_load(crate::net::clock::now_ms())?;
                let latency_ms = load.latency_ms.unwrap_or(DEFAULT_LATENCY_MS);
                let steady = needed(
                    load.agents,
                    load.window_ms.map_or(DEFAULT_WINDOW_MS, |w| w as f64),
                    latency_ms,
                );
                Ok(steady.max(for_backlog(load.due_now, latency_ms)))
            }
        }
    }
}

/// Renewers for `agents` windows of `window_ms` at `latency_ms` a renewal: the steady rate
/// times the latency, with headroom, within 1..=MAX_RENEWERS.
pub fn needed(agents: i64, window_ms: f64, latency_ms: f64) -> u32 {
    let per_second = agents.max(0) as f64 / (window_ms / 1000.0).max(1.0);
    let busy = per_second * (latency_ms.max(1.0) + 2.0) / 1000.0;
    ((busy * HEADROOM).ceil() as u32).clamp(1, MAX_RENEWERS)
}

/// A backlog (enrollments at once, agents due after an outage) is cleared within this.
const BACKLOG_SECONDS: f64 = 60.0;

/// Renewers that clear `due` agents within [`BACKLOG_SECONDS`] at `latency_ms` each.
pub fn for_backlog(due: i64, latency_ms: f64) -> u32 {
    let busy = due.max(0) as f64 * (latency_ms.max(1.0) + 2.0) / 1000.0 / BACKLOG_SECONDS;
    (busy.ceil() as u32).clamp(1, MAX_RENEWERS)
}

/// Set on a child renewer: the pid of the `run` that started it.
const PARENT_VAR: &str = "STREAM_AGENCY_RENEWER_OF";

/// In a child renewer: it dies with the `run` that started it (a SIGKILL of the parent
/// leaves no renewer behind holding its shard). `Err` when that `run` is gone already.
pub fn follow_parent() -> Result<()> {
    let Some(parent) = crate::environment::env(PARENT_VAR) else {
        return Ok(());
    };
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
        .map_err(|e| Error::runtime(format!("renewer: cannot follow its run: {e}")))?;
    let alive = rustix::process::getppid().map(|p| p.as_raw_nonzero().get().to_string());
    if alive.as_deref() != Some(parent.as_str()) {
        return Err(Error::runtime("renewer: the run that started it is gone"));
    }
    Ok(())
}

/// The child processes of one `run`: shards 1/N .. N-1/N.
pub struct Children {
    count: u32,
    /// The command line of `run`, without `--renewers`: each child gets `--shard K/N`.
    args: Vec<OsString>,
    children: Vec<(Shard, Child)>,
}

impl Children {
    pub fn new(args: Vec<OsString>) -> Children {
        Children {
            count: 1,
            args,
            children: Vec::new(),
        }
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Stops the children there are and starts `count - 1` new ones.
    pub fn resize(&mut self, count: u32) {
        self.stop();
        self.count = count.max(1);
        for index in 1..self.count {
            let shard = Shard {
                index,
                count: self.count,
            };
            if let Some(child) = self.spawn(shard) {
                self.children.push((shard, child));
            }
        }
    }

    fn spawn(&self, shard: Shard) -> Option<Child> {
        let exe = std::env::current_exe().ok()?;
        let spawned = Command::new(exe)
            .args(&self.args)
            .arg("--shard")
            .arg(shard.to_string())
            .env(PARENT_VAR, std::process::id().to_string())
            .spawn();
        match spawned {
            Ok(child) => Some(child),
            Err(e) => {
                log::error!("renewer of shard {shard} could not start: {e}");
                None
            }
        }
    }

    /// Starts again every child that has exited (killed, crashed).
    pub fn keep_alive(&mut self) {
        let mut dead = Vec::new();
        for (i, (shard, child)) in self.children.iter_mut().enumerate() {
            if let Ok(Some(status)) = child.try_wait() {
                log::warn!("renewer of shard {shard} exited ({status}): started again");
                dead.push(i);
            }
        }
        for i in dead {
            let shard = self.children[i].0;
            if let Some(child) = self.spawn(shard) {
                self.children[i].1 = child;
            }
        }
    }

    /// SIGTERM to every child (each finishes the agent in hand), then waits for them.
    pub fn stop(&mut self) {
        for (_, child) in &self.children {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        for (_, mut child) in self.children.drain(..) {
            let _ = child.wait();
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewers_follow_the_load() {
        // 100,000 agents on 30-minute windows at 100 ms: 56 a second, 5.7 busy, 3x: 17.
        assert_eq!(needed(100_000, 1_800_000.0, 100.0), 17);
        assert_eq!(needed(1_000_000, 1_800_000.0, 300.0), 32, "the bound");
        assert_eq!(needed(18_000, 1_800_000.0, 100.0), 4);
        assert_eq!(needed(100, 1_800_000.0, 100.0), 1);
        assert_eq!(needed(0, 1_800_000.0, 100.0), 1);
        // 5,000 enrollments at once at 100 ms: 510 s of requests, cleared in a minute by 9.
        assert_eq!(for_backlog(5_000, 100.0), 9);
        assert_eq!(for_backlog(10, 100.0), 1);
        assert_eq!(Renewers::parse("auto").unwrap(), Renewers::Auto);
        assert_eq!(Renewers::parse("4").unwrap(), Renewers::Fixed(4));
        assert!(Renewers::parse("0").is_err() && Renewers::parse("33").is_err());
    }
}
