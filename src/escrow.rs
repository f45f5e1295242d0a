//! The `StreamAgencyEscrow` contract as the biller sees it: its views (decoded), its guards,
//! and what each of its failure messages means for us.

use crate::gateway::Gateway;
use crate::keys::Address;
use crate::ledger::Kind;
use crate::tx::u64_arg;

/// From `getConfig()`.
#[derive(Debug, Clone)]
pub struct EscrowConfig {
    pub operator: Address,
    pub window_reward: u128,
    pub max_backbill_epochs: u64,
    pub hard_max_windows_per_epoch: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStatus {
    Active,
    Paused,
    Suspended,
    Cancelled,
    Other(u8),
}

/// From `getAgentInfo(agent)`.
#[derive(Debug, Clone)]
pub struct AgentInfo {
    pub fee_bps: u64,
    pub max_windows_per_epoch: u64,
    pub max_charge_per_epoch: u128,
    pub status: AgentStatus,
    pub joined_epoch: u64,
    pub last_billed_epoch: u64,
}

/// Minimal big-endian bytes as a number; saturates beyond u128.
pub fn big_uint(bytes: &[u8]) -> u128 {
    let significant: Vec<u8> = bytes.iter().copied().skip_while(|&b| b == 0).collect();
    if significant.len() > 16 {
        return u128::MAX;
    }
    significant
        .iter()
        .fold(0u128, |n, &b| (n << 8) | u128::from(b))
}

fn small_uint(bytes: &[u8], what: &str) -> Result<u64, String> {
    u64::try_from(big_uint(bytes)).map_err(|_| format!("escrow view: {what} does not fit in u64"))
}

/// Reads the nested encoding of `getAgentInfo`, field by field.
struct Nested<'a> {
    bytes: &'a [u8],
}

impl<'a> Nested<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err("escrow view: agent info is truncated".into());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn sized(&mut self) -> Result<&'a [u8], String> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        self.take(len)
    }
}

pub fn decode_agent_info(bytes: &[u8]) -> Result<AgentInfo, String> {
    let mut r = Nested { bytes };
    let fee_bps = r.u64()?;
    let max_windows_per_epoch = r.u64()?;
    let max_charge_per_epoch = big_uint(r.sized()?);
    let _credit_score = r.u64()?;
    let status = match r.u8()? {
        0 => AgentStatus::Active,
        1 => AgentStatus::Paused,
        2 => AgentStatus::Suspended,
        3 => AgentStatus::Cancelled,
        n => AgentStatus::Other(n),
    };
    let _used_promo = r.u8()?;
    let joined_epoch = r.u64()?;
    let last_billed_epoch = r.u64()?;
    let _metadata = r.sized()?;
    Ok(AgentInfo {
        fee_bps,
        max_windows_per_epoch,
        max_charge_per_epoch,
        status,
        joined_epoch,
        last_billed_epoch,
    })
}

pub fn decode_config(items: &[Vec<u8>]) -> Result<EscrowConfig, String> {
    if items.len() < 9 {
        return Err(format!(
            "escrow getConfig returned {} items, expected 9",
            items.len()
        ));
    }
    let operator: [u8; 32] = items[1]
        .as_slice()
        .try_into()
        .map_err(|_| "escrow getConfig: operator is not a 32-byte address".to_string())?;
    Ok(EscrowConfig {
        operator: Address::from_bytes(operator),
        window_reward: big_uint(&items[2]),
        max_backbill_epochs: small_uint(&items[7], "max_backbill_epochs")?,
        hard_max_windows_per_epoch: small_uint(&items[8], "hard_max_windows_per_epoch")?,
    })
}

/// The most windows the contract will accept for this agent and epoch: its per-agent cap,
/// the global hard cap, and `window_reward * windows * fee_bps / 10000 <= max_charge`.
pub fn allowed_windows(windows: u64, info: &AgentInfo, config: &EscrowConfig) -> u64 {
    let mut allowed = windows
        .min(info.max_windows_per_epoch)
        .min(config.hard_max_windows_per_epoch);
    let per_window = config
        .window_reward
        .saturating_mul(u128::from(info.fee_bps));
    // floor(n * per_window / 10000) <= max  <=>  n <= ((max + 1) * 10000 - 1) / per_window
    let limit = info
        .max_charge_per_epoch
        .saturating_add(1)
        .saturating_mul(10_000)
        .saturating_sub(1)
        .checked_div(per_window);
    if let Some(bound) = limit {
        allowed = allowed.min(u64::try_from(bound).unwrap_or(u64::MAX));
    }
    allowed
}

/// What the views said about one (agent, epoch).
#[derive(Debug, Clone)]
pub struct Views {
    /// `getEpochState`: `Some(state index)` once the epoch was billed.
    pub state: Option<u8>,
    /// `getAgentInfo`: `None` when the escrow does not know the agent.
    pub info: Option<AgentInfo>,
}

/// What to do with a candidate (agent, epoch), judged from the views before sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The chain has it already, in this settlement state (`getEpochState`'s index).
    AlreadyBilled { state: u8 },
    /// The contract would refuse it for good: `kind` is expired, refused or clipped.
    Unbillable { kind: Kind, reason: String },
    /// Send a transaction for this many windows (clipped to the guards), which charges
    /// `charged_atto`.
    Send { windows: u64, charged_atto: u128 },
}

/// The contract's rules, in its order, applied to the views: never send what they say
/// will fail. `current` is the current epoch; `epoch` is below it.
pub fn judge(
    epoch: i64,
    windows: i64,
    current: i64,
    views: &Views,
    config: &EscrowConfig,
) -> Decision {
    let refused = |reason: String| Decision::Unbillable {
        kind: Kind::Refused,
        reason,
    };
    if let Some(state) = views.state {
        return Decision::AlreadyBilled { state };
    }
    let age = u64::try_from(current.saturating_sub(epoch)).unwrap_or(0);
    if age > config.max_backbill_epochs {
        return Decision::Unbillable {
            kind: Kind::Expired,
            reason: format!(
                "expired: older than max_backbill_epochs ({})",
                config.max_backbill_epochs
            ),
        };
    }
    let Some(info) = &views.info else {
        return refused("refused: agent not enrolled on the escrow".into());
    };
    if info.status == AgentStatus::Cancelled {
        return refused("refused: agent cancelled on the escrow".into());
    }
    let epoch = u64::try_from(epoch).unwrap_or(0);
    if epoch < info.joined_epoch {
        return refused(format!(
            "refused: before the agent's join epoch {}",
            info.joined_epoch
        ));
    }
    if info.last_billed_epoch > 0 && epoch <= info.last_billed_epoch {
        return refused(format!(
            "refused: epoch already passed in billing order (last billed {})",
            info.last_billed_epoch
        ));
    }
    match allowed_windows(u64::try_from(windows).unwrap_or(0), info, config) {
        0 => Decision::Unbillable {
            kind: Kind::Clipped,
            reason: "clipped: the contract's guards allow 0 windows".into(),
        },
        windows => Decision::Send {
            windows,
            charged_atto: due_atto(config.window_reward, windows, info.fee_bps),
        },
    }
}

/// The due of `windows` in atto-CLAW, as the contract computes it.
pub fn due_atto(window_reward: u128, windows: u64, fee_bps: u64) -> u128 {
    window_reward
        .saturating_mul(u128::from(windows))
        .saturating_mul(u128::from(fee_bps))
        / 10_000
}

/// What a failed `billEpoch` means, by the contract's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Wrong operator key: stop billing until the configuration is fixed.
    WrongOperator,
    /// The contract says it is billed already (confirmed through `getEpochState`).
    AlreadyBilled,
    /// Too old: lost for good.
    Expired,
    /// Can never be billed, for the contract's stated reason.
    Final(String),
    /// Try again later: the epoch is not closed yet on the contract's shard.
    Retry(String),
    /// Would fail for every transaction (out of gas, unknown function): stop billing.
    Systemic(String),
    /// Not explained by the views (no message, an unknown one, a guard the views said was
    /// fine): the agent's billing is held for a human.
    Unexplained(String),
}

pub fn classify_failure(message: Option<&str>) -> Failure {
    let Some(m) = message.filter(|m| !m.trim().is_empty()) else {
        return Failure::Unexplained("failed without a contract message".into());
    };
    let has = |s: &str| m.contains(s);
    let lower = m.to_ascii_lowercase();
    if has("Only operator") {
        Failure::WrongOperator
    } else if has("Epoch already billed") {
        Failure::AlreadyBilled
    } else if has("Epoch too old to bill") {
        Failure::Expired
    } else if has("Epoch not closed yet") {
        Failure::Retry(m.to_string())
    } else if has("Agent not enrolled")
        || has("Agent cancelled")
        || has("Cannot bill before join epoch")
        || has("Epoch already passed in billing order")
    {
        Failure::Final(m.to_string())
    } else if lower.contains("gas")
        || lower.contains("function not found")
        || lower.contains("invalid function")
    {
        Failure::Systemic(m.to_string())
    } else {
        Failure::Unexplained(m.to_string())
    }
}

/// The contract's views, through the billing gateway.
pub struct Escrow<'a> {
    pub gateway: &'a Gateway,
    pub contract: String,
}

impl Escrow<'_> {
    pub fn config(&self) -> Result<EscrowConfig, String> {
        decode_config(&self.gateway.query(&self.contract, "getConfig", &[])?)
    }

    pub fn agent_info(&self, agent: &Address) -> Result<Option<AgentInfo>, String> {
        let items = self
            .gateway
            .query(&self.contract, "getAgentInfo", &[agent.to_hex()])?;
        match items.first() {
            None => Ok(None),
            Some(bytes) if bytes.is_empty() => Ok(None),
            Some(bytes) => decode_agent_info(bytes).map(Some),
        }
    }

    /// `Some(state index)` once the epoch was billed.
    pub fn epoch_state(&self, agent: &Address, epoch: u64) -> Result<Option<u8>, String> {
        let items = self.gateway.query(
            &self.contract,
            "getEpochState",
            &[agent.to_hex(), u64_arg(epoch)],
        )?;
        Ok(items.first().map(|b| b.last().copied().unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(max_windows: u64, max_charge: u128, fee_bps: u64) -> AgentInfo {
        AgentInfo {
            fee_bps,
            max_windows_per_epoch: max_windows,
            max_charge_per_epoch: max_charge,
            status: AgentStatus::Active,
            joined_epoch: 0,
            last_billed_epoch: 0,
        }
    }

    fn config(reward: u128, hard: u64) -> EscrowConfig {
        EscrowConfig {
            operator: Address::from_bytes([0; 32]),
            window_reward: reward,
            max_backbill_epochs: 10,
            hard_max_windows_per_epoch: hard,
        }
    }

    #[test]
    fn guards_clip_to_the_highest_allowed_count() {
        assert_eq!(
            allowed_windows(47, &info(100, u128::MAX, 500), &config(1_000, 1_000)),
            47
        );
        assert_eq!(
            allowed_windows(47, &info(40, u128::MAX, 500), &config(1_000, 1_000)),
            40
        );
        assert_eq!(
            allowed_windows(47, &info(100, u128::MAX, 500), &config(1_000, 30)),
            30
        );
        // reward 1000 * fee 500 / 10000 = 50 per window; max charge 1000 => 20 windows.
        assert_eq!(
            allowed_windows(47, &info(100, 1_000, 500), &config(1_000, 1_000)),
            20
        );
        assert_eq!(due_atto(1_000, 20, 500), 1_000);
        assert_eq!(due_atto(1_000, 21, 500), 1_050);
        // Floor division: 3 windows of 33.33 = 99.99 -> due 99 <= 99.
        assert_eq!(
            allowed_windows(5, &info(100, 99, 3_333), &config(100, 100)),
            3
        );
        assert_eq!(due_atto(100, 3, 3_333), 99);
        assert_eq!(due_atto(100, 4, 3_333), 133);
    }

    #[test]
    fn judge_applies_the_contracts_rules_in_order() {
        let views = |state: Option<u8>, info: Option<AgentInfo>| Views { state, info };
        let cfg = config(1_000, 1_000);
        let ok = Some(info(100, u128::MAX, 500));
        assert_eq!(
            judge(5, 3, 6, &views(Some(2), ok.clone()), &cfg),
            Decision::AlreadyBilled { state: 2 }
        );
        assert_eq!(
            judge(5, 3, 6, &views(None, ok.clone()), &cfg),
            Decision::Send {
                windows: 3,
                charged_atto: 150
            }
        );
        let kind = |d: Decision| match d {
            Decision::Unbillable { kind, .. } => Some(kind),
            _ => None,
        };
        // max_backbill_epochs 10: epoch 5 is too old in epoch 16.
        assert_eq!(
            kind(judge(5, 3, 16, &views(None, ok.clone()), &cfg)),
            Some(Kind::Expired)
        );
        // "No limit" as u64::MAX is no limit, not a negative number.
        let unlimited = EscrowConfig {
            max_backbill_epochs: u64::MAX,
            ..cfg.clone()
        };
        assert!(matches!(
            judge(5, 3, 100_000, &views(None, ok.clone()), &unlimited),
            Decision::Send { .. }
        ));
        assert_eq!(
            kind(judge(5, 3, 6, &views(None, None), &cfg)),
            Some(Kind::Refused)
        );
        let mut joined = info(100, u128::MAX, 500);
        joined.joined_epoch = 6;
        assert_eq!(
            kind(judge(5, 3, 7, &views(None, Some(joined.clone())), &cfg)),
            Some(Kind::Refused)
        );
        joined.joined_epoch = 0;
        joined.last_billed_epoch = 5;
        assert_eq!(
            kind(judge(5, 3, 7, &views(None, Some(joined)), &cfg)),
            Some(Kind::Refused)
        );
        assert_eq!(
            kind(judge(
                5,
                3,
                6,
                &views(None, Some(info(0, u128::MAX, 500))),
                &cfg
            )),
            Some(Kind::Clipped)
        );
    }

    #[test]
    fn agent_info_nested_encoding_decodes() {
        let mut b = Vec::new();
        b.extend(500u64.to_be_bytes());
        b.extend(48u64.to_be_bytes());
        b.extend(2u32.to_be_bytes());
        b.extend([0x01, 0x00]);
        b.extend(7u64.to_be_bytes());
        b.push(3);
        b.push(1);
        b.extend(12u64.to_be_bytes());
        b.extend(15u64.to_be_bytes());
        b.extend(3u32.to_be_bytes());
        b.extend(b"abc");
        let i = decode_agent_info(&b).unwrap();
        assert_eq!(
            (i.fee_bps, i.max_windows_per_epoch, i.max_charge_per_epoch),
            (500, 48, 256)
        );
        assert_eq!(
            (i.status, i.joined_epoch, i.last_billed_epoch),
            (AgentStatus::Cancelled, 12, 15)
        );
        assert!(decode_agent_info(&b[..20]).is_err());
    }

    #[test]
    fn failure_messages_are_classified() {
        assert_eq!(
            classify_failure(Some("Only operator")),
            Failure::WrongOperator
        );
        assert_eq!(
            classify_failure(Some("Epoch already billed")),
            Failure::AlreadyBilled
        );
        assert_eq!(
            classify_failure(Some("Epoch too old to bill")),
            Failure::Expired
        );
        assert!(matches!(
            classify_failure(Some("Epoch not closed yet")),
            Failure::Retry(_)
        ));
        assert!(matches!(
            classify_failure(Some("Agent cancelled")),
            Failure::Final(_)
        ));
        assert!(matches!(classify_failure(None), Failure::Unexplained(_)));
        assert!(matches!(
            classify_failure(Some("Exceeds max windows per epoch")),
            Failure::Unexplained(_)
        ));
        assert!(matches!(
            classify_failure(Some("not enough gas")),
            Failure::Systemic(_)
        ));
        assert!(matches!(
            classify_failure(Some("invalid function (not found)")),
            Failure::Systemic(_)
        ));
        assert_eq!(big_uint(&[]), 0);
        assert_eq!(big_uint(&[1, 0]), 256);
        assert_eq!(big_uint(&[1; 17]), u128::MAX);
    }
}
