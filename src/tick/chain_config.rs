//! `/network/config` as this process trusts it (genesis, round length, chain id), and as
//! the database keeps it: what `epoch` reads the chain's clock from.

use crate::chain::epochs::Clock;
use crate::net::clock::now_ms;

/// Genesis and round duration as versions before schema 4 kept them (read, not written).
pub(super) const LEGACY_ROUND_DURATION_KEY: &str = "round_duration_ms";
pub(super) const LEGACY_GENESIS_KEY: &str = "genesis_ms";
/// `/network/config` as last read: chain id, genesis, round duration, when.
pub(super) const CONFIG_KEY: &str = "chain_config";
/// The chain's configuration is read again after this long (a day), and whenever an
/// observation no longer fits it.
pub const CONFIG_MAX_AGE_MS: i64 = 86_400_000;

/// `/network/config` as this process trusts it.
#[derive(Debug, Default)]
pub(super) struct ChainConfigCache {
    /// Read (or taken fresh from the database) by this process; `None`: to be read.
    pub(super) trusted: Option<KeptConfig>,
    /// Set when the epoch gateway is on another chain than `--billing-chain`.
    pub(super) wrong_chain: Option<String>,
}

/// `/network/config` as kept in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KeptConfig {
    pub(super) chain_id: String,
    pub(super) genesis_ms: Option<i64>,
    pub(super) round_ms: Option<i64>,
    pub(super) read_ms: i64,
}

impl KeptConfig {
    pub(super) fn encode(&self) -> String {
        let opt = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        format!(
            "{} {} {} {}",
            self.chain_id,
            opt(self.genesis_ms),
            opt(self.round_ms),
            self.read_ms
        )
    }

    pub(super) fn is_fresh(&self) -> bool {
        (0..CONFIG_MAX_AGE_MS).contains(&(now_ms() - self.read_ms))
    }

    /// Genesis and round duration, when both are known.
    pub(super) fn clock(&self) -> Option<Clock> {
        self.genesis_ms
            .zip(self.round_ms)
            .map(|(genesis_ms, round_ms)| Clock {
                genesis_ms,
                round_ms,
            })
    }

    pub(super) fn decode(text: &str) -> Option<KeptConfig> {
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
