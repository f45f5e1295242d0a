//! The cycle: one tick learns the epoch, renews every agent that is due (most urgent
//! first), attributes the new windows to their epochs and bills closed epochs. Each
//! agent's outcome is committed on its own, so a crash mid-tick loses nothing already done.
//!
//! - `mod.rs`: the [`Agency`] and [`Agency::tick`], the outline, its steps in order;
//! - `homecoming`: step 0b, the standby's windows absorbed from its copy (`--standby-copy`);
//! - `epoch`: steps 1 and 4, the epoch observed;
//! - `chain_config`: the chain's configuration (`/network/config`) as cached;
//! - `history`: step 6a, the pages' history, a row per epoch;
//! - `renew`: step 3, one agent renewed and its outcome recorded;
//! - `backlog`: outcomes that wait in memory while the disk refuses them;
//! - `idle`: the tick that asks nobody when nothing can be due;
//! - `summary`: what a tick did, for its log line and its exit status.

mod backlog;
mod chain_config;
mod epoch;
mod history;
mod homecoming;
pub(crate) mod idle;
mod renew;
mod summary;

pub use summary::TickSummary;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::billing::Biller;
use crate::chain::gateway::Gateway;
use crate::config::RuntimeConfig;
use crate::error::Result;
use crate::net::clock::now_ms;
use crate::net::{clock, http};
use crate::ops::{disk, health};
use crate::renewal::stream::StreamClient;
use crate::store::usage::effective_epoch;
use crate::store::Store;

/// The long-lived pieces a tick works with.
pub struct Agency {
    pub store: Store,
    pub cfg: RuntimeConfig,
    stream: StreamClient,
    gateway: Gateway,
    biller: Option<Biller>,
    /// Rounds passed in the current epoch at the last observation.
    rounds_passed: i64,
    /// Set by SIGTERM/SIGINT: finish the agent in hand, start no other.
    pub stop: Arc<AtomicBool>,
    /// After this instant a tick starts no new renewal or billing (--max-tick-seconds).
    deadline: Option<Instant>,
    /// The gateway did not answer last time (its outage is logged once).
    gateway_down: bool,
    /// "No agent enrolled" was said (once per process).
    told_empty: bool,
    /// "Epoch boundaries are estimated" was said (once per process).
    told_estimate: bool,
    /// `/network/config` as this process last trusted it (genesis, round, chain id).
    chain_config: chain_config::ChainConfigCache,
    /// The network's clock as the answers' `Date` headers tell it.
    network_clock: clock::Keeper,
    /// The database file, for its disk's free space and reserve.
    db: std::path::PathBuf,
    /// Renewals the disk did not take yet (full or read-only), oldest first.
    backlog: backlog::Backlog,
    /// `--standby-copy`: the standby's windows, brought home at every tick.
    homecoming: Option<homecoming::Homecoming>,
}

/// The configuration of one shard's renewer (`--shard K/N`): shard 0 (and a process
/// without a shard) does everything; any other shard only renews its agents and records
/// their windows: it never bills (one operator key, one nonce sequence) and leaves the
/// standby's windows to shard 0.
pub fn shard_config(mut cfg: RuntimeConfig, shard: Option<crate::store::Shard>) -> RuntimeConfig {
    if let Some(s) = shard.filter(|s| s.index > 0) {
        if cfg.billing.take().is_some() {
            log::info!(
                "shard {s}: renews its agents only; shard 0/{} bills",
                s.count
            );
        }
        cfg.standby_copy = None;
    }
    cfg
}

/// Whether new work must wait for the next tick: a signal, or the tick's deadline.
fn must_stop(stop: &AtomicBool, deadline: Option<Instant>) -> bool {
    stop.load(Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() >= d)
}

impl Agency {
    pub fn new(store: Store, mut cfg: RuntimeConfig) -> Agency {
        let mut network_clock = clock::Keeper::default();
        network_clock.load(store.meta_get(clock::STORE_KEY).ok().flatten().as_deref());
        // One agent per endpoint: each has its own proxy (or none, by NO_PROXY).
        let agent = |url: &str| http::sampling_agent(cfg.timeout, network_clock.sink(), url);
        let (stream, gateway) = (agent(&cfg.stream_url), agent(&cfg.epoch_api_url));
        let biller = cfg.billing.take().map(|b| {
            let billing_agent = agent(&b.proxy);
            Biller::new(b, billing_agent)
        });
        Agency {
            homecoming: cfg.standby_copy.clone().map(homecoming::Homecoming::new),
            db: store.path().unwrap_or_default(),
            backlog: backlog::Backlog::default(),
            biller,
            rounds_passed: 0,
            stream: StreamClient::new(stream, &cfg.stream_url),
            gateway: Gateway::new(gateway, &cfg.epoch_api_url),
            store,
            cfg,
            stop: Arc::new(AtomicBool::new(false)),
            deadline: None,
            gateway_down: false,
            told_empty: false,
            told_estimate: false,
            chain_config: chain_config::ChainConfigCache::default(),
            network_clock,
        }
    }

    /// The effective current epoch and rounds passed in it, asking the gateway once and
    /// writing nothing (for `tick --dry-run`). The inner error is the gateway's.
    pub fn peek_epoch(
        &self,
    ) -> Result<std::result::Result<(i64, i64), crate::chain::gateway::GatewayError>> {
        let status = match self.gateway.network_status() {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let current = effective_epoch(self.store.max_epoch_seen()?, status.epoch);
        Ok(Ok((current, status.rounds_passed)))
    }

    pub fn billing_enabled(&self) -> bool {
        self.biller.is_some()
    }

    fn out_of_time(&self) -> bool {
        must_stop(&self.stop, self.deadline)
    }

    /// For `run`: the idle tick (see `crate::tick::idle`) when nothing is to be done, else a
    /// full tick. (`tick` makes its idle check before the agency is even built.)
    pub fn tick_unless_idle(&mut self) -> Result<TickSummary> {
        if !self.backlog.is_empty() {
            return self.tick();
        }
        match idle::idle_tick(&self.store, &self.cfg, now_ms())? {
            Some(summary) => Ok(summary),
            None => self.tick(),
        }
    }

    /// The error a `tick` ends with while renewals wait for the disk (see `crate::ops::disk`).
    pub fn unrecorded_error(&self) -> Option<crate::error::Error> {
        (!self.backlog.is_empty()).then(|| self.backlog.unrecorded_error(&self.db))
    }

    /// Records wait in memory: `run` tries to write them again soon.
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// A database opened read-only (its file system was) is opened to write once it can be.
    fn reopen_if_writable(&mut self) {
        if !self.store.is_read_only() || disk::space(&self.db).is_none_or(|s| s.read_only) {
            return;
        }
        match Store::open(&self.db) {
            Ok(mut store) => {
                store.secret_key = self.store.secret_key.take();
                self.store = store;
                log::info!("{} is writable again", self.db.display());
            }
            Err(e) => log::warn!("{} still cannot be opened to write: {e}", self.db.display()),
        }
    }

    /// The next agent due, as the database and the records in memory tell it, not before
    /// the stream service's pause (a 429 to any renewer) ends.
    fn next_due_ms(&self) -> Result<Option<i64>> {
        let paused = self.store.stream_paused_until().ok().flatten().unwrap_or(0);
        let next = if self.backlog.is_empty() {
            self.store.next_due_ms()?
        } else {
            let planned = self.backlog.planned();
            let ids: Vec<i64> = planned.iter().map(|&(id, _)| id).collect();
            let others = self.store.next_due_ms_except(&ids)?;
            planned.iter().map(|&(_, at)| at).chain(others).min()
        };
        Ok(next.map(|n| n.max(paused)))
    }

    /// Whether the stream service asked every client to wait (a 429 with `Retry-After` to
    /// any renewer of this agency), now.
    fn service_paused(&self) -> bool {
        self.store
            .stream_paused_until()
            .ok()
            .flatten()
            .is_some_and(|until| now_ms() < until)
    }

    pub fn tick(&mut self) -> Result<TickSummary> {
        self.deadline = Some(Instant::now() + self.cfg.max_tick);
        let mut summary = TickSummary::default();
        // 0. A host clock that stepped since the last observation moves the plan with it;
        //    records that waited for the disk go first (their windows are placed in 1).
        let followed = self.follow_host_clock();
        tolerate(followed, &mut summary)?;
        self.reopen_if_writable();
        if !self.backlog.is_empty() {
            summary.windows_recorded += self.backlog.flush(&mut self.store, &self.db)?;
        }
        // 0b. The standby's windows come home (attributed in 1, billed in 5).
        if let Some(home) = self.homecoming.as_mut() {
            let absorbed = home.absorb(&mut self.store);
            tolerate(absorbed, &mut summary)?;
        }
        // 1. The epoch, every tick: usage is counted even before billing is on. A disk
        //    that refuses the epoch's records leaves it unknown: renewals go on.
        let observed = self.observe_epoch(&mut summary);
        summary.epoch = tolerate(observed, &mut summary)?.flatten();
        // 2. With billing, the escrow status of the agents due and not read this epoch.
        self.follow_lifecycle(&mut summary)?;
        // 3. Renew what is due; continuity first, so even without an epoch or a disk.
        self.renew_due(&mut summary)?;
        // 4. A second look at the epoch places the windows just opened, exactly, even
        //    when the epoch changed during the tick.
        if summary.windows_recorded > 0 {
            let observed = self.observe_epoch(&mut summary);
            if let Some(current) = tolerate(observed, &mut summary)?.flatten() {
                summary.epoch = Some(current);
            }
        }
        // 5. Bill closed epochs. Billing changes no agent's schedule, so the next due time
        //    read here is also the summary's.
        let next_due = self.next_due_ms()?;
        self.bill_closed_epochs(&mut summary, next_due)?;
        // 6. Removals asked for, what needs a human, the clock, the disk.
        self.finish(summary, next_due)
    }

    /// Step 0: the host's clock against the boot clock since the last full tick. A step
    /// moves the plan and the network clock's samples with it and drops the timeline, so
    /// this tick observes the network's time before trusting the plan; a reboot drops the
    /// timeline too.
    fn follow_host_clock(&mut self) -> Result<()> {
        use crate::net::host_clock::{Anchor, Step, ANCHOR_KEY};
        let now = Anchor::now();
        let kept = self.store.meta_get(ANCHOR_KEY)?;
        match kept
            .as_deref()
            .and_then(Anchor::decode)
            .map(|k| k.step_to(&now))
        {
            Some(Step::By(delta)) => {
                log::warn!(
                    "the host clock stepped by {} s since the last observation: the plan moves with it and the network's time is observed again",
                    delta as f64 / 1000.0
                );
                self.store.shift_plan(delta)?;
                self.network_clock.shift(delta);
                self.store.meta_delete(crate::chain::epochs::TIMELINE_KEY)?;
            }
            Some(Step::Reboot) => {
                log::info!("the host rebooted since the last observation: the network's time is observed again");
                self.store.meta_delete(crate::chain::epochs::TIMELINE_KEY)?;
            }
            Some(Step::Steady) | None => {}
        }
        self.store.meta_set(ANCHOR_KEY, &now.encode())
    }

    /// Step 2: an agent that cancelled on the escrow, or owes for enforced epochs, is not
    /// renewed (nobody would pay).
    fn follow_lifecycle(&mut self, summary: &mut TickSummary) -> Result<()> {
        let (Some(biller), Some(current)) = (self.biller.as_ref(), summary.epoch) else {
            return Ok(());
        };
        let (stop, deadline) = (self.stop.clone(), self.deadline);
        let halt = move || must_stop(&stop, deadline);
        let followed = biller.follow_lifecycle(&self.store, current, now_ms(), &halt);
        tolerate(followed, summary)?;
        let held = biller.follow_debt_holds(&self.store, now_ms(), &halt);
        tolerate(held, summary)?;
        Ok(())
    }

    /// Step 3: every agent due, most urgent first, until the tick runs out of time.
    fn renew_due(&mut self, summary: &mut TickSummary) -> Result<()> {
        let due = self
            .backlog
            .overlay(self.store.due_agents(now_ms())?, now_ms());
        summary.due = due.len();
        if !self.told_empty && self.store.is_empty()? {
            log::warn!("no agent is enrolled yet: enroll one with `stream-agency enroll-from-pem --pem AGENT.pem` or `stream-agency enroll --from-file -` (lines of address<TAB>signature); see README, Getting started");
        }
        self.told_empty = true;
        let min_epoch = self.store.max_epoch_seen()?;
        for agent in &due {
            if self.out_of_time() || self.service_paused() {
                summary.interrupted = true;
                break;
            }
            self.renew(agent, min_epoch, summary)?;
        }
        Ok(())
    }

    /// Step 5: bill closed epochs, once the epoch is known this tick. Billing yields to
    /// renewals: a slow gateway must never make a window lapse, so it stops as soon as an
    /// agent is due again (`run` then ticks at once). It writes ahead of every send, so it
    /// waits while the disk refuses writes.
    fn bill_closed_epochs(
        &mut self,
        summary: &mut TickSummary,
        next_due: Option<i64>,
    ) -> Result<()> {
        let disk_ok = summary.storage.is_none() && self.backlog.is_empty();
        let (Some(biller), Some(current), true) = (self.biller.as_mut(), summary.epoch, disk_ok)
        else {
            return Ok(());
        };
        let (stop, deadline) = (self.stop.clone(), self.deadline);
        let halt =
            move || must_stop(&stop, deadline) || next_due.is_some_and(|due| now_ms() >= due);
        if halt() {
            summary.interrupted = true;
            return Ok(());
        }
        let billed = biller.bill(&mut self.store, current, self.rounds_passed, &halt);
        let Some(billing) = tolerate(billed, summary)? else {
            return Ok(());
        };
        if let Some(blocked) = &billing.blocked {
            log::error!("billing stopped: {blocked}");
            summary
                .attention
                .push(format!("billing stopped: {blocked}"));
        }
        if billing.lost > 0 {
            summary.attention.push(format!(
                "{} epochs settled without billing (see billing-attempts)",
                billing.lost
            ));
        }
        summary.billing = Some(billing);
        Ok(())
    }

    /// The tick's last steps: removals asked for, what needs a human, the clock, the disk.
    fn finish(&mut self, mut summary: TickSummary, next_due: Option<i64>) -> Result<TickSummary> {
        let now = now_ms();
        // Agents that asked the intake to be removed go once their windows are billed.
        let removed = self.store.finish_requested_removals(now);
        tolerate(removed, &mut summary)?;
        let kept = self.keep_history(summary.epoch);
        tolerate(kept, &mut summary)?;
        summary
            .attention
            .extend(health::tick_attention(&self.store, now)?);
        let kept = self.keep_clock(&mut summary);
        tolerate(kept, &mut summary)?;
        summary.next_due_ms = next_due;
        summary.unrecorded = self.backlog.attempts();
        summary.unrecorded_windows = self.backlog.windows();
        let refused = summary.storage.clone().or(self.backlog.last_error.clone());
        match refused {
            // Worded the same through the episode: `run` logs it when it changes.
            Some(why) => summary.attention.push(format!(
                "{why}: renewals go on, their records wait in memory, billing waits; free space on the database's disk (or make it writable)"
            )),
            None => disk::keep_reserve(&self.db),
        }
        Ok(summary)
    }
}

/// A step the disk refused (full, read-only): said in the summary, and the tick goes on
/// without it. Any other error ends the tick, as always.
fn tolerate<T>(result: Result<T>, summary: &mut TickSummary) -> Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_storage() => {
            // Said once per episode by the backlog and the tick's attention, not here.
            log::debug!("{e}: this step waits, renewals go on");
            summary.storage = Some(e.to_string());
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
