//! The `StreamAgencyEscrow` contract as the biller sees it: its views (decoded), its guards,
//! and what each of its failure messages means for us. Pure: `abi` decodes the views'
//! answers, `client` asks them through the gateway (the only part that talks to the network).

pub mod abi;
pub(crate) mod client;

use crate::chain::ledger::{EpochState, Kind};
use crate::crypto::keys::Address;

/// From `getConfig()`.
#[derive(Debug, Clone)]
pub struct EscrowConfig {
    /// Who may call the owner-only endpoints (`withdrawOwner`).
    pub owner: Address,
    pub operator: Address,
    pub window_reward: u128,
    /// What `register` costs besides the bond while no free promo slot is left.
    pub setup_fee: u128,
    pub min_bond: u128,
    pub promo_free_slots: u64,
    /// A bill is due by `epoch + grace_epochs`; after it anyone may `enforceEpoch`.
    pub grace_epochs: u64,
    pub max_backbill_epochs: u64,
    pub hard_max_windows_per_epoch: u64,
}

/// The chain's figures the pages keep once an epoch (`None`: not read). Atto-CLAW.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Books {
    /// The operator's wallet (`GET /address/<operator>`): what pays every bill's fee.
    pub operator_balance: Option<u128>,
    /// `getClaimableOwner`: what the escrow's owner may withdraw.
    pub claimable_owner: Option<u128>,
    /// `getServiceStats`' last item: the value the escrow protects.
    pub protected: Option<u128>,
    /// `getPromoUsage`: free enrollments used.
    pub promo_used: Option<u64>,
}

/// The cap on an agent's windows per epoch while in probation, should the owner ever
/// deploy the probation check that the source declares (see the spec).
pub const PROBATION_WINDOWS_CAP: u64 = 12;

/// The fees the contract's `register` accepts, in basis points.
pub const FEE_BPS_RANGE: std::ops::RangeInclusive<u32> = 1..=10_000;
/// The agency's fee when none is given (`enroll`, the intake without billing, an MVP
/// agent without one).
pub const DEFAULT_FEE_BPS: u32 = 500;

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
    pub credit_score: u64,
    pub status: AgentStatus,
    pub joined_epoch: u64,
    pub last_billed_epoch: u64,
    /// Not from the view (none says it): set by us once the contract refused a bill with
    /// `Exceeds probation windows cap` and the agent has fewer than 3 on-time settlements.
    pub probation: bool,
}

/// The most windows the contract will accept for this agent and epoch: its per-agent cap,
/// the global hard cap, and `window_reward * windows * fee_bps / 10000 <= max_charge`.
pub fn allowed_windows(windows: u64, info: &AgentInfo, config: &EscrowConfig) -> u64 {
    let mut allowed = windows
        .min(info.max_windows_per_epoch)
        .min(config.hard_max_windows_per_epoch);
    if info.probation {
        allowed = allowed.min(PROBATION_WINDOWS_CAP);
    }
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
    /// `getEpochState`: `Some(state)` once the epoch was billed.
    pub state: Option<EpochState>,
    /// `getAgentInfo`: `None` when the escrow does not know the agent.
    pub info: Option<AgentInfo>,
}

/// What to do with a candidate (agent, epoch), judged from the views before sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The chain has it already, in this settlement state.
    AlreadyBilled { state: EpochState },
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
    // A (re)registered agent starts with last_billed_epoch = joined - 1, so this is the
    // contract's own comparison, with no exception for 0.
    if epoch <= info.last_billed_epoch {
        return refused(format!(
            "refused: epoch already passed in billing order (last billed {})",
            info.last_billed_epoch
        ));
    }
    let windows = allowed_windows(u64::try_from(windows).unwrap_or(0), info, config);
    if windows == 0 {
        return Decision::Unbillable {
            kind: Kind::Clipped,
            reason: "clipped: the contract's guards allow 0 windows".into(),
        };
    }
    match due_atto(config.window_reward, windows, info.fee_bps) {
        0 => refused(format!(
            "refused: the fee rounds to zero (window_reward {} x {windows} windows x {} bps / 10000)",
            config.window_reward, info.fee_bps
        )),
        charged_atto => Decision::Send {
            windows,
            charged_atto,
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
    /// `Exceeds probation windows cap`: bill the 12 windows the contract allows.
    ProbationCap,
    /// Would fail for every transaction (out of gas, unknown function): stop billing.
    Systemic(String),
    /// Not explained by the views (no message, an unknown one, a guard the views said was
    /// fine): the agent's billing is held for a human.
    Unexplained(String),
}

/// The messages the contract and its framework refuse a call with (the spec's tables):
/// a simulation failing with one of them is the contract's answer, to be applied as such;
/// any other reason (a nonce the simulation did not like, ...) is not.
pub const CONTRACT_MESSAGES: [&str; 20] = [
    "function does not accept EGLD payment",
    "wrong number of arguments",
    "argument decode error",
    "argument out of range",
    "invalid function",
    "Only operator",
    "Agent not enrolled",
    "Windows must be positive",
    "Epoch not closed yet",
    "Epoch too old to bill",
    "Agent cancelled",
    "Cannot bill before join epoch",
    "Epoch already passed in billing order",
    "Exceeds max windows per epoch",
    "Exceeds probation windows cap",
    "Exceeds global windows hard cap",
    "Epoch already billed",
    "Fee rounds to zero",
    "Exceeds agent max charge per epoch",
    "not enough gas",
];

/// A failure of the transaction itself, not of the contract's call: gas, funds, nonce,
/// signature, price. A simulation failing with one of these says nothing of the contract.
pub fn is_chain_level(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    ["gas", "funds", "balance", "nonce", "signature", "price"]
        .iter()
        .any(|w| lower.contains(w))
}

pub fn is_contract_message(message: &str) -> bool {
    CONTRACT_MESSAGES.iter().any(|m| message.contains(m))
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
    } else if has("Exceeds probation windows cap") {
        Failure::ProbationCap
    } else if has("Agent not enrolled")
        || has("Agent cancelled")
        || has("Cannot bill before join epoch")
        || has("Epoch already passed in billing order")
        || has("Fee rounds to zero")
    {
        Failure::Final(m.to_string())
    } else if lower.contains("gas")
        || lower.contains("function not found")
        || lower.contains("invalid function")
        || lower.contains("does not accept egld payment")
        || lower.contains("wrong number of arguments")
        || lower.contains("argument decode error")
        || lower.contains("argument out of range")
    {
        Failure::Systemic(m.to_string())
    } else {
        Failure::Unexplained(m.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::abi::{big_uint, decode_agent_info, decode_epoch_state};
    use super::*;

    fn info(max_windows: u64, max_charge: u128, fee_bps: u64) -> AgentInfo {
        AgentInfo {
            fee_bps,
            max_windows_per_epoch: max_windows,
            max_charge_per_epoch: max_charge,
            credit_score: 420,
            status: AgentStatus::Suspended,
            joined_epoch: 1,
            last_billed_epoch: 0,
            probation: false,
        }
    }

    fn config(reward: u128, hard: u64) -> EscrowConfig {
        EscrowConfig {
            owner: Address::from_bytes([1; 32]),
            operator: Address::from_bytes([0; 32]),
            window_reward: reward,
            setup_fee: 0,
            min_bond: 0,
            promo_free_slots: 0,
            grace_epochs: 2,
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
        let views = |state: Option<EpochState>, info: Option<AgentInfo>| Views { state, info };
        let cfg = config(1_000, 1_000);
        let ok = Some(info(100, u128::MAX, 500));
        assert_eq!(
            judge(5, 3, 6, &views(Some(EpochState::Billed), ok.clone()), &cfg),
            Decision::AlreadyBilled {
                state: EpochState::Billed
            }
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
    }

    #[test]
    fn judge_follows_join_order_rounding_and_probation() {
        let views = |state: Option<EpochState>, info: Option<AgentInfo>| Views { state, info };
        let cfg = config(1_000, 1_000);
        let ok = Some(info(100, u128::MAX, 500));
        let kind = |d: Decision| match d {
            Decision::Unbillable { kind, .. } => Some(kind),
            _ => None,
        };
        let mut joined = info(100, u128::MAX, 500);
        joined.joined_epoch = 6;
        assert_eq!(
            kind(judge(5, 3, 7, &views(None, Some(joined.clone())), &cfg)),
            Some(Kind::Refused)
        );
        joined.joined_epoch = 0;
        joined.last_billed_epoch = 5;
        assert_eq!(
            kind(judge(5, 3, 7, &views(None, Some(joined.clone())), &cfg)),
            Some(Kind::Refused)
        );
        // Registered in epoch 6: last billed 5, so epoch 6 is the first it accepts.
        joined.joined_epoch = 6;
        assert!(matches!(
            judge(6, 3, 7, &views(None, Some(joined)), &cfg),
            Decision::Send { .. }
        ));
        // A reward so small that the due rounds to 0: refused, never sent.
        let tiny = config(1, 1_000);
        let zero = judge(5, 3, 6, &views(None, ok.clone()), &tiny);
        assert_eq!(kind(zero.clone()), Some(Kind::Refused), "{zero:?}");
        assert!(format!("{zero:?}").contains("fee rounds to zero"));
        // Probation (once learned): 12 windows at most.
        let mut probation = info(100, u128::MAX, 500);
        probation.probation = true;
        assert_eq!(
            judge(5, 20, 6, &views(None, Some(probation)), &cfg),
            Decision::Send {
                windows: 12,
                charged_atto: 600
            }
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
        assert_eq!(i.credit_score, 7);
        assert!(decode_agent_info(&b[..20]).is_err());
        let mut longer = b.clone();
        longer.push(0);
        assert!(decode_agent_info(&longer).is_err());
    }

    #[test]
    fn epoch_state_decodes_the_spec_bytes() {
        // The spec: Billed is the one byte 01; never billed is no return data.
        assert_eq!(decode_epoch_state(&[]), Ok(None));
        assert_eq!(
            decode_epoch_state(&[vec![0x01]]),
            Ok(Some(EpochState::Billed))
        );
        assert_eq!(
            decode_epoch_state(&[vec![0x02]]),
            Ok(Some(EpochState::SettledOnTime))
        );
        assert_eq!(
            decode_epoch_state(&[vec![0x03]]),
            Ok(Some(EpochState::SettledLate))
        );
        assert_eq!(
            decode_epoch_state(&[vec![0x04]]),
            Ok(Some(EpochState::Slashed))
        );
        assert_eq!(
            decode_epoch_state(&[vec![0x05]]),
            Ok(Some(EpochState::Delinquent))
        );
        assert_eq!(decode_epoch_state(&[vec![]]), Ok(None), "Unbilled = 0");
        assert!(decode_epoch_state(&[vec![0x06]]).is_err());
        assert!(decode_epoch_state(&[vec![0x00, 0x01]]).is_err());
        assert!(decode_epoch_state(&[vec![0x01], vec![0x01]]).is_err());
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
        for framework in [
            "function does not accept EGLD payment",
            "wrong number of arguments",
            "argument decode error (agent): bad length",
            "argument out of range",
        ] {
            assert!(
                matches!(classify_failure(Some(framework)), Failure::Systemic(_)),
                "{framework}"
            );
        }
        assert_eq!(
            classify_failure(Some("Exceeds probation windows cap")),
            Failure::ProbationCap
        );
        assert!(matches!(
            classify_failure(Some("Fee rounds to zero")),
            Failure::Final(_)
        ));
        assert_eq!(big_uint(&[]), 0);
        assert_eq!(big_uint(&[1, 0]), 256);
        assert_eq!(big_uint(&[1; 17]), u128::MAX);
    }
}
