//! One tick: learn the epoch, renew every agent that is due (most urgent first), attribute
//! the new windows to their epochs. Each agent's outcome is committed on its own, so a crash
//! mid-tick loses nothing already done.

pub mod idle;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::billing::{Biller, BillingSummary};
use crate::chain::epochs::{self, Clock, Reading, Start};
use crate::chain::gateway::Gateway;
use crate::config::RuntimeConfig;
use crate::error::Result;
use crate::net::{clock, http};
use crate::now_ms;
use crate::ops::{disk, health};
use crate::renewal::schedule::{Known, Plan, Policy};
use crate::renewal::stream::{Answer, Reply, StreamClient};
use crate::store::agents::{DueAgent, Renewal, Verdict};
use crate::store::usage::effective_epoch;
use crate::store::Store;

/// Genesis and round duration as versions before schema 4 kept them (read, not written).
const LEGACY_ROUND_DURATION_KEY: &str = "round_duration_ms";
const LEGACY_GENESIS_KEY: &str = "genesis_ms";
/// `/network/config` as last read: chain id, genesis, round duration, when.
const CONFIG_KEY: &str = "chain_config";
/// The chain's configuration is read again after this long (a day), and whenever an
/// observation no longer fits it.
pub const CONFIG_MAX_AGE_MS: i64 = 86_400_000;

/// `/network/config` as kept in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeptConfig {
    chain_id: String,
    genesis_ms: Option<i64>,
    round_ms: Option<i64>,
    read_ms: i64,
}

impl KeptConfig {
    fn encode(&self) -> String {
        let opt = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        format!(
            "{} {} {} {}",
            self.chain_id,
            opt(self.genesis_ms),
            opt(self.round_ms),
            self.read_ms
        )
    }

    fn is_fresh(&self) -> bool {
        (0..CONFIG_MAX_AGE_MS).contains(&(now_ms() - self.read_ms))
    }

    /// Genesis and round duration, when both are known.
    fn clock(&self) -> Option<Clock> {
        self.genesis_ms
            .zip(self.round_ms)
            .map(|(genesis_ms, round_ms)| Clock {
                genesis_ms,
                round_ms,
            })
    }

    fn decode(text: &str) -> Option<KeptConfig> {
        let mut w = text.split_whitespace();
        let chain_id = w.next()?.to_string();
        let opt = |v: &str| (v != "-").then(|| v.parse().ok()).flatten();
        let genesis_ms = opt(w.next()?);
        let round_ms = opt(w.next()?);
        let read_ms = w.next()?.parse().ok()?;
        Some(KeptConfig {
            chain_id,
            genesis_ms,
            round_ms,
            read_ms,
        })
    }
}

/// The long-lived pieces a tick works with.
pub struct Agency {
    pub store: Store,
    pub cfg: RuntimeConfig,
    stream: StreamClient,
    gateway: Gateway,
    biller: Option<Biller>,
    /// What billing is on for, as the idle check needs it.
    billing: idle::Billing,
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
    /// The chain's clock, once `/network/config` answered (`Some(None)`: it has no genesis).
    clock: Option<Option<Clock>>,
    /// Set when the epoch gateway is on another chain than `--billing-chain`.
    wrong_chain: Option<String>,
    /// The network's clock as the answers' `Date` headers tell it.
    network_clock: clock::Keeper,
    /// The database file, for its disk's free space and reserve.
    db: std::path::PathBuf,
    /// Renewals the disk did not take yet (full or read-only), oldest first.
    backlog: disk::Backlog,
}

/// Whether the work must stop: a signal, or the tick's deadline.
fn halted(stop: &AtomicBool, deadline: Option<Instant>) -> bool {
    stop.load(Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() >= d)
}

#[derive(Debug, Default)]
pub struct TickSummary {
    pub epoch: Option<i64>,
    pub due: usize,
    pub renewed: usize,
    pub already_streaming: usize,
    pub failed: usize,
    pub windows_recorded: usize,
    pub windows_attributed: usize,
    pub interrupted: bool,
    /// Nothing to do: the epoch came from the timeline and no request was sent.
    pub idle: bool,
    pub next_due_ms: Option<i64>,
    pub billing: Option<BillingSummary>,
    /// What needs a human after this tick (lapses, long failures, epochs lost for billing).
    pub attention: Vec<String>,
    /// The database refused a write this tick (full, read-only): why.
    pub storage: Option<String>,
    /// Attempts (and among them windows) still waiting in memory for the disk.
    pub unrecorded: usize,
    pub unrecorded_windows: usize,
    /// Time spent waiting on `/stream` and writing outcomes, for the figures.
    pub network_ms: f64,
    pub database_ms: f64,
}

impl fmt::Display for TickSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.epoch {
            Some(e) if self.idle => write!(
                f,
                "tick: epoch {e} (from the timeline; nothing to do, no request sent)"
            )?,
            Some(e) => write!(f, "tick: epoch {e}")?,
            None if self.storage.is_some() => write!(
                f,
                "tick: epoch unknown (its reading could not be recorded: the database cannot be written)"
            )?,
            None => write!(f, "tick: epoch unknown (gateway unreachable)")?,
        }
        write!(
            f,
            "; {} due: {} renewed, {} already streaming, {} failed; {} new windows, {} counted into epochs",
            self.due, self.renewed, self.already_streaming, self.failed, self.windows_recorded, self.windows_attributed
        )?;
        if self.due > 0 {
            write!(
                f,
                " (network {:.0} ms, database {:.0} ms)",
                self.network_ms, self.database_ms
            )?;
        }
        if self.interrupted {
            write!(
                f,
                "; stopped early (signal, --max-tick-seconds or renewals due), the rest goes first next time"
            )?;
        }
        match self.next_due_ms {
            Some(next) => write!(
                f,
                "; next attempt in {}s",
                ((next - now_ms()).max(0) + 999) / 1000
            ),
            None => write!(f, "; no active agents"),
        }?;
        if let Some(b) = &self.billing {
            write!(f, "; {b}")?;
        }
        if self.unrecorded > 0 {
            write!(
                f,
                "; {} attempts ({} windows) wait in memory for the disk",
                self.unrecorded, self.unrecorded_windows
            )?;
        }
        if !self.attention.is_empty() {
            write!(f, "; {} need a human", self.attention.len())?;
        }
        Ok(())
    }
}

impl Agency {
    pub fn new(store: Store, mut cfg: RuntimeConfig) -> Agency {
        let mut network_clock = clock::Keeper::default();
        network_clock.load(store.meta_get(clock::STORE_KEY).ok().flatten().as_deref());
        // One agent per endpoint: each has its own proxy (or none, by NO_PROXY).
        let agent = |url: &str| http::sampling_agent(cfg.timeout, network_clock.sink(), url);
        let (stream, gateway) = (agent(&cfg.stream_url), agent(&cfg.epoch_api_url));
        let billing = idle::Billing::of(cfg.billing.as_ref());
        let biller = cfg.billing.take().map(|b| {
            let billing_agent = agent(&b.proxy);
            Biller::new(b, billing_agent)
        });
        Agency {
            db: store.path().unwrap_or_default(),
            backlog: disk::Backlog::default(),
            biller,
            billing,
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
            clock: None,
            wrong_chain: None,
            network_clock,
        }
    }

    /// The effective current epoch and rounds passed in it, asking the gateway once and
    /// writing nothing (for `tick --dry-run`). The inner error is the gateway's.
    pub fn peek_epoch(&self) -> Result<std::result::Result<(i64, i64), String>> {
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

    fn halted(&self) -> bool {
        halted(&self.stop, self.deadline)
    }

    /// For `run`: the idle tick (see `crate::tick::idle`) when nothing is to be done, else a
    /// full tick. (`tick` makes its idle check before the agency is even built.)
    pub fn tick_unless_idle(&mut self) -> Result<TickSummary> {
        let gateway = &self.cfg.epoch_api_url;
        if !self.backlog.is_empty() {
            return self.tick();
        }
        if let Some(idle) = idle::check(&self.store, gateway, self.billing, now_ms())? {
            return idle_summary(&self.store, idle, self.cfg.max_clock_skew_ms);
        }
        self.tick()
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

    /// The next agent due, as the database and the records in memory tell it.
    fn next_due_ms(&self) -> Result<Option<i64>> {
        if self.backlog.is_empty() {
            return self.store.next_due_ms();
        }
        let planned = self.backlog.planned();
        let ids: Vec<i64> = planned.iter().map(|&(id, _)| id).collect();
        let others = self.store.next_due_ms_except(&ids)?;
        Ok(planned.iter().map(|&(_, at)| at).chain(others).min())
    }

    pub fn tick(&mut self) -> Result<TickSummary> {
        self.deadline = Some(Instant::now() + self.cfg.max_tick);
        let mut summary = TickSummary::default();
        // 0. Records that waited for the disk first (their windows are placed in step 1).
        self.reopen_if_writable();
        if !self.backlog.is_empty() {
            summary.windows_recorded += self.backlog.flush(&mut self.store, &self.db)?;
        }
        // 1. The epoch, every tick: usage is counted even before billing is on. A disk
        //    that refuses the epoch's records leaves it unknown: renewals go on.
        let observed = self.observe_epoch(&mut summary);
        let epoch = tolerate(observed, &mut summary)?.flatten();
        summary.epoch = epoch;
        // 2. With billing, the escrow status of the agents due and not read this epoch: one
        //    that cancelled is not renewed (nobody would pay for it).
        if let (Some(biller), Some(current)) = (self.biller.as_ref(), epoch) {
            let (stop, deadline) = (self.stop.clone(), self.deadline);
            let halt = move || halted(&stop, deadline);
            let followed = biller.follow_lifecycle(&self.store, current, now_ms(), &halt);
            tolerate(followed, &mut summary)?;
        }
        // 3. Renew what is due; continuity first, so even without an epoch or a disk.
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
            if self.halted() {
                summary.interrupted = true;
                break;
            }
            self.renew(agent, min_epoch, &mut summary)?;
        }
        // 4. A second look at the epoch places the windows just opened, exactly, even
        //    when the epoch changed during the tick.
        if summary.windows_recorded > 0 {
            let observed = self.observe_epoch(&mut summary);
            if let Some(current) = tolerate(observed, &mut summary)?.flatten() {
                summary.epoch = Some(current);
            }
        }
        // 5. Bill closed epochs, once the epoch is known this tick. Billing changes no
        //    agent's schedule, so the next due time read here is also the summary's.
        // Billing yields to renewals: a slow gateway must never make a window lapse, so it
        // stops as soon as an agent is due again (`run` then ticks at once).
        let (stop, deadline) = (self.stop.clone(), self.deadline);
        let next_due = self.next_due_ms()?;
        let halt = move || halted(&stop, deadline) || next_due.is_some_and(|due| now_ms() >= due);
        // Billing writes ahead of every send: it waits while the disk refuses writes.
        let disk_ok = summary.storage.is_none() && self.backlog.is_empty();
        if let (Some(biller), Some(current), true) = (self.biller.as_mut(), summary.epoch, disk_ok)
        {
            if halt() {
                summary.interrupted = true;
            } else {
                let billed = biller.bill(&mut self.store, current, self.rounds_passed, &halt);
                let Some(billing) = tolerate(billed, &mut summary)? else {
                    return self.finish(summary, next_due);
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
            }
        }
        self.finish(summary, next_due)
    }

    /// The tick's last steps: removals asked for, what needs a human, the clock, the disk.
    fn finish(&mut self, mut summary: TickSummary, next_due: Option<i64>) -> Result<TickSummary> {
        let now = now_ms();
        // Agents that asked the intake to be removed go once their windows are billed.
        let removed = self.store.finish_requested_removals(now);
        tolerate(removed, &mut summary)?;
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

    /// Asks the gateway for the epoch, records its start on the timeline and attributes
    /// the windows waiting for it. `None` when the gateway does not answer or cannot be
    /// trusted: the tick goes on renewing, counting and billing nothing on it.
    fn observe_epoch(&mut self, summary: &mut TickSummary) -> Result<Option<i64>> {
        // Asked and answered: the answer's epoch bounds every window opened until `before`.
        let before = now_ms();
        let status = match self.gateway.network_status() {
            Ok(s) => s,
            Err(e) => {
                // Said once when the gateway stops answering, not at every tick of `run`.
                if !self.gateway_down {
                    log::warn!(
                        "epoch unknown, renewing anyway: {e}; is --epoch-api-url {} right and reachable?",
                        self.cfg.epoch_api_url
                    );
                }
                self.gateway_down = true;
                return Ok(None);
            }
        };
        let after = now_ms();
        if std::mem::take(&mut self.gateway_down) {
            log::info!("the gateway answers again: epoch {}", status.epoch);
        }
        let clock = self.chain_clock();
        let round_ms = self.round_ms(clock);
        let epoch_len = round_ms.map(|r| r * status.rounds_per_epoch);
        let reading = Reading {
            epoch: status.epoch,
            before_ms: before,
            after_ms: after,
            rounds_passed: status.rounds_passed,
            current_round: status.current_round,
            round_at_epoch_start: status.round_at_epoch_start,
        };
        let distrust = match &self.wrong_chain {
            Some(why) => Some(why.clone()),
            None => epochs::distrust(&reading, self.store.last_seen()?, epoch_len),
        };
        if let Some(why) = distrust {
            log::error!("epoch reading ignored: {why}");
            summary.attention.push(format!(
                "{why}; nothing is counted or billed on it (check --epoch-api-url {})",
                self.cfg.epoch_api_url
            ));
            return Ok(None);
        }
        let offset = self.network_clock.update().correction_ms();
        let start = epochs::epoch_start(&reading, clock, round_ms, offset);
        if matches!(start, Some(Start::Estimated(_)))
            && !std::mem::replace(&mut self.told_estimate, true)
        {
            log::warn!(
                "the gateway's genesis time and round numbers do not place epoch {} exactly (fields missing, or the round duration changed): epoch boundaries are estimated to half a round",
                status.epoch
            );
        }
        let current = match start {
            Some(start) => self.store.record_epoch(status.epoch, start, after)?,
            None => effective_epoch(self.store.max_epoch_seen()?, status.epoch),
        };
        if clock.is_some() && matches!(start, Some(Start::Estimated(_))) {
            // The configuration no longer places the epoch: read it again next time.
            self.forget_chain_config()?;
        }
        self.keep_timeline(current, status.epoch, start, epoch_len, round_ms, after)?;
        self.rounds_passed = status.rounds_passed;
        if self.store.unattributed_windows(before)? > 0 {
            let len = epoch_len.filter(|&l| l > 0).unwrap_or(i64::MAX / 4);
            summary.windows_attributed += self.store.attribute_windows(current, before, len)?;
        }
        Ok(Some(current))
    }

    /// Keeps the observed epoch on the timeline that idle ticks compute the epoch from:
    /// only an exact start of the epoch the gateway reported (an estimate, or an epoch
    /// held back by an earlier one, makes the next tick ask again).
    fn keep_timeline(
        &self,
        current: i64,
        observed: i64,
        start: Option<Start>,
        epoch_len: Option<i64>,
        round_ms: Option<i64>,
        at_ms: i64,
    ) -> Result<()> {
        match (start, epoch_len, round_ms) {
            (Some(Start::Exact(start_ms)), Some(len_ms), Some(round_ms))
                if current == observed && len_ms > 0 =>
            {
                let t = idle::Timeline {
                    gateway: idle::gateway_id(&self.cfg.epoch_api_url),
                    epoch: current,
                    start_ms,
                    len_ms,
                    round_ms,
                    observed_ms: at_ms,
                };
                self.store.meta_set(idle::TIMELINE_KEY, &t.encode())
            }
            _ => self.store.meta_delete(idle::TIMELINE_KEY),
        }
    }

    /// Keeps the clock samples that tell something new, and names a skew a human should fix.
    fn keep_clock(&mut self, summary: &mut TickSummary) -> Result<()> {
        let offset = self.network_clock.update();
        if let Some(text) = self.network_clock.to_keep() {
            self.store.meta_set(clock::STORE_KEY, &text)?;
        }
        if let Some(skew) = health::clock_skew(offset, self.cfg.max_clock_skew_ms) {
            summary.attention.push(skew);
        }
        Ok(())
    }

    /// Genesis and round duration from `/network/config`, read at most once per
    /// [`CONFIG_MAX_AGE_MS`] (also across processes: the answer is kept in the database
    /// with its chain id, checked against `--billing-chain` by every process), and again
    /// whenever an observation no longer fits it.
    fn chain_clock(&mut self) -> Option<Clock> {
        if let Some(clock) = self.clock {
            return clock;
        }
        let kept = self.kept_chain_config();
        if let Some(fresh) = kept.clone().filter(KeptConfig::is_fresh) {
            return self.use_chain_config(fresh);
        }
        let config = match self.gateway.network_config() {
            Ok(c) => c,
            Err(e) => {
                // Not kept for the process: the next observation asks again.
                log::debug!("gateway config unavailable this time, using the one kept: {e}");
                return kept?.clock();
            }
        };
        let read = KeptConfig {
            chain_id: config.chain_id.clone(),
            genesis_ms: config.start_time_s.map(|s| s.saturating_mul(1000)),
            round_ms: Some(config.round_duration_ms).filter(|&ms| ms > 0),
            read_ms: now_ms(),
        };
        if let Err(e) = self.store.meta_set(CONFIG_KEY, &read.encode()) {
            log::warn!("cannot keep the chain's configuration: {e}");
        }
        self.use_chain_config(read)
    }

    /// The configuration as last read, fresh or not; from a database written before it
    /// was kept whole, its genesis and round duration alone.
    fn kept_chain_config(&self) -> Option<KeptConfig> {
        let kept = self.store.meta_get(CONFIG_KEY).ok().flatten();
        if let Some(kept) = kept.as_deref().and_then(KeptConfig::decode) {
            return Some(kept);
        }
        let legacy = |key| self.store.meta_get_i64(key).ok().flatten();
        Some(KeptConfig {
            chain_id: String::new(),
            genesis_ms: legacy(LEGACY_GENESIS_KEY),
            round_ms: Some(legacy(LEGACY_ROUND_DURATION_KEY)?).filter(|&ms| ms > 0),
            read_ms: 0,
        })
    }

    /// Checks the chain id against `--billing-chain` and keeps the clock for the process.
    fn use_chain_config(&mut self, kept: KeptConfig) -> Option<Clock> {
        if kept.chain_id != self.cfg.chain {
            self.wrong_chain = Some(format!(
                "the gateway at --epoch-api-url has chain id {} but --billing-chain is {}",
                kept.chain_id, self.cfg.chain
            ));
        }
        let clock = kept.clock();
        self.clock = Some(clock);
        clock
    }

    /// An observation the configuration no longer explains: read it again next time
    /// (what was read stays as the fallback while the gateway does not answer).
    fn forget_chain_config(&mut self) -> Result<()> {
        self.clock = None;
        match self.kept_chain_config() {
            Some(kept) => {
                let stale = KeptConfig { read_ms: 0, ..kept };
                self.store.meta_set(CONFIG_KEY, &stale.encode())
            }
            None => Ok(()),
        }
    }

    /// The round duration: the clock's, else the one kept from an earlier read.
    fn round_ms(&self, clock: Option<Clock>) -> Option<i64> {
        clock
            .map(|c| c.round_ms)
            .or_else(|| self.kept_chain_config()?.round_ms)
    }

    /// One `/stream` call for the agent; an unreadable stored signature fails that agent
    /// alone (retried like an agent problem, while the others renew).
    fn call_service(&self, agent: &DueAgent) -> Reply {
        match &agent.signature {
            Ok(signature) => self.stream.renew(&agent.address, signature),
            Err(e) => Reply {
                answer: Answer::Rejected,
                status: None,
                reason: format!("stored signature unreadable: {e}"),
                excerpt: String::new(),
                duration_ms: 0,
            },
        }
    }

    /// The next attempt after `answer`. The service's times are on the network's clock:
    /// planned on the host's, with the estimate's uncertainty added to the lead while a
    /// correction applies. Returns the answer on the host's clock too.
    fn plan(
        &mut self,
        agent: &DueAgent,
        answer: &Answer,
        attempted_ms: i64,
        now: i64,
    ) -> (Answer, Plan) {
        let known = Known {
            end_ms: agent.expected_end_ms,
            window_ms: agent.window_ms,
            step: agent.backoff_step,
            after_end: agent.after_end,
            since_probe: agent.since_probe,
            attempted_ms,
            stale: agent.stale,
        };
        let offset = self.network_clock.update();
        let on_host = answer.shifted(-offset.correction_ms());
        let policy = Policy {
            lead_ms: self.cfg.policy.lead_ms + offset.margin_ms(),
            ..self.cfg.policy
        };
        let plan = policy.plan(&on_host, now, known);
        (on_host, plan)
    }

    fn renew(
        &mut self,
        agent: &DueAgent,
        min_epoch: Option<i64>,
        summary: &mut TickSummary,
    ) -> Result<()> {
        let attempted_ms = now_ms();
        let net_started = Instant::now();
        let reply = self.call_service(agent);
        summary.network_ms += net_started.elapsed().as_secs_f64() * 1000.0;
        let now = now_ms();
        let (on_host, plan) = self.plan(agent, &reply.answer, attempted_ms, now);
        let opened_ms = opened_at(&on_host, agent, attempted_ms, now);
        let (verdict, window) = verdict_of(
            &reply.answer,
            &reply.reason,
            self.cfg.count_observed_windows,
        );
        match &verdict {
            Verdict::Renewed => summary.renewed += 1,
            Verdict::Neutral => summary.already_streaming += 1,
            Verdict::Failed(reason) => {
                summary.failed += 1;
                log::warn!("renewal of {} failed: {reason}", agent.address);
            }
        }
        let db_started = Instant::now();
        let renewal = Renewal {
            agent_id: agent.id,
            attempted_ms,
            opened_ms,
            // An end already past when answered teaches nothing about the length.
            window_bounds: match on_host {
                Answer::Opened { end_ms } if end_ms > now => {
                    Some((end_ms - now, end_ms - attempted_ms))
                }
                _ => None,
            },
            duration_ms: reply.duration_ms,
            status_code: reply.status,
            reason: reply.reason,
            end_stream_ms: reply.answer.end_ms(),
            can_stream_again_at_ms: reply.answer.again_at_ms(),
            body_excerpt: reply.excerpt,
            verdict,
            window,
            // The epoch seen before this attempt bounds a window it opened, not one found
            // already open (its answer was lost earlier, maybe in the epoch before).
            min_epoch: min_epoch.filter(|_| !window.is_some_and(|(_, observed)| observed)),
            expected_end_ms: on_host.end_ms(),
            next_attempt_ms: plan.next_attempt_ms,
            backoff_step: plan.backoff_step,
            after_end: plan.after_end,
            since_probe: plan.since_probe,
            stale: plan.stale,
        };
        log::debug!(
            "{}: {} in {} ms, next attempt at {}",
            agent.address,
            renewal.reason,
            renewal.duration_ms,
            plan.next_attempt_ms
        );
        let epoch = summary.epoch.or(min_epoch);
        let db = &self.db;
        summary.windows_recorded +=
            self.backlog
                .record(&mut self.store, db, renewal, &agent.address, epoch)?;
        summary.database_ms += db_started.elapsed().as_secs_f64() * 1000.0;
        Ok(())
    }
}

/// A tick that had nothing to do and asked nobody: the epoch from the timeline, and what
/// needs a human as the database tells it (lapses, long failures, holds, the clock).
pub fn idle_summary(store: &Store, idle: idle::Idle, max_skew_ms: i64) -> Result<TickSummary> {
    let mut attention = health::tick_attention(store, now_ms())?;
    if let Some(offset) = health::kept_offset(store)? {
        attention.extend(health::clock_skew(offset, max_skew_ms));
    }
    Ok(TickSummary {
        epoch: Some(idle.epoch),
        idle: true,
        next_due_ms: idle.next_due_ms,
        attention,
        ..TickSummary::default()
    })
}

/// When a window opened, by the host's clock: the service granted it between the request
/// (`attempted_ms`) and its answer (`answered_ms`). With the agent's usual window length
/// known, `end - length` within those bounds (a slow answer must not move the window into
/// the next epoch); otherwise when the answer came. A service grants a window after it
/// read (and maybe queued) the request, just before it answers: the answer's time is
/// late by the answer's own travel only, the request's time early by everything else. A window found already open (its
/// answer was lost) opened `length` before its end too, and not after it was seen; it
/// was still open when the service read the request, at or after `attempted_ms`, so it
/// opened no earlier than `attempted_ms - length` (not `answered_ms - length`: the
/// answer's latency would move a window granted just before a boundary past it).
pub fn opened_at(answer: &Answer, agent: &DueAgent, attempted_ms: i64, answered_ms: i64) -> i64 {
    match (*answer, agent.window_ms) {
        (Answer::Opened { end_ms }, Some(len)) if len > 0 => {
            (end_ms - len).clamp(attempted_ms, answered_ms)
        }
        (
            Answer::AlreadyStreaming {
                end_ms: Some(end_ms),
                ..
            },
            Some(len),
        ) if len > 0 => (end_ms - len).clamp(attempted_ms - len, answered_ms),
        _ => answered_ms,
    }
}

/// What an answer means for the agent's counters, and the window it counts, if any:
/// `(end, observed)`, observed when found already open (counted only with
/// `--count-observed-windows`).
pub fn verdict_of(
    answer: &Answer,
    reason: &str,
    count_observed: bool,
) -> (Verdict, Option<(i64, bool)>) {
    match *answer {
        Answer::Opened { end_ms } => (Verdict::Renewed, Some((end_ms, false))),
        Answer::AlreadyStreaming { end_ms, .. } => (
            Verdict::Neutral,
            end_ms.filter(|_| count_observed).map(|e| (e, true)),
        ),
        _ => (Verdict::Failed(reason.to_string()), None),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_opened_when_its_end_says_within_the_request() {
        let agent = |window_ms| DueAgent {
            id: 1,
            address: String::new(),
            signature: Err(String::new()),
            expected_end_ms: None,
            window_ms,
            backoff_step: 0,
            after_end: false,
            since_probe: 0,
            stale: false,
        };
        let opened = Answer::Opened { end_ms: 14_000 };
        // Sent at 9_500, answered at 10_400: granted at 10_000 by its end and length.
        assert_eq!(
            opened_at(&opened, &agent(Some(4_000)), 9_500, 10_400),
            10_000
        );
        // Never outside the request's bounds, whatever the length says.
        assert_eq!(
            opened_at(&opened, &agent(Some(9_000)), 9_500, 10_400),
            9_500
        );
        assert_eq!(opened_at(&opened, &agent(Some(100)), 9_500, 10_400), 10_400);
        // The first window of an agent: when the answer came.
        assert_eq!(opened_at(&opened, &agent(None), 9_500, 10_400), 10_400);
        // Found already open, 1.9 s after it was granted (its answer was lost).
        let seen = Answer::AlreadyStreaming {
            end_ms: Some(14_000),
            again_at_ms: None,
        };
        assert_eq!(
            opened_at(&seen, &agent(Some(4_000)), 11_800, 11_900),
            10_000
        );
        // Seen in its last moments through a slow answer: still opened at its start.
        assert_eq!(
            opened_at(&seen, &agent(Some(4_000)), 13_900, 14_100),
            10_000
        );
    }

    #[test]
    fn answers_become_verdicts_and_windows() {
        let opened = Answer::Opened { end_ms: 9 };
        assert_eq!(
            verdict_of(&opened, "ok", false),
            (Verdict::Renewed, Some((9, false)))
        );
        let open = Answer::AlreadyStreaming {
            end_ms: Some(7),
            again_at_ms: None,
        };
        assert_eq!(verdict_of(&open, "x", false), (Verdict::Neutral, None));
        assert_eq!(
            verdict_of(&open, "x", true),
            (Verdict::Neutral, Some((7, true)))
        );
        assert_eq!(
            verdict_of(&Answer::Transient, "HTTP 502", true),
            (Verdict::Failed("HTTP 502".into()), None)
        );
    }
}
