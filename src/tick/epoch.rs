//! The epoch, observed: asked of the gateway, checked, placed on the timeline, and the
//! windows waiting for it attributed. The chain's `/network/config` (genesis, round length,
//! chain id) is cached here, in the process and in the database.

use super::chain_config::{KeptConfig, CONFIG_KEY, LEGACY_GENESIS_KEY, LEGACY_ROUND_DURATION_KEY};
use super::summary::TickSummary;
use super::Agency;
use crate::chain::epochs::{self, Clock, Reading, Start};
use crate::error::Result;
use crate::net::clock;
use crate::net::clock::now_ms;
use crate::ops::health;
use crate::store::usage::effective_epoch;

impl Agency {
    /// Asks the gateway for the epoch, records its start on the timeline and attributes
    /// the windows waiting for it. `None` when the gateway does not answer or cannot be
    /// trusted: the tick goes on renewing, counting and billing nothing on it.
    pub(super) fn observe_epoch(&mut self, summary: &mut TickSummary) -> Result<Option<i64>> {
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
        let distrust = match &self.chain_config.wrong_chain {
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
                let t = epochs::Timeline {
                    gateway: epochs::gateway_id(&self.cfg.epoch_api_url),
                    epoch: current,
                    start_ms,
                    len_ms,
                    round_ms,
                    observed_ms: at_ms,
                };
                self.store.meta_set(epochs::TIMELINE_KEY, &t.encode())
            }
            _ => self.store.meta_delete(epochs::TIMELINE_KEY),
        }
    }

    /// Keeps the clock samples that tell something new, and names a skew a human should fix.
    pub(super) fn keep_clock(&mut self, summary: &mut TickSummary) -> Result<()> {
        let offset = self.network_clock.update();
        if let Some(text) = self.network_clock.take_news() {
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
        if let Some(trusted) = &self.chain_config.trusted {
            return trusted.clock();
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
            self.chain_config.wrong_chain = Some(format!(
                "the gateway at --epoch-api-url has chain id {} but --billing-chain is {}",
                kept.chain_id, self.cfg.chain
            ));
        }
        let clock = kept.clock();
        self.chain_config.trusted = Some(kept);
        clock
    }

    /// An observation the configuration no longer explains: read it again next time
    /// (what was read stays as the fallback while the gateway does not answer).
    fn forget_chain_config(&mut self) -> Result<()> {
        self.chain_config.trusted = None;
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
}
